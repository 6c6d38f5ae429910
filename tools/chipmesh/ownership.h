// Who owns a chipmesh object, and whether that process still runs. Used by
// `chipmesh clean` to tell a dead job's leftovers from a live job's objects.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace chipmesh::cli {

// The pid a /dev/shm name (without the leading '/') carries, when its form
// is known:
//   chipmesh_<8 hex pid>_<8 hex token>_<suffix>   sim communicator objects
//   chipmesh_demo_<decimal pid>_<suffix>           `chipmesh demo` staging
// nullopt for any other name (the owner cannot be determined).
std::optional<pid_t> owner_pid_of_shm_name(const std::string& name);

// The pid of a sim rootinfo temp file "<rootinfo>.tmp.<decimal pid>.<16 hex>",
// given its file name and the rootinfo's file name; nullopt otherwise.
std::optional<pid_t> owner_pid_of_rootinfo_temp(const std::string& file_name,
                                                const std::string& rootinfo_name);

enum class ProcessState {
  Gone,    // no such process
  Zombie,  // exited, not yet reaped: counts as gone
  Alive,
};

struct ProcessInfo {
  ProcessState state = ProcessState::Gone;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks since boot)
};

// Reads /proc/<pid>/stat. A process we cannot read counts as Alive (never
// remove something whose owner might still run).
ProcessInfo process_info(pid_t pid);

// Alive and not a zombie.
inline bool process_alive(pid_t pid) { return process_info(pid).state == ProcessState::Alive; }

}  // namespace chipmesh::cli

// Who owns the chipmesh objects the command itself makes (demo and bench
// staging), and whether that process still runs. Used by `chipmesh clean`;
// the platforms' own names are judged by the platforms (inspect_leftover).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/process.h"

namespace chipmesh::cli {

// The pid a /dev/shm name (without the leading '/') of the command's own
// staging carries:
//   chipmesh_demo_<decimal pid>_<suffix>    `chipmesh demo` staging
//   chipmesh_bench_<decimal pid>_<suffix>   `chipmesh bench` staging
// nullopt for any other name (a platform's, or unknown).
std::optional<pid_t> owner_pid_of_shm_name(const std::string& name);

// The one /proc/<pid>/stat parser (src/common/process.h), under the names
// clean has always used.
using ProcessState = process::State;
using ProcessInfo = process::Info;
// A process we cannot read counts as Alive (never remove something whose
// owner might still run).
inline ProcessInfo process_info(pid_t pid) { return process::info(pid); }

// Alive and not a zombie.
inline bool process_alive(pid_t pid) { return process_info(pid).state == ProcessState::Alive; }

}  // namespace chipmesh::cli

// Logging, NCCL style:
//   CHIPMESH_DEBUG=VERSION|WARN|INFO|TRACE   off when unset
//   CHIPMESH_DEBUG_SUBSYS=INIT,COMM,...      which subsystems; '^' negates
//   CHIPMESH_DEBUG_FILE=path                 %h host, %p pid; stderr otherwise
// Every line: "host:pid:tid [chip C rank R] LEVEL SUBSYS message".
//
//   CHIPMESH_LOG(INFO, INIT, "window of %zu bytes", n);
//   CHIPMESH_WARN(COMM, "rank %d died", r);
//
// When logging is off, a call site costs one relaxed atomic load and a
// compare: the arguments are not evaluated and nothing is formatted. Like the
// knobs, the state is one per process (shared by libchipmesh and plugins).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace chipmesh::log {

enum Level : int { NONE = 0, VERSION = 1, WARN = 2, INFO = 3, TRACE = 4 };

enum Subsys : uint32_t {
  INIT = 1u << 0,    // bring-up: knobs, fork, comm_init, windows, staging, timings
  COMM = 1u << 1,    // communicators and their C boundary
  WORKER = 1u << 2,  // the parent: chips, deaths, timeouts, dispatch
  CHIP = 1u << 3,    // a chip process: its serve loop
  PLUGIN = 1u << 4,  // loading platforms and kernel libraries, plugin C boundaries
  KERNEL = 1u << 5,  // kernel launches and their failures
  CLI = 1u << 6,     // the chipmesh command's top-level error handlers
  ALL = ~0u,
};

namespace detail {
// The process-wide gate: level in bits 0..7, subsystem mask in bits 32..63;
// kUnread until the knobs were read.
constexpr uint64_t kUnread = ~0ull;
std::atomic<uint64_t>& gate();
uint64_t read_gate();         // slow path: reads the knobs, fills the gate
void knobs_changed();         // called by knobs::reload() / set_for_process()
// The process-wide lock of the output (held while a line is written); a
// fork holds it (worker/fork_locks.h) so that no child starts with it held.
std::mutex& output_mutex();
}  // namespace detail

// Whether a message of `level` for `subsys` would be written.
inline bool enabled(Level level, uint32_t subsys) {
  static std::atomic<uint64_t>& g = detail::gate();
  uint64_t v = g.load(std::memory_order_relaxed);
  if (v == detail::kUnread) [[unlikely]]
    v = detail::read_gate();
  return static_cast<int>(v & 0xff) >= level && (static_cast<uint32_t>(v >> 32) & subsys) != 0;
}

// Writes one line (use the macros: they check enabled() first).
void write(Level level, uint32_t subsys, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

// Who this process is, for the line prefix ("[chip 2 rank 2]"); -1 = unknown.
void set_identity(int chip, int rank);

// Human names: "INFO", "INIT".
const char* level_name(Level level);
const char* subsys_name(uint32_t subsys);

}  // namespace chipmesh::log

#define CHIPMESH_LOG(LEVEL, SUBSYS, ...)                                                      \
  do {                                                                                        \
    if (::chipmesh::log::enabled(::chipmesh::log::LEVEL, ::chipmesh::log::SUBSYS))            \
      ::chipmesh::log::write(::chipmesh::log::LEVEL, ::chipmesh::log::SUBSYS, __VA_ARGS__);   \
  } while (0)
#define CHIPMESH_WARN(SUBSYS, ...) CHIPMESH_LOG(WARN, SUBSYS, __VA_ARGS__)
#define CHIPMESH_INFO(SUBSYS, ...) CHIPMESH_LOG(INFO, SUBSYS, __VA_ARGS__)
#define CHIPMESH_TRACE(SUBSYS, ...) CHIPMESH_LOG(TRACE, SUBSYS, __VA_ARGS__)

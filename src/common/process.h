// Process identity and liveness, robust to pid reuse and to zombies: a peer
// that has exited but is not yet reaped by its parent counts as dead.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace chipmesh::process {

enum class State {
  Gone,    // no such process
  Zombie,  // exited, not yet reaped: counts as gone
  Alive,
};

struct Info {
  State state = State::Gone;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks since boot); 0: unknown
  bool stopped = false;     // state 'T': stopped by a signal (SIGSTOP, SIGTSTP); not 't' (a tracer's stop)
  bool sleeping = false;    // state 'S': in an interruptible wait (a futex, poll, ...)
  int last_cpu = -1;        // field 39: the CPU it last ran on; -1: unknown
};

// The one /proc/<pid>/stat parser: state (field 3), start time (field 22)
// and last CPU (field 39).
// A process whose stat cannot be read for another reason than "no such
// process" (EACCES under a hardened /proc) counts as Alive with an unknown
// start time, so that nobody removes what a live process may still own.
Info info(pid_t pid);

// "owner pid 123 is alive" / "... is gone" / "... has exited (zombie)",
// with `who` first ("owner", "rank 0").
std::string describe(const char* who, pid_t pid, State state);

// Start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22);
// 0 when there is no such process. With the pid it names one process for life.
uint64_t start_time(pid_t pid);

// The one pidfd helper. pidfd_open(pid): -1 with errno when it fails (ESRCH:
// no such process).
int open_pidfd(pid_t pid) noexcept;

// Blocks until a process behind one of `pidfds` has exited (the pidfd is
// readable), `stop_fd` is readable, or `timeout` passed (negative: no
// limit). Returns the indices of the pidfds that are readable, in order; a
// negative entry is skipped (an already handled process). *stopped tells
// whether stop_fd fired. An interrupted wait returns nothing.
std::vector<size_t> wait_exits(const std::vector<int>& pidfds, std::chrono::milliseconds timeout, int stop_fd = -1,
                               bool* stopped = nullptr);

// Watches one process through a pidfd, which becomes readable when the
// process exits (zombie or reaped), so it never confuses a reused pid.
class Watch {
 public:
  Watch() = default;
  // expected_start: start_time() recorded by the process itself (0: unknown).
  Watch(pid_t pid, uint64_t expected_start);
  Watch(Watch&& other) noexcept;
  Watch& operator=(Watch&& other) noexcept;
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  ~Watch();

  bool valid() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // True once the process has exited (or was never the one expected).
  bool exited() const;

 private:
  pid_t pid_ = 0;
  int fd_ = -1;
  bool gone_at_open_ = false;
};

// ", at the limit NAME = N" (the soft limit of `resource`) when `err` says a
// resource ran out (EAGAIN, EMFILE, ENFILE); "" otherwise.
std::string limit_hint(int err, int resource, const char* name);
// For ENOMEM under a finite address-space limit (`ulimit -v`, which maps of
// windows and staging count against, touched or not): " (RLIMIT_AS, the
// address-space limit `ulimit -v` sets, is N bytes)"; "" otherwise.
std::string address_space_hint(int err);
// The limit an errno of a call that makes memory or a descriptor points at:
// address_space_hint for ENOMEM, limit_hint's RLIMIT_NOFILE for EMFILE.
std::string resource_hint(int err);
// Why a thread could not start (pthread_create's EAGAIN): the task limit
// (limit_hint's RLIMIT_NPROC) or, under a finite RLIMIT_AS, no room for its
// stack; names both limits that apply.
std::string thread_limit_hint(int err);

// getpid() without a system call on the fast path (checked on every
// dispatch, which takes ~0.2 us): the pid sits in a page the kernel wipes in
// the child of every fork (MADV_WIPEONFORK), so a child reads 0 and looks
// its own up once. getpid() itself where the kernel refuses the advice.
pid_t this_pid() noexcept;

}  // namespace chipmesh::process

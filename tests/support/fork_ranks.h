// The one helper every multi-process test uses: fork N ranks, wait for them
// with a deadline, collect exit codes, signals and failure messages.
//
// Inside a rank use CM_REQUIRE (throws) rather than gtest's EXPECT/ASSERT,
// which cannot report from a child process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace chipmesh::testing {

struct RankOutcome {
  int rank = -1;
  pid_t pid = -1;
  bool exited = false;    // normal exit (exit_code valid)
  int exit_code = -1;
  int signal = 0;         // terminating signal, 0 if none
  bool timed_out = false; // killed by the harness at the deadline
  std::string message;    // what the rank reported (exception text)
  bool ok() const { return exited && exit_code == 0; }
  std::string describe() const;
};

// Runs body(rank) in n forked children. A child exits 0 when body returns,
// 1 (with the exception's text as message) when it throws. Children still
// running at the deadline are killed with SIGKILL and reported as timed out.
std::vector<RankOutcome> fork_ranks(int n, const std::function<void(int rank)>& body,
                                    std::chrono::milliseconds deadline = std::chrono::seconds(60));

// Every pid fork_ranks has forked in this process (for the leak listener).
const std::set<pid_t>& forked_pids();

// Called inside a rank: leaves a note the parent reads as RankOutcome::message
// (for ranks that succeed by observing an expected failure).
void rank_note(const std::string& text);

// True once every pid is gone (exited; zombies count as gone), false at the
// deadline. Blocks on pidfds: no polling.
bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds deadline);

// True once `done()` holds, false at the deadline. Looks again whenever an
// entry is created or renamed into directory `dir` (inotify), or every
// millisecond where no inotify instance can be had.
bool wait_for_entry(const std::string& dir, const std::function<bool()>& done, std::chrono::milliseconds deadline);

// True once `path` exists (created or renamed into place), false at the
// deadline (wait_for_entry on its directory).
bool wait_file(const std::string& path, std::chrono::milliseconds deadline);

// "" when this process can have an inotify instance, else why not (on a
// machine whose other processes of this user hold all of
// fs.inotify.max_user_instances). Tests that need inotify's events, not just
// a wait, skip with it.
std::string no_inotify_reason();

// Child processes of `pid` (from /proc/<pid>/task/<pid>/children), in the
// order they were forked (the kernel's order; pids wrap, so never sort).
std::vector<pid_t> children_of(pid_t pid);

// True once thread or process `tid` (of this process, or a child) is blocked
// in futex(2) (the first field of /proc/<tid>/syscall), false at the
// deadline. A test that then wakes the futex knows the wake, and not a
// timeout or an early re-check, is what ends the wait.
bool wait_asleep_in_futex(pid_t tid, std::chrono::milliseconds deadline);

// The word thread `tid` (of this process, or a child) is blocked on in
// futex(2) (the second field of /proc/<tid>/syscall: a lock's address when
// it waits for that lock), 0 when it is not blocked in futex(2).
uintptr_t futex_word_waited_on(pid_t tid);

// gtest predicate: every rank exited 0 (otherwise lists each failure).
::testing::AssertionResult all_ok(const std::vector<RankOutcome>& outcomes);

struct RequireFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace chipmesh::testing

// CM_REQUIRE(cond) << "context";  throws RequireFailure with file:line.
#define CM_REQUIRE(cond)                                                               \
  if (cond) {                                                                          \
  } else                                                                               \
    ::chipmesh::testing::detail::Thrower(__FILE__, __LINE__, #cond) =                   \
        ::chipmesh::testing::detail::Message()

namespace chipmesh::testing::detail {
struct Message {
  std::ostringstream os;
  template <typename T>
  Message& operator<<(const T& v) {
    os << v;
    return *this;
  }
};
struct Thrower {
  const char* file;
  int line;
  const char* cond;
  Thrower(const char* f, int l, const char* c) : file(f), line(l), cond(c) {}
  [[noreturn]] void operator=(const Message& m) const {
    std::ostringstream os;
    os << file << ":" << line << ": requirement failed: " << cond;
    std::string extra = m.os.str();
    if (!extra.empty()) os << " (" << extra << ")";
    throw RequireFailure(os.str());
  }
};
}  // namespace chipmesh::testing::detail

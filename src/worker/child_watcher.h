// A thread that blocks on the chip processes' pidfds and reaps each one the
// moment it exits, recording how; every death bumps the shared `events`
// word so the parent's waits notice it without polling.
//
// Where pidfd_open does not exist (ENOSYS: a kernel before 5.3, valgrind,
// a sandbox that filters it; EPERM: a seccomp policy) the thread polls
// waitpid(WNOHANG) every kPollMs instead: a death is then seen within that
// time, and pidfd() is -1 (the parent's window views fall back to the ring).
// (Without a pidfd, a chip reaped by someone else whose pid a later child of
// this process takes would pass for alive; a pidfd rules that out.)
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "request_ring/chip_shared.h"

namespace chipmesh::worker {

class ChildWatcher {
 public:
  // `chips`: each chip's shared block, for its last words (may be empty).
  ChildWatcher(std::vector<pid_t> pids, SharedHeader* header, std::vector<const ChipShared*> chips = {});
  ~ChildWatcher();  // stops the thread; children still alive stay unreaped
  ChildWatcher(const ChildWatcher&) = delete;
  ChildWatcher& operator=(const ChildWatcher&) = delete;

  bool dead(size_t chip) const { return dead_[chip].load(std::memory_order_acquire); }
  bool all_dead() const;
  // "exited with status 3" / "killed by signal 11 (Segmentation fault)",
  // then the chip's report of the fault when it left one for that signal
  // (chip/fault_report.h); for SIGKILL, whether the kernel's OOM killer
  // killed anything between the watcher's start and the chip's death
  // (common/oom_kills.h).
  // `during` (" while running kernel 'k'") follows the first part.
  std::string cause(size_t chip, const std::string& during = "") const;
  // Dead by a signal, or reaped by someone else (how is unknown): it may not
  // have removed what it owned.
  bool died_uncleanly(size_t chip) const;
  // Exited by exit() itself, not by its handler of a terminating signal
  // (which exits with 128 + the signal, chip_process.cpp).
  bool exited_by_itself(size_t chip) const;
  // The chip's pidfd (open until this watcher goes; it still names the
  // same process after its pid is reused); -1 when polling.
  int pidfd(size_t chip) const { return polling_ ? -1 : pidfds_[chip]; }
  bool polling() const { return polling_; }
  static constexpr int kPollMs = 5;

 private:
  void loop();
  void loop_polling();
  // Records chip i's end: `status` from waitpid, or unknown when someone
  // else reaped it; wakes the parent.
  void record(size_t i, int status, bool reaped_here);
  // For a chip killed by SIGKILL: what the OOM killer's count says.
  std::string oom_note(size_t chip) const;
  std::vector<pid_t> pids_;
  SharedHeader* header_;
  std::vector<const ChipShared*> chips_;
  std::unique_ptr<std::atomic<bool>[]> dead_;
  std::vector<int> status_;  // waitpid status, valid once dead_
  std::vector<bool> reaped_elsewhere_;  // waitpid found no child: status unknown
  // The OOM killer's count when the thread started, and when each chip
  // killed by SIGKILL was reaped; nothing where it cannot be read.
  std::optional<uint64_t> oom_kills_at_start_;
  std::vector<std::optional<uint64_t>> oom_kills_at_death_;
  mutable std::mutex mu_;
  int stop_fd_ = -1;         // eventfd that ends the loop
  std::vector<int> pidfds_;
  std::vector<pollfd> pollfds_;  // loop()'s, made before the thread starts
  bool polling_ = false;
  std::thread thread_;
};

}  // namespace chipmesh::worker

// The thread the chips are forked from. A chip's parent-death signal
// (PR_SET_PDEATHSIG, how a chip learns that its Worker's process died)
// follows the thread that forked it, not the process: forked by the caller
// of init(), every chip got SIGTERM when that thread ended (a program that
// runs init() on a helper thread, or from a thread pool that retires
// idle threads). This thread forks them, then waits, alive, until the
// Worker has reaped them; it dies with the process like any other. Used
// when init() runs on a thread other than the main one (which ends with
// the process).
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace chipmesh::worker {

class ChipParentThread {
 public:
  // Starts the thread, runs `fork` on it and returns once it has; rethrows
  // what it threw. Once per object.
  explicit ChipParentThread(const std::function<void()>& fork);
  // Ends the thread: only once every chip it forked is reaped (a chip
  // still alive would get SIGTERM).
  ~ChipParentThread();
  ChipParentThread(const ChipParentThread&) = delete;
  ChipParentThread& operator=(const ChipParentThread&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool forked_ = false;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace chipmesh::worker

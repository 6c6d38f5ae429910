// Ctrl-C during Worker.init() and Worker.run().
//
// Both run on the calling thread with the GIL released, so Python's SIGINT
// handler cannot run until they return. While they run on the main thread,
// a pipe is Python's signal wakeup fd (signal.set_wakeup_fd) and a watcher
// thread (one per process, started on first use) reads it: on SIGINT it
// calls Worker::interrupt(), which terminates the chips, so the blocking
// call fails promptly. interruptible() then closes the worker (nothing is
// left in /dev/shm) and runs the signal handlers due, which raise
// KeyboardInterrupt in the caller.
#pragma once

#include <atomic>
#include <exception>

#include "chipmesh/worker.h"
#include "common.h"
#include "py_worker.h"

namespace chipmesh::py_ext {

// A call in flight: the process's watcher is armed for `w` from
// construction to destruction (GIL held for both). Off the main thread of
// the main interpreter, or without a watcher, it does nothing: Ctrl-C then
// waits for the call.
class InterruptArm {
 public:
  explicit InterruptArm(Worker& w);
  ~InterruptArm();
  InterruptArm(const InterruptArm&) = delete;
  InterruptArm& operator=(const InterruptArm&) = delete;

 private:
  friend class InterruptWatcher;  // interrupts worker_ once on SIGINT
  Worker& worker_;
  int old_fd_ = -1;  // the wakeup fd the program had set, restored at the end
  bool armed_ = false;
  std::atomic<bool> interrupted_{false};
};

// Runs fn (init() or run() of w) with the GIL released, w's call lock held
// and Ctrl-C armed.
template <typename F>
void interruptible(PyWorker& w, F&& fn) {
  std::exception_ptr err;
  {
    InterruptArm watch(w);
    {
      py::gil_scoped_release nogil;
      try {
        serialized(w, fn);
      } catch (...) {
        err = std::current_exception();
      }
    }
  }
  // After the disarm, which reads a signal that came as the call returned.
  if (w.interrupted()) {
    {
      py::gil_scoped_release nogil;
      try {
        serialized(w, [&] { w.close(); });
      } catch (...) {
        // the chips were terminated on purpose; their deaths are no news
      }
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // KeyboardInterrupt
  }
  if (err) {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    std::rethrow_exception(err);
  }
}

}  // namespace chipmesh::py_ext

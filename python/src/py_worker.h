// The Python Worker: a Worker whose calls from several Python threads run
// one at a time. A Worker takes calls from one thread at a time (worker.h);
// two Python threads calling it at once raced on its state and killed the
// interpreter (std::bad_alloc out of a corrupted vector, then abort).
#pragma once

#include <sys/types.h>

#include <mutex>

#include "chipmesh/worker.h"
#include "common.h"
#include "common/process.h"

namespace chipmesh::py_ext {

class PyWorker : public Worker {
 public:
  using Worker::Worker;
  // Held for each call, run() included with its whole orchestration
  // function, whose calls to this Worker come on the same thread (hence
  // recursive). Taken with the GIL released, so the thread inside run() can
  // take the GIL for its function meanwhile.
  std::recursive_mutex calls;
  // A fork's copy (os.fork() while another thread held `calls`) would wait
  // for it forever: there the calls go straight through (and raise, as a
  // Worker does in a fork of its owner).
  const pid_t owner = process::this_pid();
};

// Runs fn holding w's call lock. Call it with the GIL released: the
// thread that holds the lock may be waiting for the GIL (run()'s function).
template <typename F>
auto serialized(PyWorker& w, F&& fn) -> decltype(fn()) {
  if (process::this_pid() != w.owner) return fn();
  std::lock_guard<std::recursive_mutex> hold(w.calls);
  return fn();
}

// A call of w: the GIL released (blocking), w's call lock held.
template <typename F>
auto locked(PyWorker& w, F&& fn) -> decltype(fn()) {
  return blocking([&]() -> decltype(fn()) { return serialized(w, fn); });
}

}  // namespace chipmesh::py_ext

// The Orchestrator object Worker.run() hands to its Python function.
#pragma once

#include <thread>

#include "chipmesh/worker.h"

namespace chipmesh::py_ext {

// The Orchestrator handed to run()'s function; refuses use after run(),
// and from another thread than run()'s (which holds the Worker for the
// whole function, py_worker.h: a call from elsewhere would race with it).
struct PyOrchestrator {
  Orchestrator* orch = nullptr;
  std::thread::id thread = std::this_thread::get_id();
  Orchestrator& get() const {
    if (!orch) throw Error("Error", "Orchestrator used after its run() returned");
    if (std::this_thread::get_id() != thread)
      throw Error("Error", "Orchestrator used from another thread than the one in its run(); call it from run()'s "
                           "function");
    return *orch;
  }
};

}  // namespace chipmesh::py_ext

// The Orchestrator object Worker.run() hands to its Python function.
#pragma once

#include "chipmesh/worker.h"

namespace chipmesh::py_ext {

// The Orchestrator handed to run()'s function; refuses use after run().
struct PyOrchestrator {
  Orchestrator* orch = nullptr;
  Orchestrator& get() const {
    if (!orch) throw Error("Error", "Orchestrator used after its run() returned");
    return *orch;
  }
};

}  // namespace chipmesh::py_ext

// chipmesh_barrier: returns on a rank once every rank has entered (the
// opening barrier of run_collective; the call descriptors catch a rank that
// called another collective instead).
#include "collective.h"

namespace chipmesh::kernels {
namespace {

int barrier_body(CollCall&) { return 0; }

}  // namespace
}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_barrier) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kBarrier, barrier_body);
}

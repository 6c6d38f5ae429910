// chipmesh_reduce: the root's output = every rank's input reduced in rank
// order 0, 1, ..., n-1 (a left fold in the compute type; float16/bfloat16
// rounded once). Pull: after the opening barrier the root reads every input
// (n * count elements); the others only wait at the closing barrier. In
// place on the root (in == out) is fine: a block of the fold is read
// completely before it is stored.
#include "collective.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

int reduce_body(CollCall& c) {
  if (c.rank != c.root) return 0;
  return visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    const S* src[CHIPMESH_MAX_RANKS];
    for (uint32_t j = 0; j < c.nranks; ++j) src[j] = reinterpret_cast<const S*>(c.peer(j, c.peer_in[j]));
    return fold_sliced<T, Op>(c.args, reinterpret_cast<S*>(c.local(c.out_off)), src, c.nranks, c.count);
  });
}

}  // namespace
}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_reduce) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kReduce, reduce_body);
}

// onephase: barrier (every input is written), each rank reads every rank's
// input and reduces them, in rank order, into its own output; barrier (no
// rank changes its input while a peer may still read it). Every rank computes
// every element with the same left fold, so the outputs are bitwise equal.
// Reads nranks * count elements per rank: the latency-bound choice for small
// messages.
#include <cstddef>

#include "allreduce.h"
#include "sliced.h"

namespace chipmesh::kernels {

int allreduce_onephase(AllreduceCall& c) {
  const chipmesh_kernel_args* args = c.args;
  if (int rc = open_barrier_call(c)) return rc;

  int rc = visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    const S* src[CHIPMESH_MAX_RANKS];
    for (uint32_t r = 0; r < c.nranks; ++r) src[r] = peer_at<const S>(c, r, c.in_off);
    return fold_sliced<T, Op>(args, local_at<S>(c, c.out_off), src, c.nranks, c.count);
  });
  if (rc) return rc;
  return device::barrier(args);
}

}  // namespace chipmesh::kernels

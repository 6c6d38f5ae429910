// onephase: barrier (every input is written), each rank reads every rank's
// input and reduces them, in rank order, into its own output; barrier (no
// rank changes its input while a peer may still read it). Every rank computes
// every element with the same left fold, so the outputs are bitwise equal.
// Reads nranks * count elements per rank: the latency-bound choice for small
// messages.
//
// Up to kSlotBytes, one barrier instead of two: each rank first copies its
// input into slot call_no % 2 of its scratch and peers fold the slots. The
// closing barrier only kept inputs stable while peers read them; a slot is
// rewritten two calls later, and a rank enters call k + 2 only after the
// opening barrier of call k + 1, which every peer reaches only once it has
// finished call k. The input and the output are free when the call returns
// (the output is written by its own rank only), in place included.
#include <cstddef>
#include <cstring>

#include "allreduce.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

char* slot(const AllreduceCall& c, uint32_t rank) {
  return static_cast<char*>(device::peer_scratch(c.ctx, static_cast<int>(rank),
                                                 uint64_t{kSlotLine0 + (c.call_no % 2) * kSlotLines} *
                                                     CHIPMESH_FLAG_BYTES));
}

}  // namespace

bool onephase_uses_slots(const CommContext* ctx, uint64_t nbytes) {
  return nbytes <= kSlotBytes && device::flag_fits(ctx, kSlotLine0 + 2 * kSlotLines - 1);
}

int allreduce_onephase(AllreduceCall& c) {
  const chipmesh_kernel_args* args = c.args;
  const bool slots = onephase_uses_slots(c.ctx, c.count * c.elem_size);
  if (slots) {
    // Numbered here (open_barrier_call numbers it again, identically) so the
    // input lands in this call's slot before the barrier publishes it.
    const uint32_t call_no = device::flag(c.ctx, static_cast<int>(c.rank), kCallCounterLine)
                                 ->value.load(std::memory_order_relaxed) + 1;
    AllreduceCall at = c;
    at.call_no = call_no;
    std::memcpy(slot(at, c.rank), local_at<const char>(c, c.in_off), c.count * c.elem_size);
  }
  if (int rc = open_barrier_call(c)) return rc;

  int rc = visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    const S* src[CHIPMESH_MAX_RANKS];
    for (uint32_t r = 0; r < c.nranks; ++r)
      src[r] = slots ? reinterpret_cast<const S*>(slot(c, r)) : peer_at<const S>(c, r, c.in_off);
    return fold_sliced<T, Op>(args, local_at<S>(c, c.out_off), src, c.nranks, c.count);
  });
  if (rc || slots) return rc;
  return device::barrier(args);
}

}  // namespace chipmesh::kernels

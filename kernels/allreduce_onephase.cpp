// onephase: barrier (every input is written), each rank reads every rank's
// input and reduces them, in rank order, into its own output; barrier (no
// rank changes its input while a peer may still read it). Every rank computes
// every element with the same left fold, so the outputs are bitwise equal.
// Reads nranks * count elements per rank: the latency-bound choice for small
// messages.
//
// Up to kSlotBytes, no barrier at all: each rank first copies its input into
// its call descriptor (up to kInlineBytes, the line peers wait on anyway) or
// into slot call_no % 2 of its scratch, publishes the descriptor, and folds
// the peers' copies once their descriptors of this call are out. Copies of
// call k are rewritten by call k + 2, which a rank begins only after every
// peer has published call k + 1, i.e. finished reading call k. The input and
// the output are free when the call returns (the output is written by its
// own rank only), in place included.
#include <cstddef>
#include <cstring>

#include "allreduce.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

// Where rank `rank` copies its input of call `call_no` (slots path).
char* copy_of(const AllreduceCall& c, uint32_t rank, uint32_t call_no) {
  if (c.count * c.elem_size <= kInlineBytes)
    return reinterpret_cast<char*>(call_desc(c.ctx, rank, call_no)->inline_input);
  return static_cast<char*>(device::peer_scratch(c.ctx, static_cast<int>(rank),
                                                 uint64_t{kSlotLine0 + (call_no % 2) * kSlotLines} *
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
    // The copy goes where this call's number (begin_call gives it) points.
    std::memcpy(copy_of(c, c.rank, next_call_no(c)), local_at<const char>(c, c.in_off), c.count * c.elem_size);
    if (int rc = open_call_await_peers(c)) return rc;
  } else if (int rc = open_barrier_call(c)) {
    return rc;
  }

  int rc = visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    const S* src[CHIPMESH_MAX_RANKS];
    for (uint32_t r = 0; r < c.nranks; ++r)
      src[r] = slots ? reinterpret_cast<const S*>(copy_of(c, r, c.call_no)) : peer_at<const S>(c, r, c.in_off);
    // Reads n inputs, writes one output.
    return fold_sliced<T, Op>(args, local_at<S>(c, c.out_off), src, c.nranks, c.count,
                              !slots && stream_stores_pay((c.nranks + 1) * c.count * c.elem_size));
  });
  if (rc || slots) return rc;
  return device::barrier(args);
}

}  // namespace chipmesh::kernels

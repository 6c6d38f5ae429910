// chipmesh_reduce_scatter: rank r's output (count elements) = block r of
// every rank's input, reduced in rank order 0, 1, ..., n-1 (a left fold, in
// the compute type; float16/bfloat16 rounded once at the end). Pull: after
// the opening barrier rank r reads block r of every input; each rank reads
// n * count elements and writes count.
//
// In place, NCCL form (out == in + r * count): block r of rank r's input is
// read by rank r only, so the fold writes over it (a block of the fold is
// read completely before it is stored). In place, in == out: rank r != 0
// folds into its own block r, and after one more barrier (every rank takes
// it when any rank is in place this way) copies it to block 0, which rank 0
// may read until then.
//
// Staged (reduce_scatter_staged_chunk): the call is the NCCL in-place form on
// the staging area, but this rank reads its own block from the user's input
// and folds straight into the user's output; the staged kernel copies in
// only the n - 1 blocks peers read, and nothing out.
#include <cstring>

#include "collective.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

int reduce_scatter_body(CollCall& c) {
  const uint64_t B = c.bytes();
  const bool literal = c.in_off == c.out_off;
  char* own_block = c.local(c.in_off) + c.rank * B;
  const UserBuffers& u = c.user;
  char* dst = u.out ? u.out : literal && c.rank != 0 ? own_block : c.local(c.out_off);
  // Reads n blocks, writes one.
  const bool stream = u.out ? u.stream : stream_stores_pay((c.nranks + 1) * B);
  int rc = visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    const S* src[CHIPMESH_MAX_RANKS];
    for (uint32_t j = 0; j < c.nranks; ++j) src[j] = reinterpret_cast<const S*>(c.peer(j, c.peer_in[j]) + c.rank * B);
    if (u.out) src[c.rank] = reinterpret_cast<const S*>(u.in + c.rank * u.stride);
    return fold_sliced<T, Op>(c.args, reinterpret_cast<S*>(dst), src, c.nranks, c.count, stream);
  });
  if (rc) return rc;
  if (!c.any_rank_in_place()) return 0;
  if (int brc = device::barrier(c.args)) return brc;
  if (literal && c.rank != 0 && !u.out) return copy_sliced(c.args, c.local(c.out_off), own_block, B, stream);
  return 0;
}

}  // namespace

int reduce_scatter_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user) {
  return run_collective(args, Kind::kReduceScatter, reduce_scatter_body, user);
}

}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_reduce_scatter) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kReduceScatter, reduce_scatter_body);
}

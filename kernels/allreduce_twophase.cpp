// twophase: barrier (every input is written); reduce-scatter: rank r reduces
// chunk r of every rank's input, in rank order, into chunk r of its own
// output; barrier; allgather: rank r copies chunk j from rank j's output for
// every j != r; barrier (no rank changes its buffers while a peer may still
// read them). Each element is reduced once, by its chunk's owner, and copied
// everywhere else, so the outputs are bitwise equal. Moves about 2 * count
// elements per rank.
//
// In place (in == out): chunk r of rank r's buffer is read by rank r only in
// the reduce-scatter (its fold reads a block completely before storing it),
// and the allgather's writes come after the barrier that ends every read.
#include <cstddef>
#include <cstring>

#include "allreduce.h"
#include "sliced.h"

namespace chipmesh::kernels {

int allreduce_twophase(AllreduceCall& c) {
  const chipmesh_kernel_args* args = c.args;
  if (int rc = open_barrier_call(c)) return rc;

  const size_t es = c.elem_size;
  const Range mine = chunk_of(c.count, c.nranks, c.rank);
  // About count elements read and written by the fold, and as many by the
  // copies, which write lines no peer reads: plain stores while that fits
  // the cache. The fold's chunk is read by every peer, so its lines sit in
  // their caches when the next call stores them again: it is always
  // streamed (stream_copy.h, "lines a peer reads").
  const bool stream = stream_stores_pay(3 * c.count * es);
  int rc = visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    const S* src[CHIPMESH_MAX_RANKS];
    for (uint32_t r = 0; r < c.nranks; ++r) src[r] = peer_at<const S>(c, r, c.in_off) + mine.begin;
    return fold_sliced<T, Op>(args, local_at<S>(c, c.out_off) + mine.begin, src, c.nranks, mine.size, /*stream=*/true);
  });
  if (rc) return rc;
  if (int rc2 = device::barrier(args)) return rc2;

  char* out = local_at<char>(c, c.out_off);
  for (uint32_t k = 1; k < c.nranks; ++k) {
    const uint32_t j = (c.rank + k) % c.nranks;  // start at different peers: spread the load
    const Range ch = chunk_of(c.count, c.nranks, j);
    if (int rc2 = copy_sliced(args, out + ch.begin * es, peer_at<const char>(c, j, c.out_off) + ch.begin * es,
                              ch.size * es, stream))
      return rc2;
  }
  return device::barrier(args);
}

}  // namespace chipmesh::kernels

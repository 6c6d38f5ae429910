// twophase: barrier (every input is written, every output free); then rank r
// owns chunk r: it reduces chunk r of every rank's input, in rank order, a
// block at a time, and writes each block into chunk r of every rank's
// output, its own and its peers' (a reduce-scatter whose result is pushed
// where the allgather would have pulled it); barrier (every output is
// complete). Each element is reduced once, by its chunk's owner, and copied
// everywhere else, so the outputs are bitwise equal. Per rank: about count
// elements read and count written, as a copy of the buffer would.
//
// In place (in == out): chunk r of any rank's buffer is touched by rank r
// only, and each block is read from every rank before it is written back.
//
// Stores into a peer's output: in place, the fold has just read those lines,
// so they are in this core's cache and plain stores are cheapest. Out of
// place, the peer may hold them (it read its output since the last call),
// and a plain store would first take each line back from its core, which
// ran at 2-10 GB/s on the AMD EPYC VM against 27 GB/s streamed
// (stream_copy.h, "lines a peer reads"): they are streamed. Except to a
// peer last seen on this rank's CPU (more ranks than cores), which holds
// them in this core's own caches, while the inputs and outputs of every rank
// fit the last-level cache: plain stores (4 and 8 ranks on 2 vCPUs, 256
// KiB-1 MiB: faster in 13 of 16 alternating pairs). docs/PERFORMANCE.md,
// "Changes and their effect" (rows `2f144bb` and `89ff122`), has the
// measurements.
#include <algorithm>
#include <cstddef>
#include <cstring>

#include "allreduce.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

// The peers whose last barrier arrival was on this rank's CPU, one bit each.
uint64_t peers_beside(const AllreduceCall& c) {
  const auto cpu_of = [&](uint32_t r) { return &device::barrier_line(c.ctx, static_cast<int>(r))->cpu; };
  const int32_t here = cpu_of(c.rank)->load(std::memory_order_relaxed);
  return device::ranks_on_cpu(c.nranks, here, cpu_of) & ~(uint64_t{1} << c.rank);
}

}  // namespace

int allreduce_twophase(AllreduceCall& c) {
  const chipmesh_kernel_args* args = c.args;
  if (int rc = open_barrier_call(c)) return rc;

  const Range mine = chunk_of(c.count, c.nranks, c.rank);
  const bool in_place = c.in_off == c.out_off;
  // Past the cache (out of place), this rank's own output is streamed too,
  // and each block is folded in a scratch block instead.
  const bool big = !in_place && stream_stores_pay(3 * c.count * c.elem_size);
  const bool all_fit = !stream_stores_pay(2 * uint64_t{c.nranks} * c.count * c.elem_size);
  const uint64_t plain_to = !in_place && all_fit ? peers_beside(c) : 0;
  int rc = visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    // Small enough that the folded block is still in L1 when it is copied
    // out and the streamed stores of one block drain while the next one
    // folds (32 KiB blocks ran 1.4-1.8x slower at 1 MiB on the AMD EPYC VM).
    constexpr size_t kBlock = (size_t{8} << 10) / sizeof(S);
    alignas(64) S scratch[kBlock];
    const S* src[CHIPMESH_MAX_RANKS];
    // The staged form keeps this rank's own chunk in the user's buffers.
    S* own = (c.user_out ? reinterpret_cast<S*>(c.user_out) : local_at<S>(c, c.out_off)) + mine.begin;
    const S* own_in = c.user_in ? reinterpret_cast<const S*>(c.user_in) + mine.begin : nullptr;
    const size_t check_every = std::max<size_t>(1, kAbortSliceBytes / sizeof(S) / kBlock);
    for (size_t b = 0; b < mine.size; b += kBlock) {
      if (b / kBlock % check_every == 0)
        if (int rc2 = device::check_abort(args)) return rc2;
      const size_t m = std::min(kBlock, mine.size - b);
      const size_t bytes = m * sizeof(S);
      for (uint32_t r = 0; r < c.nranks; ++r) src[r] = peer_at<const S>(c, r, c.in_off) + mine.begin + b;
      if (own_in) src[c.rank] = own_in + b;
      S* folded = big ? scratch : own + b;
      reduce_fold<T, Op>(folded, src, c.nranks, m);
      if (big) stream_copy_unfenced(own + b, folded, bytes);
      for (uint32_t k = 1; k < c.nranks; ++k) {
        const uint32_t j = (c.rank + k) % c.nranks;  // start at different peers: spread the load
        S* theirs = peer_at<S>(c, j, c.out_off) + mine.begin + b;
        if (in_place || (plain_to >> j & 1))
          std::memcpy(theirs, folded, bytes);
        else
          stream_copy_unfenced(theirs, folded, bytes);
      }
    }
    return 0;
  });
  // The streamed lines before the barrier's release (and on a failure too:
  // nothing streamed stays pending past the call).
  stream_fence();
  if (rc) return rc;
  return device::barrier(args);
}

}  // namespace chipmesh::kernels

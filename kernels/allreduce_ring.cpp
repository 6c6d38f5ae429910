// ring: chunked reduce-scatter then allgather around the ring, synchronised
// point to point between neighbours (no global barrier).
//
// The count is split into nranks chunks (chunk_of) and every chunk into the
// same number `np` of pieces of at most kPieceBytes (empty pieces are fine),
// so every rank does the same sequence of units: unit (s, p) is piece p of
// step s, steps 0..n-2 reduce-scatter and n-1..2n-3 allgather. Rank r only
// ever reads from its left neighbour l = r-1 and only writes its own output:
//   reduce-scatter step s, chunk c = r-s-2 (mod n):
//       out_r[c] = (s == 0 ? in_l[c] : out_l[c]) op in_r[c]
//     after step n-2, out_r[r] is the full reduction of chunk r, folded in
//     the order r+1, r+2, ..., r (computed once, copied everywhere: outputs
//     are bitwise equal on every rank);
//   allgather step n-1+t, chunk c = r-1-t (mod n): out_r[c] = out_l[c].
// Unit (s, p) of rank r needs unit (s-1, p) of rank l, nothing else.
//
// In place (in == out) works unchanged: in the reduce-scatter rank r reads
// and writes chunk r-s-2 of its own buffer in the same step, and never
// touches chunk r-1, which its right neighbour reads as its input in step 0;
// that chunk is first overwritten in the allgather, after that read (below).
//
// Synchronisation: each rank's progress flag (kRingProgressFlag in its own
// scratch) counts its completed units and only grows across calls, so it
// never needs a reset. A call starting at value `base` (equal on every rank:
// every rank does the same units per call) publishes base+1 ("entered, my
// input is ready"), then base+1+(s*np+p+1) after each unit; rank r waits for
// its left neighbour's flag to reach the value of the unit it depends on.
//
// Overwrites: in the allgather, rank r overwrites out_r[r-1-t], which held
// its reduce-scatter partial of step t-1, read by the right neighbour in its
// step t. Unit (n-1+t, p) of rank r transitively depends on unit (t, p) of
// rank r+1 (n-1 hops around the ring), so that read is finished. Across
// calls, rank r waits at the end of a call until its right neighbour has
// completed every unit, i.e. stopped reading in_r and out_r: when the kernel
// returns, both buffers are free, and the next call may write out_r at once.
#include <cstddef>
#include <cstring>

#include "allreduce.h"
#include "reduce_ops.h"

namespace chipmesh::kernels {
namespace {

// Large enough to amortise a flag round trip (~100 ns when both ranks run),
// small enough that a neighbour starts on a piece while it is still in cache.
constexpr size_t kPieceBytes = 128 * 1024;

inline uint32_t mod(int64_t v, uint32_t n) {
  int64_t m = v % static_cast<int64_t>(n);
  return static_cast<uint32_t>(m < 0 ? m + n : m);
}

}  // namespace

int allreduce_ring(AllreduceCall& c) {
  const chipmesh_kernel_args* args = c.args;
  const CommContext* ctx = c.ctx;
  const uint32_t n = c.nranks;
  const uint32_t r = c.rank;
  const uint32_t left = (r + n - 1) % n;
  const uint32_t right = (r + 1) % n;
  device::Flag* mine = device::flag(ctx, static_cast<int>(r), kRingProgressFlag);
  device::Flag* lflag = device::flag(ctx, static_cast<int>(left), kRingProgressFlag);
  device::Flag* rflag = device::flag(ctx, static_cast<int>(right), kRingProgressFlag);

  const size_t es = c.elem_size;
  const size_t piece = kPieceBytes / es;  // elements
  const size_t max_chunk = chunk_of(c.count, n, 0).size;
  const uint64_t np64 = (max_chunk + piece - 1) / piece;
  const uint64_t units64 = 2ull * (n - 1) * np64;
  // Flag values compare wrap-aware over 32 bits: one call must span < 2^31.
  if (units64 >= (1ull << 30))
    return device::fail(args, CHIPMESH_ERR_CONFIG, "allreduce: ring: %llu elements need too many steps",
                        static_cast<unsigned long long>(c.count));
  const uint32_t np = static_cast<uint32_t>(np64);

  const uint32_t base = mine->value.load(std::memory_order_relaxed);
  const uint32_t entered = base + 1;
  c.ring_seq = entered;  // neighbours out of step show up as a disagreement
  begin_call(c);
  device::flag_set(mine, entered);
  if (int rc = device::flag_wait_ge(args, lflag, entered)) return rc;
  if (int rc = check_call_desc(c, left)) return rc;

  const uint32_t steps = 2 * (n - 1);
  int rc = visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() -> int {
    using S = typename T::S;
    S* out = local_at<S>(c, c.out_off);
    const S* in = local_at<const S>(c, c.in_off);
    const S* lin = peer_at<const S>(c, left, c.in_off);
    const S* lout = peer_at<const S>(c, left, c.out_off);
    for (uint32_t s = 0; s < steps; ++s) {
      const bool gather = s >= n - 1;
      const uint32_t chunk = gather ? mod(int64_t{r} - 1 - (s - (n - 1)), n) : mod(int64_t{r} - s - 2, n);
      const Range ch = chunk_of(c.count, n, chunk);
      for (uint32_t p = 0; p < np; ++p) {
        const size_t begin = std::min(ch.size, size_t{p} * piece);
        const size_t len = std::min(ch.size - begin, piece);
        const size_t at = ch.begin + begin;
        // The left neighbour's unit (s-1, p); step 0 only needs its input.
        if (s > 0)
          if (int w = device::flag_wait_ge(args, lflag, entered + (s - 1) * np + p + 1)) return w;
        if (len) {
          // Every unit but the last step's is read by the right neighbour:
          // streamed (stream_copy.h, "lines a peer reads").
          const bool peer_reads = s + 1 < steps;
          if (gather) {
            copy_streamed_if(peer_reads, out + at, lout + at, len * es);
          } else {
            const S* src[2] = {(s == 0 ? lin : lout) + at, in + at};  // left op this rank: in place too
            reduce_fold<T, Op>(out + at, src, 2, len, peer_reads);
          }
        }
        device::flag_set(mine, entered + s * np + p + 1);
      }
    }
    return 0;
  });
  if (rc) return rc;
  // The right neighbour has read everything it needs from this rank.
  return device::flag_wait_ge(args, rflag, entered + steps * np);
}

}  // namespace chipmesh::kernels

// chipmesh_reduce: the root's output = every rank's input reduced in rank
// order 0, 1, ..., n-1 (a left fold in the compute type; float16/bfloat16
// rounded once).
//
// Split: the count is cut into n slices on cache-line boundaries, and after
// the opening barrier rank r folds slice r of every input and writes it
// straight into the root's output (a peer window). Each rank reads about
// count elements (n inputs of count / n) and writes count / n, so the work
// runs on every core instead of the root's alone, which read n * count and
// bounded the root-only form at about half of memcpy. The fold of each
// element is the same left fold, so the result is bitwise the one the root
// alone would compute. Below
// kSplitBytes the root folds everything (the slices would be a few cache
// lines each, and the root's output lines would bounce between cores).
// The closing barrier publishes the peers' writes to the root.
//
// In place on the root (in == out): slice r of the root's input is read and
// written by rank r only, and a block of the fold is read completely before
// it is stored.
//
// Staged (reduce_staged_chunk): rank r reads its own slice from the user's
// input (no peer reads it, so it is not copied in), and the root folds its
// slice straight into the user's output; the root copies out only the
// peers' slices.
#include <algorithm>

#include "collective.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

constexpr uint64_t kSplitBytes = 64 * 1024;
constexpr uint64_t kLineBytes = 64;

int reduce_body(CollCall& c) {
  const Range s = reduce_slice_of(c.count, c.es, c.nranks, c.rank, c.root);
  if (s.size == 0) return 0;
  const UserBuffers& u = c.user;
  return visit_type_op(c.dtype, c.op, [&]<typename T, typename Op>() {
    using S = typename T::S;
    const S* src[CHIPMESH_MAX_RANKS];
    for (uint32_t j = 0; j < c.nranks; ++j) src[j] = reinterpret_cast<const S*>(c.peer(j, c.peer_in[j])) + s.begin;
    S* out = reinterpret_cast<S*>(c.peer_mut(c.root, c.peer_out[c.root])) + s.begin;
    // Reads n slices, writes one.
    bool stream = stream_stores_pay((c.nranks + 1) * s.size * c.es);
    if (u.out) {  // staged: this rank's own slice from the user's input, the root's straight to its output
      src[c.rank] = reinterpret_cast<const S*>(u.in) + s.begin;
      if (c.rank == c.root) {
        out = reinterpret_cast<S*>(u.out) + s.begin;
        stream = u.stream;
      }
    }
    return fold_sliced<T, Op>(c.args, out, src, c.nranks, s.size, stream);
  });
}

}  // namespace

Range reduce_slice_of(uint64_t count, size_t es, uint32_t nranks, uint32_t rank, uint32_t root) {
  if (count * es < kSplitBytes) return rank == root ? Range{0, count} : Range{0, 0};
  const uint64_t per_line = std::max<uint64_t>(1, kLineBytes / es);
  const uint64_t lines = (count + per_line - 1) / per_line;
  const Range l = chunk_of(lines, nranks, rank);
  const uint64_t begin = std::min<uint64_t>(l.begin * per_line, count);
  return {begin, std::min<uint64_t>((l.begin + l.size) * per_line, count) - begin};
}

int reduce_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user) {
  return run_collective(args, Kind::kReduce, reduce_body, user);
}

}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_reduce) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kReduce, reduce_body);
}

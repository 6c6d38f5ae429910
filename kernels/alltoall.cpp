// chipmesh_alltoall: block j of rank r's output = block r of rank j's input
// (count elements per block). Pull: after the opening barrier, rank r copies
// block r of every input into its output; closing barrier. Moves (n-1) *
// count elements per rank.
//
// In place (in == out): block j of rank r must go to rank j while rank j's
// block r comes here, so the pair swaps: every such pair of in-place ranks
// is swapped by one of them (alternating by the parity of r + j, to share
// the work). This runs after one more barrier (taken by every rank when any
// rank is in place), once the out-of-place ranks have pulled from the
// in-place ones; an in-place rank pulls from an out-of-place peer, whose
// input never changes.
#include <algorithm>
#include <cstring>

#include "collective.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

int swap_bytes(const chipmesh_kernel_args* args, char* a, char* b, uint64_t n) {
  char tmp[4096];
  for (uint64_t at = 0; at < n; at += sizeof(tmp)) {
    if (at % kAbortSliceBytes == 0)
      if (int rc = device::check_abort(args)) return rc;
    const size_t len = static_cast<size_t>(std::min<uint64_t>(sizeof(tmp), n - at));
    std::memcpy(tmp, a + at, len);
    std::memcpy(a + at, b + at, len);
    std::memcpy(b + at, tmp, len);
  }
  return 0;
}

int alltoall_body(CollCall& c) {
  const uint64_t B = c.bytes();
  const uint32_t n = c.nranks;
  const bool in_place = c.in_off == c.out_off;
  char* out = c.local(c.out_off);
  const bool stream = stream_stores_pay(2 * n * B);  // reads and writes n blocks
  if (const UserBuffers& u = c.user; u.out) {
    // Staged: every block straight into the user's output, this rank's own
    // from the user's input. The staged call is in place on every rank, so
    // every rank takes the second barrier (and nothing else) after it.
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t j = (c.rank + k) % n;
      char* to = u.out + j * u.stride;
      const char* from = j == c.rank ? u.in + c.rank * u.stride : c.peer(j, c.peer_in[j]) + c.rank * B;
      if (to != from)
        if (int rc = copy_sliced(c.args, to, from, B, u.stream)) return rc;
    }
    return c.any_rank_in_place() ? device::barrier(c.args) : 0;
  }
  if (!in_place)
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t j = (c.rank + k) % n;
      if (int rc = copy_sliced(c.args, out + j * B, c.peer(j, c.peer_in[j]) + c.rank * B, B, stream)) return rc;
    }
  if (!c.any_rank_in_place()) return 0;
  if (int rc = device::barrier(c.args)) return rc;
  if (!in_place) return 0;
  for (uint32_t k = 1; k < n; ++k) {
    const uint32_t j = (c.rank + k) % n;
    const bool peer_in_place = c.peer_in[j] == c.peer_out[j];
    if (!peer_in_place) {
      if (int rc = copy_sliced(c.args, out + j * B, c.peer(j, c.peer_in[j]) + c.rank * B, B, stream)) return rc;
      continue;
    }
    const uint32_t lo = std::min(c.rank, j), hi = std::max(c.rank, j);
    const uint32_t owner = (lo + hi) % 2 ? lo : hi;
    if (owner == c.rank)
      if (int rc = swap_bytes(c.args, out + j * B, c.peer_mut(j, c.peer_in[j]) + c.rank * B, B)) return rc;
  }
  return 0;
}

}  // namespace

int alltoall_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user) {
  return run_collective(args, Kind::kAlltoall, alltoall_body, user);
}

}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_alltoall) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kAlltoall, alltoall_body);
}

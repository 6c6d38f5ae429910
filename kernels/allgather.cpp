// chipmesh_allgather: block j (count elements) of every rank's output = rank
// j's input. Pull: after the opening barrier, rank r copies every peer's
// input into its own output (starting at its right neighbour, to spread the
// load), then the closing barrier. Moves (n-1) * count elements per rank.
//
// In place, NCCL form (in == out + r * count): block r is already there.
// In place, in == out: block 0 holds this rank's input, read by peers in the
// first pass, so that pass fills every block but 0 (block r from the local
// copy), and after one more barrier (taken by every rank when any rank is in
// place this way) rank r != 0 copies rank 0's input into block 0.
#include <cstring>

#include "collective.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

int allgather_body(CollCall& c) {
  const uint64_t B = c.bytes();
  const uint32_t n = c.nranks;
  char* out = c.local(c.out_off);
  const char* in = c.local(c.in_off);
  const bool literal = c.in_off == c.out_off;
  const bool stream = stream_stores_pay(2 * n * B);  // reads and writes n blocks
  const UserBuffers& u = c.user;
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t j = (c.rank + k) % n;
    if (u.out) {  // staged: every block straight into the user's output, this rank's first
      char* to = u.out + j * u.stride;
      const char* from = j == c.rank ? u.in : c.peer(j, c.peer_in[j]);
      if (to != from)
        if (int rc = copy_sliced(c.args, to, from, B, u.stream)) return rc;
      continue;
    }
    char* dst = out + j * B;
    const char* src = j == c.rank ? in : c.peer(j, c.peer_in[j]);
    if (literal && j == 0) continue;  // this rank's input lives there until the second pass
    if (dst == src) continue;         // NCCL in place
    if (int rc = copy_sliced(c.args, dst, src, B, stream)) return rc;
  }
  if (!c.any_rank_in_place()) return 0;
  if (int rc = device::barrier(c.args)) return rc;
  if (literal && c.rank != 0 && !u.out) return copy_sliced(c.args, out, c.peer(0, c.peer_in[0]), B, stream);
  return 0;
}

}  // namespace

int allgather_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user) {
  return run_collective(args, Kind::kAllgather, allgather_body, user);
}

}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_allgather) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kAllgather, allgather_body);
}

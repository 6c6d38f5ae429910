// chipmesh_broadcast: every rank's output = the root's input. Pull: after
// the opening barrier every rank copies from the root's window (the root
// itself copies in to out unless in == out); closing barrier. The root is
// read n-1 times; each other rank reads count elements once. Staged
// (broadcast_staged_chunk): the root's staging area is empty when the call
// opens; the root copies its input in by pieces, publishing each on its
// progress line, then copies its input to its output; a peer copies each
// piece from the root's area into its output as soon as it lands. The copy
// in and the peers' reads overlap instead of taking turns around a barrier.
#include <algorithm>
#include <cstring>

#include "collective.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

int broadcast_body(CollCall& c) {
  const char* src = c.peer(c.root, c.peer_in[c.root]);
  if (const UserBuffers& u = c.user; u.out) {  // staged: straight into the user's output
    if (c.rank == c.root) src = u.in;
    return u.out == src ? 0 : copy_sliced(c.args, u.out, src, c.bytes(), u.stream);
  }
  char* dst = c.local(c.out_off);
  if (dst != src) return copy_sliced(c.args, dst, src, c.bytes(), stream_stores_pay(2 * c.bytes()));
  return 0;
}

}  // namespace

// Small enough that a peer starts reading soon after the root starts
// copying, large enough that one flag per piece costs nothing.
constexpr uint64_t kPieceBytes = uint64_t{128} << 10;

int broadcast_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user) {
  CollCall c;
  if (int rc = parse_call(args, Kind::kBroadcast, &c)) return rc;
  if (c.nranks == 1 || c.count == 0) return run_collective(args, Kind::kBroadcast, broadcast_body, user);
  device::Flag* progress = device::flag(c.ctx, static_cast<int>(c.root), kBroadcastProgressLine);
  // Only the root writes its line, and only between a call's two barriers:
  // read before this rank's opening barrier, it holds the value the root
  // left at the end of its last broadcast.
  const uint32_t base = progress->value.load(std::memory_order_relaxed);
  if (int rc = open_call(c)) return rc;
  const uint64_t bytes = c.bytes();
  const uint64_t pieces = (bytes + kPieceBytes - 1) / kPieceBytes;  // far below 2^31: the area fits a window
  char* area = c.peer_mut(c.root, c.peer_in[c.root]);
  if (c.rank == c.root) {
    for (uint64_t p = 0; p < pieces; ++p) {
      const uint64_t at = p * kPieceBytes;
      // Plain stores: the peers read these lines next.
      if (int rc = copy_sliced(args, area + at, user.in + at, std::min(kPieceBytes, bytes - at))) return rc;
      device::flag_set(progress, base + static_cast<uint32_t>(p + 1));
    }
    if (user.out != user.in)
      if (int rc = copy_sliced(args, user.out, user.in, bytes, user.stream)) return rc;
  } else {
    const std::atomic<int32_t>* root_cpu = &device::barrier_line(c.ctx, static_cast<int>(c.root))->cpu;
    for (uint64_t p = 0; p < pieces; ++p) {
      const uint64_t at = p * kPieceBytes;
      if (int rc = device::flag_wait_ge(args, progress, base + static_cast<uint32_t>(p + 1), root_cpu)) return rc;
      if (int rc = copy_sliced(args, user.out + at, area + at, std::min(kPieceBytes, bytes - at), user.stream))
        return rc;
    }
  }
  return device::barrier(args);
}

}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_broadcast) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kBroadcast, broadcast_body);
}

// chipmesh_broadcast: every rank's output = the root's input. Pull: after
// the opening barrier every rank copies from the root's window (the root
// itself copies in to out unless in == out); closing barrier. The root is
// read n-1 times; each other rank reads count elements once. Staged
// (broadcast_staged_chunk): a rank copies from the root's staging area (the
// root from its own input) straight into the user's output.
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

int broadcast_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user) {
  return run_collective(args, Kind::kBroadcast, broadcast_body, user);
}

}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_broadcast) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kBroadcast, broadcast_body);
}

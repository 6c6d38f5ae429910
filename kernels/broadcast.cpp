// chipmesh_broadcast: every rank's output = the root's input. Pull: after
// the opening barrier every rank copies from the root's window (the root
// itself copies in to out unless in == out); closing barrier. The root is
// read n-1 times; each other rank reads count elements once.
#include <cstring>

#include "collective.h"
#include "sliced.h"

namespace chipmesh::kernels {
namespace {

int broadcast_body(CollCall& c) {
  const char* src = c.peer(c.root, c.peer_in[c.root]);
  char* dst = c.local(c.out_off);
  if (dst != src) return copy_sliced(c.args, dst, src, c.bytes(), stream_stores_pay(2 * c.bytes()));
  return 0;
}

}  // namespace
}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_broadcast) {
  using namespace chipmesh::kernels;
  return run_collective(args, Kind::kBroadcast, broadcast_body);
}

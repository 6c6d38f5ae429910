// A plugin built against a future ABI: the loader must refuse it by version
// before touching any other field.
#include "chipmesh/platform_abi.h"

namespace {
chipmesh_platform make_table() {
  chipmesh_platform t{};
  t.abi_version = CHIPMESH_PLATFORM_ABI_VERSION + 998;
  t.struct_size = sizeof(chipmesh_platform);
  t.name = "wrongabi";
  return t;
}
const chipmesh_platform kTable = make_table();
}  // namespace

extern "C" const chipmesh_platform* chipmesh_platform_entry(void) { return &kTable; }

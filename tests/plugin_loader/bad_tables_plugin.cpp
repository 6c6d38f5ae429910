// A split plugin with one thing wrong, chosen at build time, for the
// loader's checks of each new table:
//   BAD_DEVICE_VERSION / BAD_TRANSPORT_VERSION: a foreign abi_version;
//   BAD_DEVICE_SIZE / BAD_TRANSPORT_SIZE: a struct_size smaller than the
//   loader's struct (a plugin built against an older, shorter table).
// The loader must refuse it before reading any other member (all are NULL).
#include "chipmesh/platform_abi.h"

namespace {

chipmesh_device_v1_t make_device() {
  chipmesh_device_v1_t t{};
  t.abi_version = CHIPMESH_DEVICE_ABI_VERSION;
  t.struct_size = sizeof(chipmesh_device_v1_t);
  t.name = "badtables";
#ifdef BAD_DEVICE_VERSION
  t.abi_version = CHIPMESH_DEVICE_ABI_VERSION + 41;
#endif
#ifdef BAD_DEVICE_SIZE
  t.struct_size = offsetof(chipmesh_device_v1_t, last_error);
#endif
  return t;
}

chipmesh_transport_v1_t make_transport() {
  chipmesh_transport_v1_t t{};
  t.abi_version = CHIPMESH_TRANSPORT_ABI_VERSION;
  t.struct_size = sizeof(chipmesh_transport_v1_t);
  t.name = "badtables";
#ifdef BAD_TRANSPORT_VERSION
  t.abi_version = CHIPMESH_TRANSPORT_ABI_VERSION + 77;
#endif
#ifdef BAD_TRANSPORT_SIZE
  t.struct_size = offsetof(chipmesh_transport_v1_t, inspect_leftover);
#endif
  return t;
}

const chipmesh_device_v1_t kDevice = make_device();
const chipmesh_transport_v1_t kTransport = make_transport();

}  // namespace

extern "C" const chipmesh_device_v1_t* chipmesh_device_entry(void) { return &kDevice; }
extern "C" const chipmesh_transport_v1_t* chipmesh_transport_entry(void) { return &kTransport; }

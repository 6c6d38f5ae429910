// The sim platform with two traps in set_device, for bring-up failures that
// no config can cause: device 13 aborts the chip process, device 14 hangs.
// It wraps sim's device table and passes its transport table through.
// Built with OLD_DEVICE_TABLE (chipmesh_platform_oldtable): a plugin built
// before the optional members, whose struct_size ends before them and whose
// bytes past it are garbage that must never be read. With
// NO_SHARED_WINDOW_FILE (chipmesh_platform_perchipfiles): a transport table
// that ends before adopt_window_at.
#include <dlfcn.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "chipmesh/platform_abi.h"

namespace {

chipmesh_device_v1_t g_device;
chipmesh_transport_v1_t g_transport;
int (*g_sim_set_device)(int) = nullptr;

int crashy_set_device(int device_id) {
  if (device_id == 13) std::abort();
  if (device_id == 14)
    for (;;) pause();
  return g_sim_set_device(device_id);
}

bool load_sim() {
  if (g_sim_set_device) return true;
  void* sim = dlopen(CHIPMESH_SIM_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  if (!sim) return false;
  auto device = reinterpret_cast<chipmesh_device_entry_fn>(dlsym(sim, CHIPMESH_DEVICE_ENTRY_SYMBOL));
  auto transport = reinterpret_cast<chipmesh_transport_entry_fn>(dlsym(sim, CHIPMESH_TRANSPORT_ENTRY_SYMBOL));
  if (!device || !transport) return false;
  g_device = *device();
  g_transport = *transport();
  g_device.name = g_transport.name = "crashy";
#ifdef OLD_DEVICE_TABLE
  g_device.name = g_transport.name = "oldtable";
  g_device.struct_size = CHIPMESH_DEVICE_V1_BASE_SIZE;
  g_device.attach_host_arena = reinterpret_cast<int (*)(int, uint64_t)>(uintptr_t{1});
  g_device.host_range = reinterpret_cast<int (*)(uint64_t, size_t, void**, uint64_t*)>(uintptr_t{1});
  // Its transport table too ends before the optional members.
  g_transport.struct_size = CHIPMESH_TRANSPORT_V1_BASE_SIZE;
  g_transport.window_fd = reinterpret_cast<int (*)(CommHandle, int*)>(uintptr_t{1});
  g_transport.adopt_window = reinterpret_cast<int (*)(CommHandle, int)>(uintptr_t{1});
  g_transport.window_file = reinterpret_cast<int (*)(CommHandle, int*, uint64_t*)>(uintptr_t{1});
#endif
#if defined(OLD_DEVICE_TABLE) || defined(NO_SHARED_WINDOW_FILE)
  g_transport.adopt_window_at = reinterpret_cast<int (*)(CommHandle, int, uint64_t)>(uintptr_t{1});
  g_transport.adopted_window_stride = reinterpret_cast<int (*)(size_t, uint64_t*)>(uintptr_t{1});
#endif
#ifdef NO_SHARED_WINDOW_FILE
  // A transport table from before adopt_window_at: one window file per chip.
  g_device.name = g_transport.name = "perchipfiles";
  g_transport.struct_size = offsetof(chipmesh_transport_v1_t, adopt_window_at);
#endif
  g_sim_set_device = g_device.set_device;
  g_device.set_device = crashy_set_device;
  return true;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const chipmesh_device_v1_t* chipmesh_device_entry(void) {
  return load_sim() ? &g_device : nullptr;
}
extern "C" __attribute__((visibility("default"))) const chipmesh_transport_v1_t* chipmesh_transport_entry(void) {
  return load_sim() ? &g_transport : nullptr;
}

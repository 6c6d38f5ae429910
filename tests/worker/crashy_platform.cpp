// The sim platform with two traps in set_device, for bring-up failures that
// no config can cause: device 13 aborts the chip process, device 14 hangs.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "chipmesh/platform_abi.h"

namespace {

chipmesh_platform g_table;
int (*g_sim_set_device)(int) = nullptr;

int crashy_set_device(int device_id) {
  if (device_id == 13) std::abort();
  if (device_id == 14)
    for (;;) pause();
  return g_sim_set_device(device_id);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const chipmesh_platform* chipmesh_platform_entry(void) {
  if (!g_sim_set_device) {
    void* sim = dlopen(CHIPMESH_SIM_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (!sim) return nullptr;
    auto entry = reinterpret_cast<chipmesh_platform_entry_fn>(dlsym(sim, CHIPMESH_PLATFORM_ENTRY_SYMBOL));
    g_table = *entry();
    g_sim_set_device = g_table.set_device;
    g_table.set_device = crashy_set_device;
    g_table.name = "crashy";
  }
  return &g_table;
}

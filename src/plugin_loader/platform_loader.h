// Finds, loads and checks a platform plugin, and gives every plugin the same
// three faces whatever it exports: the device table, the transport table and
// the legacy combined table (adapted in whichever direction is missing).
#pragma once

#include <mutex>
#include <string_view>

#include "chipmesh/platform_abi.h"

namespace chipmesh {

struct PlatformTables {
  const chipmesh_device_v1_t* device = nullptr;        // never null once loaded
  const chipmesh_transport_v1_t* transport = nullptr;  // null: no communicator
  const chipmesh_platform* legacy = nullptr;           // never null once loaded
  // How the plugin came in: true when it exports only the legacy combined
  // table and the two new tables are adapters over it.
  bool adapted_from_legacy = false;
};

// name ("sim") or path ("/x/libfoo.so", anything with a '/'); DeviceError
// naming every candidate tried and why each failed (a table's version or
// size found and expected). Plugins stay loaded for the life of the process
// (their tables and thread-locals are referenced).
const PlatformTables& load_platform_tables(std::string_view name_or_path);

// The lock load_platform_tables holds while it loads (dlopen runs the
// plugin's constructors under it); a fork holds it (worker/fork_locks.h) so
// that no chip starts with it held: every chip loads its platform.
std::mutex& platform_loader_mutex();

// The legacy view of load_platform_tables(name_or_path).
const chipmesh_platform* load_platform(std::string_view name_or_path);

}  // namespace chipmesh

#include "plugin_loader/platform_loader.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "chipmesh/errors.h"
#include "common/env.h"
#include "plugin_loader/library_search.h"

namespace chipmesh {
namespace {

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Adapters. A C function pointer carries no context, so each loaded plugin
// that needs an adapter gets one slot, and the few functions whose signature
// differs between the tables are instantiated once per slot.
// ---------------------------------------------------------------------------
constexpr size_t kAdapterSlots = 16;

struct AdapterSlot {
  const chipmesh_platform* legacy_src = nullptr;          // legacy plugin -> new tables
  const chipmesh_transport_v1_t* transport_src = nullptr;  // split plugin -> legacy view
  chipmesh_device_v1_t device{};
  chipmesh_transport_v1_t transport{};
  chipmesh_platform legacy{};
};

std::array<AdapterSlot, kAdapterSlots> g_slots;
size_t g_slots_used = 0;  // guarded by the loader's mutex

// Legacy plugin: comm_init has no options. Its job token and timeout come
// from its environment, so a token given in the options is put there for
// the call (the chip process is single-threaded during bring-up).
template <size_t I>
CommHandle legacy_comm_init(int rank, int nranks, void* stream, const char* path,
                            const chipmesh_comm_options_v1_t* options) {
  const chipmesh_platform* p = g_slots[I].legacy_src;
  if (options && options->struct_size >= offsetof(chipmesh_comm_options_v1_t, job_token) + sizeof(const char*) &&
      options->job_token) {
    if (env::job_token() != options->job_token) setenv("CHIPMESH_JOB_TOKEN", options->job_token, 1);
  }
  return p->comm_init(rank, nranks, stream, path);
}

// Split plugin seen through the legacy table: comm_init with every default.
template <size_t I>
CommHandle composed_comm_init(int rank, int nranks, void* stream, const char* path) {
  return g_slots[I].transport_src->comm_init(rank, nranks, stream, path, nullptr);
}

template <size_t... I>
constexpr auto make_legacy_inits(std::index_sequence<I...>) {
  return std::array<decltype(&legacy_comm_init<0>), sizeof...(I)>{&legacy_comm_init<I>...};
}
template <size_t... I>
constexpr auto make_composed_inits(std::index_sequence<I...>) {
  return std::array<decltype(&composed_comm_init<0>), sizeof...(I)>{&composed_comm_init<I>...};
}
constexpr auto kLegacyInits = make_legacy_inits(std::make_index_sequence<kAdapterSlots>{});
constexpr auto kComposedInits = make_composed_inits(std::make_index_sequence<kAdapterSlots>{});

AdapterSlot& take_slot(const std::string& path) {
  if (g_slots_used == kAdapterSlots)
    throw DeviceError("cannot load platform plugin '" + path + "': more than " + std::to_string(kAdapterSlots) +
                      " plugins loaded in this process");
  return g_slots[g_slots_used++];
}

// A legacy combined table, seen as the two new tables.
PlatformTables adapt_legacy(const chipmesh_platform* p, const std::string& path) {
  const size_t i = g_slots_used;
  AdapterSlot& s = take_slot(path);
  s.legacy_src = p;
  s.device = chipmesh_device_v1_t{CHIPMESH_DEVICE_ABI_VERSION, sizeof(chipmesh_device_v1_t), p->name,
                                  p->set_device, p->reset_device, p->finalize, p->malloc, p->free,
                                  p->copy_to_device, p->copy_from_device, p->launch_kernel, p->last_error,
                                  p->last_error_code, p->emergency_cleanup,
                                  nullptr /* no host arena */, nullptr /* no host_range */};
  s.transport = chipmesh_transport_v1_t{CHIPMESH_TRANSPORT_ABI_VERSION, sizeof(chipmesh_transport_v1_t), p->name,
                                        kLegacyInits[i], p->comm_alloc_windows, p->comm_get_local_window_base,
                                        p->comm_get_window_size, p->comm_barrier, p->comm_destroy, p->last_error,
                                        p->last_error_code, p->emergency_cleanup,
                                        nullptr /* no leftover hook in v1 */, nullptr /* no window fd */,
                                        nullptr /* no adopted windows */, nullptr /* no window file */,
                                        nullptr /* no shared window file */, nullptr};
  return PlatformTables{&s.device, &s.transport, p, true};
}

// Emergency cleanup of a split plugin's legacy view: both tables'.
template <size_t I>
void composed_emergency_cleanup() {
  const AdapterSlot& s = g_slots[I];
  if (s.device.emergency_cleanup) s.device.emergency_cleanup();
  if (s.transport_src && s.transport_src->emergency_cleanup &&
      s.transport_src->emergency_cleanup != s.device.emergency_cleanup)
    s.transport_src->emergency_cleanup();
}
template <size_t... I>
constexpr auto make_cleanups(std::index_sequence<I...>) {
  return std::array<decltype(&composed_emergency_cleanup<0>), sizeof...(I)>{&composed_emergency_cleanup<I>...};
}
constexpr auto kComposedCleanups = make_cleanups(std::make_index_sequence<kAdapterSlots>{});

// The two new tables, seen as the legacy combined table. Without a
// transport the comm members are NULL. last_error is the device table's.
PlatformTables compose_legacy(const chipmesh_device_v1_t* d, const chipmesh_transport_v1_t* t,
                              const std::string& path) {
  const size_t i = g_slots_used;
  AdapterSlot& s = take_slot(path);
  s.transport_src = t;
  // The device table callers use: the plugin's bytes up to its struct_size,
  // so an optional member it was built without reads as NULL (and nothing
  // past its table is read).
  s.device = chipmesh_device_v1_t{};
  std::memcpy(&s.device, d, std::min<size_t>(d->struct_size, sizeof(chipmesh_device_v1_t)));
  // The same for the transport table.
  if (t) {
    s.transport = chipmesh_transport_v1_t{};
    std::memcpy(&s.transport, t, std::min<size_t>(t->struct_size, sizeof(chipmesh_transport_v1_t)));
  }
  chipmesh_platform& l = s.legacy;
  l = chipmesh_platform{};
  l.abi_version = CHIPMESH_PLATFORM_ABI_VERSION;
  l.struct_size = sizeof(chipmesh_platform);
  l.name = d->name;
  l.set_device = d->set_device;
  l.reset_device = d->reset_device;
  l.finalize = d->finalize;
  l.malloc = d->malloc;
  l.free = d->free;
  l.copy_to_device = d->copy_to_device;
  l.copy_from_device = d->copy_from_device;
  l.launch_kernel = d->launch_kernel;
  if (t) {
    l.comm_init = kComposedInits[i];
    l.comm_alloc_windows = t->alloc_windows;
    l.comm_get_local_window_base = t->local_window_base;
    l.comm_get_window_size = t->window_size;
    l.comm_barrier = t->barrier;
    l.comm_destroy = t->destroy;
  }
  l.last_error = d->last_error;
  l.last_error_code = d->last_error_code;
  l.emergency_cleanup = kComposedCleanups[i];
  return PlatformTables{&s.device, t ? &s.transport : nullptr, &l, false};
}

// ---------------------------------------------------------------------------
// Checks: version first, then size, before any other member is read.
// ---------------------------------------------------------------------------
template <typename Table>
bool check_table(const Table* t, const char* what, uint32_t version, size_t size, std::string* why) {
  if (!t) {
    *why = std::string(what) + " entry returned null";
    return false;
  }
  if (t->abi_version != version) {
    *why = std::string(what) + " ABI version " + std::to_string(t->abi_version) + ", this chipmesh expects " +
           std::to_string(version);
    return false;
  }
  if (t->struct_size < size) {
    *why = std::string(what) + " table is " + std::to_string(t->struct_size) + " bytes, expected at least " +
           std::to_string(size) + " (struct_size too small)";
    return false;
  }
  return true;
}

// Opens one candidate; returns its tables or nothing with a reason.
std::unique_ptr<PlatformTables> try_open(const std::string& path, std::string* why) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle) {
    const char* err = dlerror();
    *why = err ? err : "dlopen failed";
    return nullptr;
  }
  auto device_entry = reinterpret_cast<chipmesh_device_entry_fn>(dlsym(handle, CHIPMESH_DEVICE_ENTRY_SYMBOL));
  auto transport_entry =
      reinterpret_cast<chipmesh_transport_entry_fn>(dlsym(handle, CHIPMESH_TRANSPORT_ENTRY_SYMBOL));
  if (device_entry) {
    const chipmesh_device_v1_t* d = device_entry();
    if (!check_table(d, "device", CHIPMESH_DEVICE_ABI_VERSION, CHIPMESH_DEVICE_V1_BASE_SIZE, why)) return nullptr;
    const chipmesh_transport_v1_t* t = nullptr;
    if (transport_entry) {
      t = transport_entry();
      if (!check_table(t, "transport", CHIPMESH_TRANSPORT_ABI_VERSION, CHIPMESH_TRANSPORT_V1_BASE_SIZE, why))
        return nullptr;
    }
    return std::make_unique<PlatformTables>(compose_legacy(d, t, path));
  }
  if (transport_entry) {
    *why = "exports " CHIPMESH_TRANSPORT_ENTRY_SYMBOL " but no " CHIPMESH_DEVICE_ENTRY_SYMBOL;
    return nullptr;
  }
  auto entry = reinterpret_cast<chipmesh_platform_entry_fn>(dlsym(handle, CHIPMESH_PLATFORM_ENTRY_SYMBOL));
  if (!entry) {
    *why = "not a chipmesh platform: no symbol " CHIPMESH_DEVICE_ENTRY_SYMBOL ", no symbol " CHIPMESH_PLATFORM_ENTRY_SYMBOL
           " (legacy)";
    return nullptr;
  }
  const chipmesh_platform* table = entry();
  if (!check_table(table, "platform", CHIPMESH_PLATFORM_ABI_VERSION, sizeof(chipmesh_platform), why)) return nullptr;
  return std::make_unique<PlatformTables>(adapt_legacy(table, path));
}

}  // namespace

std::mutex& platform_loader_mutex() {
  static std::mutex mu;
  return mu;
}

const PlatformTables& load_platform_tables(std::string_view name_or_path) {
  static std::map<std::string, std::unique_ptr<PlatformTables>, std::less<>> loaded;
  std::lock_guard<std::mutex> lock(platform_loader_mutex());
  if (auto it = loaded.find(name_or_path); it != loaded.end()) return *it->second;

  const bool is_path = name_or_path.find('/') != std::string_view::npos;
  if (!is_path && !valid_name(name_or_path))
    throw DeviceError("invalid platform name '" + std::string(name_or_path) +
                      "': use a name like \"sim\" or a path to a plugin");
  std::vector<std::string> tries =
      is_path ? std::vector<std::string>{std::string(name_or_path)}
              : library_candidates("libchipmesh_platform_" + std::string(name_or_path) + ".so");
  std::string report;
  for (const auto& path : tries) {
    std::string why;
    if (auto tables = try_open(path, &why)) {
      return *loaded.emplace(std::string(name_or_path), std::move(tables)).first->second;
    }
    report += "\n  " + path + ": " + why;
  }
  throw DeviceError((is_path ? "cannot load platform plugin '" : "unknown platform '") + std::string(name_or_path) +
                    "'; tried:" + report);
}

const chipmesh_platform* load_platform(std::string_view name_or_path) {
  return load_platform_tables(name_or_path).legacy;
}

}  // namespace chipmesh

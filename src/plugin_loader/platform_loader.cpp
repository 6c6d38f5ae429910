#include "plugin_loader/platform_loader.h"

#include <dlfcn.h>

#include <cctype>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "chipmesh/errors.h"
#include "plugin_loader/library_search.h"

namespace chipmesh {
namespace {

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

// Opens one candidate; returns the table or nullptr with a reason.
const chipmesh_platform* try_open(const std::string& path, std::string* why) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle) {
    const char* err = dlerror();
    *why = err ? err : "dlopen failed";
    return nullptr;
  }
  auto entry = reinterpret_cast<chipmesh_platform_entry_fn>(dlsym(handle, CHIPMESH_PLATFORM_ENTRY_SYMBOL));
  if (!entry) {
    *why = "not a chipmesh platform: no symbol " CHIPMESH_PLATFORM_ENTRY_SYMBOL;
    return nullptr;
  }
  const chipmesh_platform* table = entry();
  if (!table) {
    *why = CHIPMESH_PLATFORM_ENTRY_SYMBOL "() returned null";
    return nullptr;
  }
  if (table->abi_version != CHIPMESH_PLATFORM_ABI_VERSION) {
    *why = "platform ABI version " + std::to_string(table->abi_version) + ", this chipmesh expects " +
           std::to_string(CHIPMESH_PLATFORM_ABI_VERSION);
    return nullptr;
  }
  if (table->struct_size < sizeof(chipmesh_platform)) {
    *why = "platform table is " + std::to_string(table->struct_size) + " bytes, expected at least " +
           std::to_string(sizeof(chipmesh_platform));
    return nullptr;
  }
  return table;
}

}  // namespace

const chipmesh_platform* load_platform(std::string_view name_or_path) {
  static std::mutex mu;
  static std::map<std::string, const chipmesh_platform*, std::less<>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = loaded.find(name_or_path); it != loaded.end()) return it->second;

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
    if (const chipmesh_platform* table = try_open(path, &why)) {
      loaded.emplace(std::string(name_or_path), table);
      return table;
    }
    report += "\n  " + path + ": " + why;
  }
  throw DeviceError((is_path ? "cannot load platform plugin '" : "unknown platform '") + std::string(name_or_path) +
                    "'; tried:" + report);
}

}  // namespace chipmesh

#include "kernel_loader/kernel_library.h"

#include <dlfcn.h>

#include <iterator>

#include "chipmesh/errors.h"
#include "plugin_loader/library_search.h"

namespace chipmesh {

namespace {

// The built-in kernels (kernels/*.cpp, CHIPMESH_KERNEL), resolved by
// preload_builtin_kernels. A kernel missing here still works: find() looks
// it up with dlsym as it does a user's (kernel_library_test checks the list).
constexpr const char* kBuiltinKernels[] = {"chipmesh_allreduce", "chipmesh_allgather", "chipmesh_reduce_scatter",
                                           "chipmesh_broadcast", "chipmesh_reduce",    "chipmesh_alltoall",
                                           "chipmesh_barrier",   "chipmesh_staged",    "chipmesh_noop"};
constexpr size_t kBuiltinCount = std::size(kBuiltinKernels);

// Written once by the parent before it forks; each chip inherits them.
void* g_builtin_library = nullptr;
chipmesh_kernel_entry g_builtin_entries[kBuiltinCount] = {};

}  // namespace

void preload_builtin_kernels() noexcept {
  static const bool once = [] {
    try {
      std::string report;
      g_builtin_library = open_first_library(library_candidates(kBuiltinKernelLibrary), &report);
      if (!g_builtin_library) return false;
      for (size_t i = 0; i < kBuiltinCount; ++i)
        g_builtin_entries[i] = reinterpret_cast<chipmesh_kernel_entry>(dlsym(g_builtin_library, kBuiltinKernels[i]));
      return true;
    } catch (...) {
      return false;
    }
  }();
  (void)once;
}

chipmesh_kernel_entry preloaded_builtin_kernel(const std::string& kernel) noexcept {
  for (size_t i = 0; i < kBuiltinCount; ++i)
    if (g_builtin_entries[i] && kernel == kBuiltinKernels[i]) return g_builtin_entries[i];
  return nullptr;
}

void* KernelLibraries::open(const std::string& library) {
  if (auto it = libraries_.find(library); it != libraries_.end()) return it->second;
  if (library.empty() && g_builtin_library) return libraries_.emplace(library, g_builtin_library).first->second;
  std::vector<std::string> tries = library.empty() ? library_candidates(kBuiltinKernelLibrary)
                                                   : std::vector<std::string>{library};
  std::string report;
  void* handle = open_first_library(tries, &report);
  if (!handle)
    throw DeviceError("cannot load kernel library '" + (library.empty() ? std::string(kBuiltinKernelLibrary) : library) +
                      "'; tried:" + report);
  libraries_.emplace(library, handle);
  return handle;
}

chipmesh_kernel_entry KernelLibraries::find(const std::string& library, const std::string& kernel) {
  auto key = std::make_pair(library, kernel);
  if (auto it = kernels_.find(key); it != kernels_.end()) return it->second;
  if (kernel.empty()) throw ConfigError("task has no kernel name");
  if (library.empty())
    if (chipmesh_kernel_entry entry = preloaded_builtin_kernel(kernel))
      return kernels_.emplace(std::move(key), entry).first->second;
  void* handle = open(library);
  dlerror();
  void* sym = dlsym(handle, kernel.c_str());
  if (!sym)
    throw ConfigError("kernel '" + kernel + "' not found in '" +
                      (library.empty() ? std::string(kBuiltinKernelLibrary) : library) + "'");
  auto entry = reinterpret_cast<chipmesh_kernel_entry>(sym);
  kernels_.emplace(std::move(key), entry);
  return entry;
}

}  // namespace chipmesh

#include "kernel_loader/kernel_library.h"

#include <dlfcn.h>

#include "chipmesh/errors.h"
#include "plugin_loader/library_search.h"

namespace chipmesh {

void preload_builtin_kernels() noexcept {
  static const bool once = [] {
    try {
      std::string report;
      return open_first_library(library_candidates(kBuiltinKernelLibrary), &report) != nullptr;
    } catch (...) {
      return false;
    }
  }();
  (void)once;
}

void* KernelLibraries::open(const std::string& library) {
  if (auto it = libraries_.find(library); it != libraries_.end()) return it->second;
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

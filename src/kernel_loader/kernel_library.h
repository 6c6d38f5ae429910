// Chip-side resolution of kernels: each library is loaded once per chip
// process, each (library, kernel) pair looked up once.
#pragma once

#include <map>
#include <string>
#include <utility>

#include "chipmesh/kernel.h"

namespace chipmesh {

// File name of the built-in kernels library, found like the platforms.
inline constexpr const char* kBuiltinKernelLibrary = "libchipmesh_kernels.so";

// Loads the built-in kernels library into this process, once (nothing when
// it cannot be found: a chip then reports that on its first kernel). Called
// by the parent before it forks: the chips inherit the library mapped and
// relocated, where each chip used to dlopen it (RTLD_NOW) on its first
// kernel, 0.6 ms of the first empty kernel on 8 chips (AMD EPYC VM,
// docs/PERFORMANCE.md).
//
// It also resolves the built-in kernels' entry points, and a chip uses the
// library and those entries as it inherits them: on its first kernel a chip
// searched for the library (a stringstream, dladdr, std::filesystem) and
// dlopen'ed and dlsym'ed it again, about 22 page faults on code and tables
// no chip had touched (the first empty kernel on 8 chips took 4.2-4.5 ms
// instead of 1.0-1.1 on the paravirtualized VM of docs/PERFORMANCE.md).
void preload_builtin_kernels() noexcept;
// The preloaded entry of built-in kernel `kernel`; nullptr when it is not one
// or preload_builtin_kernels has not run (or found nothing).
chipmesh_kernel_entry preloaded_builtin_kernel(const std::string& kernel) noexcept;

class KernelLibraries {
 public:
  // library: a path, or "" for the built-in library. ConfigError naming the
  // kernel and library when the symbol is missing, DeviceError when the
  // library cannot be loaded (listing every place tried).
  chipmesh_kernel_entry find(const std::string& library, const std::string& kernel);

 private:
  void* open(const std::string& library);
  std::map<std::string, void*> libraries_;
  std::map<std::pair<std::string, std::string>, chipmesh_kernel_entry> kernels_;
};

}  // namespace chipmesh

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
void preload_builtin_kernels() noexcept;

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

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

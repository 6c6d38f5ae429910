// Where chipmesh looks for its plugins and kernel libraries by file name:
// $CHIPMESH_PLATFORM_PATH, the directory of libchipmesh itself (where they
// are installed and built), then the dynamic loader's own search path.
#pragma once

#include <dlfcn.h>

#include <string>
#include <vector>

namespace chipmesh {

std::vector<std::string> library_candidates(const std::string& file_name);

// dlopen()s the first candidate that loads (RTLD_NOW | `scope`, never
// unloaded); returns the handle or nullptr with every attempt in *report.
void* open_first_library(const std::vector<std::string>& candidates, std::string* report, int scope = RTLD_LOCAL);

}  // namespace chipmesh

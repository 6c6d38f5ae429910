// Finds, loads and checks a platform plugin.
#pragma once

#include <string_view>

#include "chipmesh/platform_abi.h"

namespace chipmesh {

// name ("sim") or path ("/x/libfoo.so", anything with a '/'); DeviceError
// naming every candidate tried and why each failed. Plugins stay loaded for
// the life of the process (their tables and thread-locals are referenced).
const chipmesh_platform* load_platform(std::string_view name_or_path);

}  // namespace chipmesh

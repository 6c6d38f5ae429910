// Small helpers the sim communicator's files share.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "common/process.h"

namespace chipmesh::sim {

// strerror, and the limit behind ENOMEM or EMFILE (process::resource_hint).
inline std::string errno_text(int err) { return std::string(std::strerror(err)) + process::resource_hint(err); }

inline size_t page_size() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace chipmesh::sim

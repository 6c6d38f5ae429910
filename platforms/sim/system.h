// Small helpers the sim communicator's files share.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace chipmesh::sim {

inline std::string errno_text(int err) { return std::string(std::strerror(err)); }

inline size_t page_size() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace chipmesh::sim

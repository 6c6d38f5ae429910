#include "ownership.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace chipmesh::cli {

namespace {

std::optional<pid_t> to_pid(unsigned long long v) {
  if (v == 0 || v > 0x7fffffffULL) return std::nullopt;
  return static_cast<pid_t>(v);
}

}  // namespace

std::optional<pid_t> owner_pid_of_shm_name(const std::string& name) {
  // Staging of the demo and the benchmarks: chipmesh_{demo,bench}_<decimal pid>_<suffix>
  for (const std::string tool : {"chipmesh_demo_", "chipmesh_bench_"}) {
    if (name.rfind(tool, 0) != 0) continue;
    size_t pos = tool.size();
    size_t end = pos;
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    if (end == pos || end - pos > 10 || end >= name.size() || name[end] != '_') return std::nullopt;
    return to_pid(std::strtoull(name.substr(pos, end - pos).c_str(), nullptr, 10));
  }
  // Every other chipmesh name is a platform's: clean asks the platforms.
  return std::nullopt;
}

}  // namespace chipmesh::cli

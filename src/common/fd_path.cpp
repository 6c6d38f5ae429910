#include "common/fd_path.h"

#include <unistd.h>

#include <charconv>

namespace chipmesh::fd_path {

std::string format(int pid, int fd) { return "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd); }

bool parse(std::string_view name, int* pid, int* fd) {
  auto literal = [&](std::string_view s) {
    if (name.substr(0, s.size()) != s) return false;
    name.remove_prefix(s.size());
    return true;
  };
  auto number = [&](int* v) {
    if (name.empty() || name[0] < '0' || name[0] > '9') return false;  // no sign, no space
    const auto r = std::from_chars(name.data(), name.data() + name.size(), *v);
    if (r.ec != std::errc()) return false;  // out of range
    name.remove_prefix(static_cast<size_t>(r.ptr - name.data()));
    return true;
  };
  int p = 0, f = 0;
  if (!(literal("/proc/") && number(&p) && literal("/fd/") && number(&f) && name.empty())) return false;
  *pid = p;
  *fd = f;
  return true;
}

bool held_here(int pid) { return pid > 0 && (pid == getpid() || pid == getppid()); }

}  // namespace chipmesh::fd_path

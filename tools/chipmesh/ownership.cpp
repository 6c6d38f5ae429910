#include "ownership.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace chipmesh::cli {

namespace {

bool all_of(const std::string& s, size_t pos, size_t n, int (*pred)(int)) {
  if (pos + n > s.size()) return false;
  for (size_t i = pos; i < pos + n; ++i)
    if (!pred(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

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
  // chipmesh_<8 hex>_<8 hex>_<suffix>
  const std::string sim = "chipmesh_";
  if (name.rfind(sim, 0) != 0) return std::nullopt;
  const size_t p = sim.size();
  if (!all_of(name, p, 8, isxdigit) || name.size() <= p + 8 || name[p + 8] != '_') return std::nullopt;
  if (!all_of(name, p + 9, 8, isxdigit) || name.size() <= p + 17 || name[p + 17] != '_') return std::nullopt;
  if (name.size() == p + 18) return std::nullopt;  // no suffix
  return to_pid(std::strtoull(name.substr(p, 8).c_str(), nullptr, 16));
}

std::optional<pid_t> owner_pid_of_rootinfo_temp(const std::string& file_name,
                                                const std::string& rootinfo_name) {
  const std::string prefix = rootinfo_name + ".tmp.";
  if (file_name.rfind(prefix, 0) != 0) return std::nullopt;
  size_t pos = prefix.size();
  size_t end = pos;
  while (end < file_name.size() && std::isdigit(static_cast<unsigned char>(file_name[end]))) ++end;
  if (end == pos || end - pos > 10 || end >= file_name.size() || file_name[end] != '.') return std::nullopt;
  if (file_name.size() != end + 1 + 16 || !all_of(file_name, end + 1, 16, isxdigit)) return std::nullopt;
  return to_pid(std::strtoull(file_name.substr(pos, end - pos).c_str(), nullptr, 10));
}

ProcessInfo process_info(pid_t pid) {
  ProcessInfo info;
  if (pid <= 0) return info;
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // ENOENT/ESRCH: gone. Anything else (EACCES under a hardened /proc):
    // assume it runs, so that clean never removes a live job's objects.
    if (errno != ENOENT && errno != ESRCH) info.state = ProcessState::Alive;
    return info;
  }
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  const int err = errno;
  ::close(fd);
  if (n <= 0) {
    // ESRCH: the process went away between open and read.
    if (!(n < 0 && err == ESRCH)) info.state = ProcessState::Alive;
    return info;
  }
  const std::string line(buf, static_cast<size_t>(n));
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so parse
  // from the last ')'. Field 3 is the state, field 22 the start time.
  const size_t close_paren = line.rfind(')');
  if (close_paren == std::string::npos) {
    info.state = ProcessState::Alive;
    return info;
  }
  std::istringstream rest(line.substr(close_paren + 1));
  std::string state;
  rest >> state;  // field 3
  std::string skip;
  for (int f = 4; f < 22 && rest >> skip; ++f) {
  }
  uint64_t start = 0;
  rest >> start;  // field 22
  info.start_time = start;
  info.state = (state == "Z" || state == "X" || state == "x") ? ProcessState::Zombie : ProcessState::Alive;
  return info;
}

}  // namespace chipmesh::cli

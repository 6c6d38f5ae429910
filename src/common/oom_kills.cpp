#include "common/oom_kills.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace chipmesh::oom_kills {

std::optional<uint64_t> parse(std::string_view vmstat) noexcept {
  constexpr std::string_view kKey = "oom_kill ";
  for (size_t at = 0; at < vmstat.size();) {
    size_t end = vmstat.find('\n', at);
    if (end == std::string_view::npos) end = vmstat.size();
    const std::string_view line = vmstat.substr(at, end - at);
    at = end + 1;
    if (line.substr(0, kKey.size()) != kKey) continue;
    const std::string_view digits = line.substr(kKey.size());
    if (digits.empty()) return std::nullopt;
    uint64_t value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + static_cast<uint64_t>(c - '0');
    }
    return value;
  }
  return std::nullopt;
}

std::optional<uint64_t> count() noexcept {
  // No allocation: the Worker's watcher thread calls this, where a
  // bad_alloc (a process near its memory limit) would end the program.
  const int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[4096];
  char line[128];  // "oom_kill N" is short; longer lines are other counters
  size_t len = 0;
  bool too_long = false;
  std::optional<uint64_t> value;
  for (bool done = false; !done;) {
    const ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    for (ssize_t i = 0; i < got && !done; ++i) {
      if (buf[i] != '\n') {
        if (len < sizeof line) line[len++] = buf[i];
        else too_long = true;
        continue;
      }
      if (!too_long && (value = parse(std::string_view(line, len)))) done = true;
      len = 0;
      too_long = false;
    }
  }
  if (!value && len > 0 && !too_long) value = parse(std::string_view(line, len));  // no final newline
  close(fd);
  return value;
}

}  // namespace chipmesh::oom_kills

#include "common/oom_kills.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace chipmesh::oom_kills {

std::optional<uint64_t> parse(std::string_view vmstat) {
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

std::optional<uint64_t> count() {
  const int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char chunk[4096];
  for (;;) {
    const ssize_t got = read(fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(chunk, static_cast<size_t>(got));
  }
  close(fd);
  return parse(text);
}

}  // namespace chipmesh::oom_kills

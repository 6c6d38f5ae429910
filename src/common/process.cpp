#include "common/process.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace chipmesh::process {

namespace {

// /proc/<pid>/stat from field 3 on (after the command name, which may hold
// spaces and parentheses); "" when there is no such process.
std::string stat_after_comm(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (!f) return {};
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  return p && p[1] == ' ' ? std::string(p + 2) : std::string();
}

}  // namespace

uint64_t start_time(pid_t pid) {
  // Field 22, the 20th after the command name.
  std::string rest = stat_after_comm(pid);
  size_t pos = 0;
  for (int field = 3; field < 22 && pos != std::string::npos; ++field) {
    pos = rest.find(' ', pos);
    if (pos != std::string::npos) ++pos;
  }
  return pos == std::string::npos || rest.empty() ? 0 : std::strtoull(rest.c_str() + pos, nullptr, 10);
}

Watch::Watch(pid_t pid, uint64_t expected_start) : pid_(pid) {
  fd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd_ < 0) {
    gone_at_open_ = (errno == ESRCH);
    return;
  }
  // The pidfd now pins one process; make sure it is the one that registered.
  if (expected_start != 0 && start_time(pid) != expected_start) gone_at_open_ = true;
}

Watch::Watch(Watch&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      fd_(std::exchange(other.fd_, -1)),
      gone_at_open_(other.gone_at_open_) {}

Watch& Watch::operator=(Watch&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    pid_ = std::exchange(other.pid_, 0);
    fd_ = std::exchange(other.fd_, -1);
    gone_at_open_ = other.gone_at_open_;
  }
  return *this;
}

Watch::~Watch() {
  if (fd_ >= 0) ::close(fd_);
}

bool Watch::exited() const {
  if (pid_ <= 0) return false;
  if (gone_at_open_) return true;
  if (fd_ < 0) {
    // No pidfd (old kernel, EMFILE): fall back to signal 0 plus zombie state.
    if (kill(pid_, 0) != 0 && errno == ESRCH) return true;
    std::string rest = stat_after_comm(pid_);
    return rest.empty() || rest[0] == 'Z' || rest[0] == 'X';
  }
  struct pollfd pfd{fd_, POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0;
}

}  // namespace chipmesh::process

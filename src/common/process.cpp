#include "common/process.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace chipmesh::process {

uint64_t start_time(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (!f) return 0;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // comm (field 2) may hold spaces and parentheses: skip past the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  // After ')' come fields 3.. ; start time is field 22, i.e. the 20th after ')'.
  unsigned long long value = 0;
  int field = 2;
  for (const char* s = p + 1; *s; ++s) {
    if (*s == ' ') {
      ++field;
      if (field == 22) {
        value = std::strtoull(s + 1, nullptr, 10);
        break;
      }
    }
  }
  return value;
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
    char path[64], state = 0;
    std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid_));
    if (FILE* f = std::fopen(path, "re")) {
      char buf[512];
      size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
      std::fclose(f);
      buf[n] = '\0';
      if (const char* p = std::strrchr(buf, ')'); p && p[1] == ' ') state = p[2];
    }
    return state == 'Z' || state == 'X';
  }
  struct pollfd pfd{fd_, POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0;
}

}  // namespace chipmesh::process

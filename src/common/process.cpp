#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <climits>
#include <new>
#include <string>
#include <utility>

namespace chipmesh::process {

Info info(pid_t pid) {
  Info out;
  if (pid <= 0) return out;
  // Formatted and parsed with <charconv>, not snprintf/strtoull: a chip
  // reads its own stat at bring-up, and printf's code is pages of libc a
  // fresh chip has not touched, a page fault each (fd_path.h says more).
  char path[64] = "/proc/";
  char* end = std::to_chars(path + 6, path + sizeof(path) - 6, static_cast<int>(pid)).ptr;
  std::memcpy(end, "/stat", 6);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // ENOENT/ESRCH: gone. Anything else: assume it runs.
    if (errno != ENOENT && errno != ESRCH) out.state = State::Alive;
    return out;
  }
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  const int err = errno;
  ::close(fd);
  if (n <= 0) {
    // ESRCH: the process went away between open and read.
    if (!(n < 0 && err == ESRCH)) out.state = State::Alive;
    return out;
  }
  buf[n] = '\0';
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so parse from
  // the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p || p[1] != ' ' || p[2] == '\0') {
    out.state = State::Alive;
    return out;
  }
  p += 2;
  const char state = *p;
  out.state = (state == 'Z' || state == 'X' || state == 'x') ? State::Zombie : State::Alive;
  out.stopped = state == 'T';
  out.sleeping = state == 'S';
  // Field 22 is the 19th after the state (field 3).
  for (int field = 3; field < 22 && p; ++field) {
    p = std::strchr(p, ' ');
    if (p) ++p;
  }
  const char* const text_end = buf + n;
  if (p && std::from_chars(p, text_end, out.start_time).ec != std::errc()) out.start_time = 0;
  for (int field = 22; field < 39 && p; ++field) {
    p = std::strchr(p, ' ');
    if (p) ++p;
  }
  if (p && std::from_chars(p, text_end, out.last_cpu).ec != std::errc()) out.last_cpu = -1;
  return out;
}

uint64_t start_time(pid_t pid) {
  // Our own never changes: read /proc once per process (~8 us a read here;
  // a domain's rank 0 needed it twice per allocation). After a fork the
  // child's pid differs from the one cached, so it reads its own.
  thread_local pid_t cached_pid = 0;
  thread_local uint64_t cached = 0;
  if (pid == getpid()) {
    if (cached_pid != pid || cached == 0) {
      cached = info(pid).start_time;
      cached_pid = pid;
    }
    return cached;
  }
  return info(pid).start_time;
}

std::string describe(const char* who, pid_t pid, State state) {
  const char* what = state == State::Alive ? " is alive" : state == State::Zombie ? " has exited (zombie)" : " is gone";
  return std::string(who) + " pid " + std::to_string(pid) + what;
}

int open_pidfd(pid_t pid) noexcept { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

std::vector<size_t> wait_exits(const std::vector<int>& pidfds, std::chrono::milliseconds timeout, int stop_fd,
                               bool* stopped) {
  std::vector<pollfd> fds;
  std::vector<size_t> which;
  if (stop_fd >= 0) fds.push_back({stop_fd, POLLIN, 0});
  for (size_t i = 0; i < pidfds.size(); ++i) {
    if (pidfds[i] < 0) continue;
    fds.push_back({pidfds[i], POLLIN, 0});
    which.push_back(i);
  }
  if (stopped) *stopped = false;
  const int ms = timeout.count() < 0 ? -1 : static_cast<int>(std::min<long long>(timeout.count(), INT32_MAX));
  std::vector<size_t> ready;
  if (::poll(fds.data(), fds.size(), ms) <= 0) return ready;  // timeout or EINTR
  const size_t first = stop_fd >= 0 ? 1 : 0;
  if (stop_fd >= 0 && fds[0].revents && stopped) *stopped = true;
  for (size_t k = first; k < fds.size(); ++k)
    if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) ready.push_back(which[k - first]);
  return ready;
}

Watch::Watch(pid_t pid, uint64_t expected_start) : pid_(pid) {
  fd_ = open_pidfd(pid);
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
    return info(pid_).state != State::Alive;
  }
  struct pollfd pfd{fd_, POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0;
}

std::string limit_hint(int err, int resource, const char* name) {
  if (err != EAGAIN && err != EMFILE && err != ENFILE) return {};
  struct rlimit rl{};
  if (getrlimit(resource, &rl) != 0) return {};
  return std::string(", at the limit ") + name + " = " +
         (rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(rl.rlim_cur));
}

std::string address_space_hint(int err) {
  if (err != ENOMEM) return {};
  struct rlimit rl{};
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return {};
  return " (RLIMIT_AS, the address-space limit `ulimit -v` sets, is " + std::to_string(rl.rlim_cur) + " bytes)";
}

std::string resource_hint(int err) {
  if (err == EMFILE) return limit_hint(err, RLIMIT_NOFILE, "RLIMIT_NOFILE (open files)");
  return address_space_hint(err);
}

std::string thread_limit_hint(int err) {
  std::string hint = limit_hint(err, RLIMIT_NPROC, "RLIMIT_NPROC (processes and threads)");
  struct rlimit rl{};
  if (err == EAGAIN && getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    hint += " or RLIMIT_AS, the address-space limit `ulimit -v` sets, is " + std::to_string(rl.rlim_cur) +
            " bytes (each thread's stack counts against it)";
  return hint;
}

pid_t this_pid() noexcept {
  static std::atomic<pid_t>* const slot = [] () -> std::atomic<pid_t>* {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (madvise(p, page, MADV_WIPEONFORK) != 0) {  // before Linux 4.14
      munmap(p, page);
      return nullptr;
    }
    return new (p) std::atomic<pid_t>(0);  // never unmapped: read until _exit
  }();
  if (!slot) return getpid();
  pid_t pid = slot->load(std::memory_order_relaxed);
  if (pid == 0) {  // first use, or a fork's child
    pid = getpid();
    slot->store(pid, std::memory_order_relaxed);
  }
  return pid;
}

}  // namespace chipmesh::process

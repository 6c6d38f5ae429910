#include "pingpong.h"

#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common.h"

namespace chipmesh::bench {

namespace {

constexpr uint32_t kStop = 0xffffffffu;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void futex_wait(std::atomic<uint32_t>* w, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAIT, expected, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>* w) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Waits until *w != old; returns the new value.
uint32_t wait_change(std::atomic<uint32_t>* w, uint32_t old, PingPongKind kind) {
  for (;;) {
    uint32_t v = w->load(std::memory_order_acquire);
    if (v != old) return v;
    if (kind == PingPongKind::Spin)
      relax();
    else
      futex_wait(w, old);
  }
}

}  // namespace

struct PingPong::Page {
  alignas(64) std::atomic<uint32_t> ping;  // parent -> child
  alignas(64) std::atomic<uint32_t> pong;  // child -> parent
};

PingPong::PingPong(PingPongKind kind) : kind_(kind) {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error(std::string("ping-pong: mmap: ") + std::strerror(errno));
  page_ = new (p) Page{};
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    munmap(page_, 4096);
    throw std::runtime_error(std::string("ping-pong: fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    uint32_t last = 0;
    for (;;) {
      last = wait_change(&page_->ping, last, kind_);
      if (last == kStop) _exit(0);
      page_->pong.store(last, std::memory_order_release);
      if (kind_ == PingPongKind::Futex) futex_wake(&page_->pong);
    }
  }
  child_ = pid;
}

PingPong::~PingPong() {
  if (child_ > 0) {
    page_->ping.store(kStop, std::memory_order_release);
    futex_wake(&page_->ping);
    while (waitpid(child_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  munmap(page_, 4096);
}

void PingPong::measure(int rounds, std::vector<double>& us) {
  for (int i = 0; i < rounds; ++i) {
    const uint32_t s = ++seq_;
    const auto t0 = Clock::now();
    page_->ping.store(s, std::memory_order_release);
    if (kind_ == PingPongKind::Futex) futex_wake(&page_->ping);
    wait_change(&page_->pong, s - 1, kind_);
    us.push_back(us_between(t0, Clock::now()));
  }
}

}  // namespace chipmesh::bench

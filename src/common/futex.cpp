#include "common/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <climits>

#include "chipmesh/kernel_device.h"  // device::detail::move_off_this_cpu, shared with the kernels

namespace chipmesh::futex {
namespace {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "futex words must be plain lock-free 32-bit atomics");

uint32_t* address(const std::atomic<uint32_t>* word) {
  return reinterpret_cast<uint32_t*>(const_cast<std::atomic<uint32_t>*>(word));
}

}  // namespace

void wait(const std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000000LL);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1000000000LL);
  // Shared (not FUTEX_PRIVATE) because the word lives in memory mapped by
  // several processes. EAGAIN/EINTR/ETIMEDOUT all mean "re-check".
  syscall(SYS_futex, address(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void wake(const std::atomic<uint32_t>* word, int count) {
  syscall(SYS_futex, address(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

int cores() { return std::max(1, device::detail::online_cpus()); }

namespace {
// Read when the library (libchipmesh, a platform plugin) is loaded, in the
// process that forks the chips: otherwise every chip read
// /sys/devices/system/cpu/online itself, once per library, in its bring-up.
[[maybe_unused]] const int kCoresAtLoad = cores();
}  // namespace

int spin_budget(int participants) { return participants > cores() ? 64 : 2048; }

int yield_budget(int participants) { return participants > cores() ? 32 : 64; }

void yield_cpu() { sched_yield(); }

bool move_off_this_cpu() { return device::detail::move_off_this_cpu(2); }

int current_cpu() { return sched_getcpu(); }

}  // namespace chipmesh::futex

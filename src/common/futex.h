// Cross-process futex waits on 32-bit words that live in shared memory.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace chipmesh::futex {

// Sleeps while *word == expected, at most `timeout`. Returns on a wake, a
// value change, a signal or the timeout; callers re-check their condition.
void wait(const std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout);
// Wakes up to `count` waiters (INT32_MAX: all).
void wake(const std::atomic<uint32_t>* word, int count = INT32_MAX);

// How many times a waiter spins before it sleeps: short when processes
// outnumber cores, where spinning only steals time from the peer being waited on.
int spin_budget(int participants);

// How many times a waiter yields its core before it sleeps, once spinning is
// over: only when processes outnumber cores, where the one being waited on
// is likely runnable on this very core and a futex round trip costs more.
int yield_budget(int participants);

void yield_cpu();

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins, then yields, until ready() or both budgets are spent; returns
// ready()'s last value. Callers then block on a futex.
template <typename Pred>
bool spin_then_yield(Pred&& ready, int participants) {
  const int spins = spin_budget(participants);
  for (int i = 1; i <= spins; ++i) {
    if (ready()) return true;
    cpu_relax();
    // Even with a core per process the scheduler sometimes stacks the waiter
    // and the process it waits for on one core; a yield every ~500 pauses
    // hands that core over instead of burning the whole spin budget, and
    // costs ~1 us when nobody else is runnable.
    if (i % 512 == 0) yield_cpu();
  }
  for (int i = yield_budget(participants); i > 0; --i) {
    if (ready()) return true;
    yield_cpu();
  }
  return ready();
}

}  // namespace chipmesh::futex

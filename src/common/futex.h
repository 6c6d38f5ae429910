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

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace chipmesh::futex

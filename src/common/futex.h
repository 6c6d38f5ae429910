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

// The CPU the calling thread runs on now (glibc reads it from rseq: a few
// ns), or -1 when unknown.
int current_cpu();

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins, then yields, until ready() or both budgets are spent; returns
// ready()'s last value. Callers then block on a futex.
//
// peer_here() tells whether a process this waiter waits for was last seen
// on the waiter's own CPU (each side publishes current_cpu() in shared
// memory, refreshed from inside peer_here()). Then spinning only delays the
// very process it waits for, so the waiter yields at once: the scheduler
// stacks the two on one core more often than one would think (after bursts
// of wake-ups, or when other work holds the other core), and a round trip
// then cost ~17 us of pause loops on Intel, where a pause is ~40 ns, instead
// of two context switches.
template <typename Pred, typename PeerHere>
bool spin_then_yield(Pred&& ready, int participants, PeerHere&& peer_here) {
  const int spins = spin_budget(participants);
  for (int i = 1; i <= spins; ++i) {
    if (ready()) return true;
    cpu_relax();
    // Every ~500 pauses a yield regardless: the CPU a peer published may be
    // stale; a yield costs ~1 us when nobody else is runnable.
    if (i % 32 == 0 && (i % 512 == 0 || peer_here())) yield_cpu();
  }
  for (int i = yield_budget(participants); i > 0; --i) {
    if (ready()) return true;
    yield_cpu();
  }
  return ready();
}

template <typename Pred>
bool spin_then_yield(Pred&& ready, int participants) {
  return spin_then_yield(ready, participants, [] { return false; });
}

}  // namespace chipmesh::futex

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

// Moves the calling thread to another CPU it may run on, keeping its
// affinity mask; false when there is none.
bool move_off_this_cpu();

// The CPUs online (cached).
int cores();

// How many times a waiter finds the one it waits for on its CPU, over waits
// in a row, before it calls unstack() (see spin_then_yield).
inline constexpr int kStackedLooks = 64;

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
//
// unstack() runs when a waiter found the awaited side on its CPU
// kStackedLooks times over waits in a row. Where the two could have a core
// each, sharing one is a placement accident that yielding never mends: the
// scheduler balances tasks that queue, not two that take turns (it stayed
// so for seconds on the AMD EPYC VM: 6 us round trips instead of 0.4 us).
// Only one of the two sides may move (a chip, never the user's thread), or
// they chase each other; it decides whether a core is free.
//
// `yields`: how many times it yields once spinning is over.
template <typename Pred, typename PeerHere, typename Unstack>
bool spin_then_yield(Pred&& ready, int participants, PeerHere&& peer_here, Unstack&& unstack, int yields) {
  const int spins = spin_budget(participants);
  const bool crowded = participants > cores();
  // Looks that found the awaited side on our CPU, over this thread's waits
  // in a row that found it at least once.
  static thread_local int stacked_looks = 0;
  bool stacked = false;
  for (int i = 0; i < spins; ++i) {
    if (ready()) {
      if (!stacked) stacked_looks = 0;
      return true;
    }
    // Where the awaited side runs: every 32 pauses, and at once when the
    // processes outnumber the cores (stacked waiters are the rule then, and
    // each would spin 32 pauses, ~0.6 us, before a switch it has to make
    // anyway; with a core each, the look would only delay the round trip).
    if (i % 32 == 0 && (i > 0 || crowded) && peer_here()) {
      stacked = true;
      if (++stacked_looks < kStackedLooks) {
        yield_cpu();
        continue;
      }
      stacked_looks = 0;
      unstack();
    } else if (i % 512 == 511) {
      // Every ~500 pauses a yield regardless: the CPU a peer published may
      // be stale; a yield costs ~1 us when nobody else is runnable.
      yield_cpu();
      continue;
    }
    cpu_relax();
  }
  for (int i = yields; i > 0; --i) {
    if (ready()) return true;
    yield_cpu();
  }
  return ready();
}

template <typename Pred, typename PeerHere, typename Unstack>
bool spin_then_yield(Pred&& ready, int participants, PeerHere&& peer_here, Unstack&& unstack) {
  return spin_then_yield(ready, participants, peer_here, unstack, yield_budget(participants));
}

template <typename Pred, typename PeerHere>
bool spin_then_yield(Pred&& ready, int participants, PeerHere&& peer_here) {
  return spin_then_yield(ready, participants, peer_here, [] {});
}

template <typename Pred>
bool spin_then_yield(Pred&& ready, int participants) {
  return spin_then_yield(ready, participants, [] { return false; });
}

// spin_then_yield for waits of the control plane (a communicator's
// bring-up barriers), whose awaited ranks are mostly still being forked or
// set up, not runnable on this core: when the processes outnumber the cores
// a yield there only passes the core around the other waiters, so the
// waiter spins briefly and then sleeps. (8 chips on 2 vCPUs of a
// paravirtualized AMD EPYC VM: 31 yields that switched per chip and
// bring-up, a tenth of its CPU time.)
template <typename Pred>
bool spin_then_sleep_when_crowded(Pred&& ready, int participants) {
  return spin_then_yield(
      ready, participants, [] { return false; }, [] {}, participants > cores() ? 0 : yield_budget(participants));
}

}  // namespace chipmesh::futex

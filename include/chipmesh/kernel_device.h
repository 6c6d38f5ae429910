// Device-side helpers for kernel authors (C++, header-only so kernel
// libraries need not link anything). On sim every helper runs on the CPU of
// the chip process; windows and scratch are shared memory, flags are 32-bit
// futex words, so a waiting chip sleeps instead of stealing a core.
#pragma once

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>

#include "chipmesh/kernel.h"

namespace chipmesh::device {

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Records a failure message and returns `status` (for `return fail(...)`).
__attribute__((format(printf, 3, 4))) inline int fail(const chipmesh_kernel_args* args, int status,
                                                       const char* fmt, ...) {
  if (args && args->error) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(args->error, CHIPMESH_KERNEL_ERROR_SIZE, fmt, ap);
    va_end(ap);
  }
  return status;
}

// --- windows ---------------------------------------------------------------

// Address, in this process, of byte `offset` of rank r's window.
inline void* peer_window(const CommContext* ctx, int rank, uint64_t offset = 0) {
  return reinterpret_cast<void*>(ctx->windowsIn[rank] + offset);
}

// Offset of a local address inside this rank's window, or UINT64_MAX when
// [addr, addr + nbytes) is not inside it.
inline uint64_t window_offset(const CommContext* ctx, uint64_t addr, uint64_t nbytes) {
  uint64_t base = ctx->windowsIn[ctx->rankId];
  if (addr < base || nbytes > ctx->winSize || addr - base > ctx->winSize - nbytes) return UINT64_MAX;
  return addr - base;
}

// The same buffer on rank r: buffers are carved identically on every rank.
template <typename T>
inline T* peer_buffer(const CommContext* ctx, int rank, const T* local) {
  uint64_t off = reinterpret_cast<uint64_t>(local) - ctx->windowsIn[ctx->rankId];
  return reinterpret_cast<T*>(ctx->windowsIn[rank] + off);
}

// --- scratch ----------------------------------------------------------------
// Every rank's workSpace starts with a header the transport fills: where this
// process reaches each rank's workSpace (comm.h). Flags follow it.

inline const chipmesh_workspace_header* workspace_header(const CommContext* ctx) {
  return reinterpret_cast<const chipmesh_workspace_header*>(ctx->workSpace);
}

// Address, in this process, of byte `offset` of rank r's scratch (after the
// header).
inline void* peer_scratch(const CommContext* ctx, int rank, uint64_t offset = 0) {
  return reinterpret_cast<void*>(workspace_header(ctx)->peerWorkSpace[rank] + CHIPMESH_WORKSPACE_HEADER_BYTES + offset);
}

// --- flags ------------------------------------------------------------------
// A flag is a 32-bit value plus a sleeper count on its own cache line in a
// rank's scratch (workSpace, after the header). Values only grow (sequence
// numbers), so waits are "until >= v" and never need a reset.

struct Flag {
  std::atomic<uint32_t> value;
  std::atomic<uint32_t> sleepers;
};
static_assert(sizeof(Flag) <= CHIPMESH_FLAG_BYTES, "a flag fits its line");

// Flag `index` in rank r's scratch, as seen from this process (check
// flag_fits first).
inline Flag* flag(const CommContext* ctx, int rank, uint32_t index) {
  return static_cast<Flag*>(peer_scratch(ctx, rank, uint64_t{index} * CHIPMESH_FLAG_BYTES));
}

// Bytes of workSpace that flags 0..index need (header included).
inline uint64_t flag_bytes_needed(uint32_t index) {
  return CHIPMESH_WORKSPACE_HEADER_BYTES + (uint64_t{index} + 1) * CHIPMESH_FLAG_BYTES;
}

inline bool flag_fits(const CommContext* ctx, uint32_t index) {
  return ctx->workSpace != 0 && ctx->workSpaceSize >= flag_bytes_needed(index);
}

namespace detail {
inline void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns) {
  timespec ts{static_cast<time_t>(timeout_ns / 1000000000ull), static_cast<long>(timeout_ns % 1000000000ull)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}
inline void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
// The parent raises *abort from its own process; an atomic load, because a
// volatile read is not one (and ThreadSanitizer reports it as a race).
inline bool abort_raised(const chipmesh_kernel_args* args) {
  return __atomic_load_n(args->abort, __ATOMIC_ACQUIRE) != 0;
}
}  // namespace detail

// For long loops between waits: CHIPMESH_ERR_COMM (with the message) once
// the parent has aborted the task (another chip failed or died), else 0. One
// atomic load: call it every megabyte or so of bulk work, so that a dead
// peer stops a long reduce or copy promptly instead of at its end.
inline int check_abort(const chipmesh_kernel_args* args) {
  if (args->abort && detail::abort_raised(args)) return fail(args, CHIPMESH_ERR_COMM, "aborted: another chip failed");
  return 0;
}

// Publishes everything written before it (release), then wakes sleepers.
inline void flag_set(Flag* f, uint32_t v) {
  f->value.store(v, std::memory_order_seq_cst);
  if (f->sleepers.load(std::memory_order_seq_cst) != 0) detail::futex_wake(&f->value);
}

inline uint32_t flag_add(Flag* f, uint32_t d) {
  uint32_t v = f->value.fetch_add(d, std::memory_order_seq_cst) + d;
  if (f->sleepers.load(std::memory_order_seq_cst) != 0) detail::futex_wake(&f->value);
  return v;
}

// flag_set in two halves, for a rank that publishes and then waits for its
// peers anyway: flag_publish stores (release) without the store-load fence
// the wake-up check needs (which would wait for the line to come back from
// the peers polling it), and flag_wake_sleepers, called after the waits
// (and on every way out), fences and wakes the sleepers. A peer that went
// to sleep on the flag in between is woken that much later, never lost.
// (Under ThreadSanitizer, which does not model fences, flag_publish is
// flag_set.)
inline void flag_publish(Flag* f, uint32_t v) {
#if defined(__SANITIZE_THREAD__)
  flag_set(f, v);
#else
  f->value.store(v, std::memory_order_release);
#endif
}

inline void flag_wake_sleepers(Flag* f) {
#if !defined(__SANITIZE_THREAD__)
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (f->sleepers.load(std::memory_order_relaxed) != 0) detail::futex_wake(&f->value);
#else
  (void)f;
#endif
}

// How long a wait keeps yielding the core before it sleeps on the futex
// (the deadline and the abort flag are checked after it).
inline constexpr uint64_t kYieldBudgetNs = 1000000;  // 1 ms

// Waits until the flag is >= v (wrap-aware), with acquire ordering. Returns 0,
// CHIPMESH_ERR_TIMEOUT at args->deadline_ns, or CHIPMESH_ERR_COMM when the
// parent aborted the task. Three phases: spin a couple of microseconds; then
// yield the core for up to kYieldBudgetNs (with more chip processes than
// cores, the rank this one waits for may be runnable on this very core and
// runs at once; with a core each, sched_yield returns at once and this is a
// spin); then sleep on the futex, in 50 ms slices when there is an abort flag
// to watch (otherwise until the deadline). Sleeping early is costly: a futex wake-up takes
// tens of microseconds, and on 2 cores a 4-rank barrier ran >10x slower with
// a 36 us spin before sleeping than with the yield phase.
//
// `peer_cpu`, when given, is where the rank that sets the flag publishes the
// CPU it runs on, plus one (0: unknown): when that is this waiter's own CPU
// the spin is skipped, since spinning then only delays the very process
// waited for (with more ranks than cores, 128 pauses are ~2.5 us on an AMD
// EPYC, per wait).
inline int flag_wait_ge(const chipmesh_kernel_args* args, Flag* f, uint32_t v,
                        const std::atomic<int32_t>* peer_cpu = nullptr) {
  auto reached = [&] { return static_cast<int32_t>(f->value.load(std::memory_order_acquire) - v) >= 0; };
  const bool peer_here = peer_cpu && peer_cpu->load(std::memory_order_relaxed) == sched_getcpu() + 1;
  for (int i = peer_here ? 128 : 0; i < 128; ++i) {
    if (reached()) return 0;
    detail::cpu_relax();
  }
  for (uint64_t until = now_ns() + kYieldBudgetNs;;) {
    if (reached()) return 0;
    sched_yield();
    if (now_ns() >= until) break;
  }
  for (;;) {
    if (reached()) return 0;
    if (int rc = check_abort(args)) return rc;
    uint64_t now = now_ns();
    if (args->deadline_ns && now >= args->deadline_ns)
      return fail(args, CHIPMESH_ERR_TIMEOUT, "timed out waiting for a flag to reach %u (it is %u)", v,
                  f->value.load());
    // 50 ms: abort latency bound. Without an abort flag only a flag_set or
    // flag_add (or the deadline) ends the sleep.
    uint64_t slice = args->abort ? 50000000ull : 3600000000000ull;
    if (args->deadline_ns && args->deadline_ns - now < slice) slice = args->deadline_ns - now;
    uint32_t seen = f->value.load(std::memory_order_acquire);
    if (static_cast<int32_t>(seen - v) >= 0) return 0;
    f->sleepers.fetch_add(1, std::memory_order_seq_cst);
    detail::futex_wait(&f->value, seen, slice);
    f->sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
}

// --- barrier ----------------------------------------------------------------
// Reserved flags: kBarrierFlag is each rank's arrival count (peers read it);
// kBarrierLocal is this rank's own counter of barriers passed.
inline constexpr uint32_t kBarrierFlag = 0;
inline constexpr uint32_t kBarrierLocal = 1;

// The line of kBarrierFlag: the arrival count, then the CPU its rank ran on
// when it last arrived, plus one (for flag_wait_ge's peer_cpu; peers read
// this line anyway).
struct BarrierLine {
  Flag arrivals;
  std::atomic<int32_t> cpu;
};
static_assert(sizeof(BarrierLine) <= CHIPMESH_FLAG_BYTES, "the barrier line fits its line");

inline BarrierLine* barrier_line(const CommContext* ctx, int rank) {
  return static_cast<BarrierLine*>(peer_scratch(ctx, rank, uint64_t{kBarrierFlag} * CHIPMESH_FLAG_BYTES));
}

// Barriers in a row that found a lower rank last seen on this CPU before
// this rank moves itself off it (see barrier()).
inline constexpr int kStackedBarriers = 64;

namespace detail {
// The CPUs online (read once).
inline int online_cpus() {
  static const int n = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  return n;
}

// Migrates the calling thread onto a CPU of `to` (a part of its affinity
// mask `allowed`), then gives it the whole mask back, which does not move
// it. False when it did not move.
inline bool hop(const cpu_set_t& to, const cpu_set_t& allowed) {
  if (sched_setaffinity(0, sizeof to, &to) != 0) return false;
  sched_setaffinity(0, sizeof allowed, &allowed);
  return true;
}

// Moves the calling thread to another CPU of its affinity mask when the
// mask holds at least `ranks` CPUs (and 2): sched_setaffinity without the
// current CPU (which migrates it), then the whole mask back (which does
// not). False when it did not move. (The runtime's futex::move_off_this_cpu
// is this one.)
inline bool move_off_this_cpu(uint32_t ranks) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return false;
  const int cpu = sched_getcpu();
  const auto count = static_cast<uint32_t>(CPU_COUNT(&allowed));
  if (cpu < 0 || count < 2 || count < ranks || !CPU_ISSET(cpu, &allowed)) return false;
  cpu_set_t others = allowed;
  CPU_CLR(cpu, &others);
  return hop(others, allowed);
}
}  // namespace detail

namespace detail {
// Counts waits in a row of a rank among `ranks` that found a lower rank
// last seen on its CPU (`stacked`), and moves the rank off that CPU after
// `in_a_row` of them. One count per thread whatever the wait (wait_for_peers
// here, the sim communicator's barrier), not a static of a template, which
// would be one per caller.
inline void note_stacked(uint32_t ranks, bool stacked, int in_a_row) {
  static thread_local int stacked_waits = 0;
  if (static_cast<int>(ranks) > online_cpus()) {
    // more ranks than CPUs: sharing cores is no accident
  } else if (!stacked) {
    stacked_waits = 0;
  } else if (++stacked_waits >= in_a_row) {
    stacked_waits = 0;
    move_off_this_cpu(ranks);
  }
}
inline void note_stacked(const CommContext* ctx, bool stacked) { note_stacked(ctx->rankNum, stacked, kStackedBarriers); }
}  // namespace detail

// Waits in a row that found this rank past its CPU's share of the ranks
// before it moves (see note_crowded()).
inline constexpr int kCrowdedWaits = 8;

// The ranks among the first `ranks` whose published CPU (cpu_of(r), a
// `const std::atomic<int32_t>*` holding the CPU plus one) is `here`, one bit
// each; none when `here` is 0 (unknown).
template <typename CpuOf>
inline uint64_t ranks_on_cpu(uint32_t ranks, int32_t here, CpuOf&& cpu_of) {
  uint64_t on = 0;
  for (uint32_t r = 0; r < ranks && here > 0; ++r)
    if (cpu_of(r)->load(std::memory_order_relaxed) == here) on |= uint64_t{1} << r;
  return on;
}

namespace detail {

// With more ranks than CPUs the ranks share the cores by design, but a
// collective runs at the pace of its most crowded core, and the scheduler
// does not even them out: a rank that waits by yielding is always runnable
// and has always just run (cache-hot), so its balancer leaves it where it
// is (8 ranks on 2 vCPUs of the AMD EPYC VM: 6 on one, 2 beside the parent
// on the other, for a whole run of broadcasts, 1.3-1.7x slower than 4 and
// 4). So when this rank's CPU held more than its share, ceil(ranks / CPUs),
// over kCrowdedWaits waits in a row and this rank is past the share there
// (the lowest ranks stay), it moves to the least crowded CPU of its mask
// that is under its share. `here`: this rank's CPU plus one; cpu_of(r):
// where rank r published its CPU, plus one (0: unknown).
template <typename CpuOf>
inline void note_crowded(const CommContext* ctx, int32_t here, CpuOf&& cpu_of) {
  constexpr int kCpus = 256;  // CPUs past this one are not judged
  static thread_local int crowded_waits = 0;
  const uint32_t n = ctx->rankNum;
  const int cpus = online_cpus();
  if (cpus < 2 || static_cast<int>(n) <= cpus || here <= 0 || here > kCpus) return;
  const uint32_t share = (n + static_cast<uint32_t>(cpus) - 1) / static_cast<uint32_t>(cpus);
  const uint64_t on = ranks_on_cpu(n, here, cpu_of);
  const auto on_here = static_cast<uint32_t>(__builtin_popcountll(on));
  const auto lower_here = static_cast<uint32_t>(__builtin_popcountll(on & ((uint64_t{1} << ctx->rankId) - 1)));
  if (on_here <= share || lower_here < share) {
    crowded_waits = 0;
    return;
  }
  if (++crowded_waits < kCrowdedWaits) return;
  crowded_waits = 0;
  uint8_t count[kCpus] = {};  // ranks per CPU (at most 64)
  for (uint32_t r = 0; r < n; ++r) {
    const int32_t c = cpu_of(r)->load(std::memory_order_relaxed);
    if (c > 0 && c <= kCpus) ++count[c - 1];
  }
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  int target = -1;
  for (int c = 0; c < kCpus; ++c)
    if (CPU_ISSET(c, &allowed) && count[c] < share && (target < 0 || count[c] < count[target])) target = c;
  if (target < 0) return;
  cpu_set_t only;
  CPU_ZERO(&only);
  CPU_SET(target, &only);
  hop(only, allowed);
}
}  // namespace detail

// Waits until every other rank r's flag_of(r) (a Flag*) is >= v, calling
// on_reached(r) after each (a nonzero result ends the wait with it); 0, or
// the status of the failed wait. cpu_of(r) is where rank r publishes its
// CPU, plus one (flag_wait_ge's peer_cpu); `here` is this rank's.
//
// Ranks last seen on this CPU first: waiting on them yields the core to
// them at once, while a spin on a rank elsewhere would keep them off it.
// The first pass records whom it waited for (a peer's CPU may change
// between the passes); the second waits for everyone else.
//
// Ranks that take turns on one core keep doing so while another core idles:
// the scheduler balances queues, not turn-taking (2 ranks stayed stacked for
// 20000 allreduces, 2.4 us each against 0.4 us apart, on the AMD EPYC VM).
// After kStackedBarriers waits in a row that found a lower rank on this CPU
// the rank moves. Only the higher rank of a pair moves, or the two would
// chase each other; and only when every rank can have a CPU.
template <typename FlagOf, typename CpuOf, typename OnReached>
inline int wait_for_peers(const chipmesh_kernel_args* args, uint32_t v, int32_t here, FlagOf&& flag_of,
                          CpuOf&& cpu_of, OnReached&& on_reached) {
  const CommContext* ctx = args->comm;
  static_assert(CHIPMESH_MAX_RANKS <= 64, "one bit per rank");
  uint64_t waited = uint64_t{1} << ctx->rankId;
  bool stacked = false;  // a lower rank was last seen on this CPU
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t r = 0; r < ctx->rankNum; ++r) {
      const std::atomic<int32_t>* cpu = cpu_of(r);
      if ((waited >> r & 1) || (pass == 0 && cpu->load(std::memory_order_relaxed) != here)) continue;
      if (pass == 0 && r < ctx->rankId) stacked = true;
      if (int rc = flag_wait_ge(args, flag_of(r), v, cpu)) return rc;
      if (int rc = on_reached(r)) return rc;
      waited |= uint64_t{1} << r;
    }
  }
  detail::note_stacked(ctx, stacked);
  detail::note_crowded(ctx, here, cpu_of);
  return 0;
}

// All ranks of the communicator; every rank must call it the same number of
// times. Returns 0 or the status of the failed wait.
inline int barrier(const chipmesh_kernel_args* args) {
  const CommContext* ctx = args->comm;
  if (!ctx) return fail(args, CHIPMESH_ERR_CONFIG, "barrier: this chip has no communicator");
  if (!flag_fits(ctx, kBarrierLocal)) return fail(args, CHIPMESH_ERR_CONFIG, "barrier: workSpace too small");
  Flag* local = flag(ctx, static_cast<int>(ctx->rankId), kBarrierLocal);
  uint32_t seq = local->value.load(std::memory_order_relaxed) + 1;
  local->value.store(seq, std::memory_order_relaxed);
  BarrierLine* mine = barrier_line(ctx, static_cast<int>(ctx->rankId));
  const int32_t here = sched_getcpu() + 1;
  mine->cpu.store(here, std::memory_order_relaxed);
  flag_set(&mine->arrivals, seq);
  return wait_for_peers(
      args, seq, here, [&](uint32_t r) { return &barrier_line(ctx, static_cast<int>(r))->arrivals; },
      [&](uint32_t r) { return &barrier_line(ctx, static_cast<int>(r))->cpu; }, [](uint32_t) { return 0; });
}

// Element count of a tensor (product of its shape; 1 for a scalar tensor).
inline uint64_t element_count(const chipmesh_tensor& t) {
  uint64_t n = 1;
  for (uint32_t i = 0; i < t.ndim && i < CHIPMESH_KERNEL_MAX_DIMS; ++i) n *= t.shape[i];
  return n;
}

}  // namespace chipmesh::device

// Worker's private state and the parent side of the request ring.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chipmesh/bootstrap_channel.h"
#include "chipmesh/platform_abi.h"
#include "chipmesh/worker.h"
#include "common/deadline.h"
#include "cluster/cluster.h"
#include "common/futex.h"
#include "common/process.h"
#include "request_ring/chip_shared.h"
#include "worker/child_watcher.h"
#include "worker/chip_parent_thread.h"
#include "worker/fork_exclusions.h"
#include "worker/host_arenas.h"
#include "worker/window_files.h"
#include "worker/window_views.h"

namespace chipmesh {

// The window offsets of a domain's buffers (domains.cpp); ConfigError naming
// the buffer for anything allocate_domain refuses.
std::vector<uint64_t> carve_domain_offsets(const std::string& what, const std::vector<ChipBufferSpec>& buffers,
                                           size_t window_size);

namespace worker {
// What a typed collective's checks and tasks depend on besides its
// addresses and the allocations.
struct CollectiveKey {
  const char* call = nullptr;    // the collective's name (a literal)
  const void* domain = nullptr;  // CommDomain::State
  uint64_t allocation_id = 0;
  uint64_t count = 0;
  DataType dtype{};
  uint32_t op = 0, algo = 0;
  int root = 0;
  bool operator==(const CollectiveKey&) const = default;
};
}  // namespace worker

struct Worker::Impl {
  WorkerConfig cfg;
  std::deque<SharedMemory> staging;  // stage_input / stage_output (stable addresses)
  // Inputs staged straight into the chips' windows (window_files.h).
  worker::WindowFiles window_files{cfg.device_ids.size()};
  // The parent's memory left out of the chips' forks (exclude_from_chips).
  worker::ForkExclusions fork_exclusions;
  // Whether the platform's transport can adopt a window file: 1 yes, 0 no,
  // -1 not asked yet.
  int adopts_windows = -1;
  // stage_input's placement in the chip's window file, when it can go there.
  std::optional<SharedMemory> stage_in_window(size_t chip, const std::string& buffer, size_t bytes,
                                              const std::string& label, uint64_t* offset);
  // One window file for every chip, when the transport and the configs allow.
  void plan_one_window_file(const chipmesh_transport_v1_t& t);
  enum class State { Created, Running, Closed } state = State::Created;
  const chipmesh_platform* platform = nullptr;

  void* region = nullptr;
  size_t region_bytes = 0;
  worker::SharedHeader* header = nullptr;
  // The chips given work in this run() (header->run_chips): run_gen of the
  // run that last gave each work; and the list of them (with any chip that
  // had work in flight when the run began), which is all that the run's
  // waits look at: with 64 chips and work on one, each poll of a wait read
  // every chip's completion and CPU.
  uint32_t run_gen = 0;
  // Inside run()'s orchestration function: a run() or close() from there
  // would pull the run's state (its domains, the shared region) from under
  // it, so both refuse.
  bool in_run = false;
  std::vector<uint32_t> worked_in_run;
  std::vector<int> run_members;
  std::vector<int> all_chips;  // 0 .. n()-1: what a wait watches when not told

  std::vector<worker::ChipShared*> chips;
  std::vector<pid_t> pids;
  // The chips' pids for interrupt(), which may run on another thread while
  // fork_chips() grows `pids`: one slot per chip, 0 until forked and again
  // once terminate_all() starts.
  std::unique_ptr<std::atomic<pid_t>[]> live_pids;
  std::atomic<bool> interrupted{false};
  std::unique_ptr<worker::ChildWatcher> watcher;
  // The chips' parent thread; ended once they are reaped (terminate_all).
  std::unique_ptr<worker::ChipParentThread> chip_parent;
  // The chips' host arenas (none when the platform takes none); made with
  // the region, before the forks.
  std::unique_ptr<worker::HostArenas> arenas;
  // The chips' lent windows (bring-up and domains), mapped here on first
  // use (window_views.h).
  worker::WindowViews windows;
  // What Worker::malloc returned and free has not taken back, per chip
  // (device address -> bytes): the collectives check addresses outside the
  // windows against it before anything is dispatched.
  std::vector<std::map<uint64_t, size_t>> allocations;
  // Whether [addr, addr + bytes) of `chip` lies inside one such allocation.
  bool allocated(size_t chip, uint64_t addr, uint64_t bytes) const;

  // The job across hosts (cluster_world.cpp): resolved at construction,
  // joined by init(); null on one host.
  std::string cluster_kind;
  std::shared_ptr<cluster::Cluster> cluster;
  void join_cluster();
  // *this; ConfigError naming `what` when in a cluster not joined yet.
  const Impl& joined(const char* what) const;
  // Collective over the hosts: settles a step of init() or a collective
  // (`error` empty: it succeeded here); throws when another host failed.
  bool settle(const char* step, const std::string& error);

  std::vector<ChipContext> contexts;
  // world(): built by init() from the contexts; `world_error` says why
  // there is none.
  std::optional<CommDomain> world;
  std::string world_error;
  void build_world();
  std::map<std::string, double> phases;

  // Live communication domains by name (domains.cpp): the shared state the
  // handles see, the members' communicator handles (by domain rank) and
  // the private directory of the rootinfo (empty once every member joined:
  // it is removed then).
  struct LiveDomain {
    std::shared_ptr<CommDomain::State> state;
    std::vector<uint64_t> handles;
    uint32_t control = rendezvous::MemoryTable::kNoControl;  // the control area it holds
  };
  std::map<std::string, LiveDomain> domains;
  uint64_t next_allocation_id = 1;  // 0 is world()
  // Of the rendezvous slots (SharedHeader::rendezvous): one generation per
  // rendezvous (the bring-up's, every allocate_domain call, failed ones
  // included), so no value is ever reused.
  uint64_t rendezvous_generation = 1;
  // The address of a fresh rendezvous in the table (the next generation,
  // in slot generation % kSlots), lending `control` unless kNoControl;
  // its generation in *generation when given.
  std::string fresh_rendezvous(uint32_t control, uint64_t* generation = nullptr);
  // Abandons that rendezvous (MemoryTable::abandon): its waiters fail now.
  void abandon_rendezvous(uint64_t generation);
  // The table's control areas lent to live communicators (bit i: area i),
  // each for the communicator's whole life: the bring-up's until close(),
  // a domain's until every member has destroyed it (or died).
  uint32_t lent_controls = 0;
  uint32_t lend_control();  // kNoControl when all are lent: the platform then makes its own
  void take_back_control(uint32_t control);
  // Destroys the domain's communicator on its live members (`handles[r]`
  // of chips[r], 0 = nothing to destroy) and waits; returns the first
  // failure (a death first). *settled: every member with a handle has
  // completed its destroy or is dead (nothing of it is in use any more).
  std::optional<ChipError> destroy_domain(const std::string& name, const std::vector<int>& chips,
                                          const std::vector<uint64_t>& handles, bool* settled = nullptr);
  // Orchestrator::allocate_domain on one host (domains.cpp: `members` are
  // chip indices) and in a cluster (cluster_domains.cpp: global chips).
  CommDomain allocate_local_domain(const std::string& name, const std::vector<int>& members, size_t window_size,
                                   const std::vector<ChipBufferSpec>& buffers);
  CommDomain allocate_cluster_domain(const std::string& name, const std::vector<int>& members, size_t window_size,
                                     const std::vector<ChipBufferSpec>& buffers);
  void release_domain(const std::string& name);  // throws the first failure; the domain is gone regardless
  // Releases every live domain in allocation order; throws the first failure
  // if `throwing`, else swallows them.
  void release_all_domains(bool throwing);

  // Parent-side ring cursors per chip: requests written, completions inspected.
  std::vector<uint32_t> next_req;
  std::vector<uint32_t> inspected;
  std::optional<ChipError> pending_error;  // first failure not yet thrown
  // Reused by every submission (orchestrator.cpp, collectives.cpp), so that
  // a stream of small tasks allocates nothing: the entries of a group, the
  // marks that find a chip listed twice (== submit_gen; one per chip), the
  // typed collectives' tasks (barriers apart) and the addresses of their
  // buffers by name.
  std::vector<worker::Entry*> submit_entries;
  std::vector<uint32_t> submit_marks;
  uint32_t submit_gen = 0;
  // The kernel of the last task queued on each chip (empty: none yet): a
  // task of the same kernel says so (TaskDesc::same_kernel) instead of
  // rewriting the names.
  struct QueuedKernel {
    std::string library, kernel;
  };
  std::vector<QueuedKernel> queued_kernel;
  std::vector<Task> collective_tasks, barrier_tasks;
  // The addresses of one buffer name on every member of a domain, as last
  // resolved (a domain's buffers never move while it is allocated).
  struct NamedBuffer {
    const void* domain = nullptr;  // CommDomain::State
    uint64_t allocation_id = 0;
    std::string name;
    std::vector<uint64_t> ptrs;
    std::vector<uint64_t> bytes;  // each one's nbytes, by domain rank
    uint64_t min_bytes = UINT64_MAX;
  };
  NamedBuffer named_in, named_out;
  // A collective by buffer name, between its lookup and its address
  // overload's checks, which check these counts against named_in / named_out
  // first (collectives.cpp): across hosts they must fail inside the settled
  // step, or the other hosts would wait for this one.
  struct NamedUse {
    bool pending = false;
    uint64_t in_count = 0, in_blocks = 1, out_count = 0, out_blocks = 1;
    bool in_root_only = false, out_root_only = false;
    DataType dtype{};
    int root = 0;
    std::string error;  // across hosts: the lookup's ConfigError, thrown there
  };
  NamedUse named_use;
  // The last typed collective submitted on this host's chips, whose checked
  // and filled tasks collective_tasks still holds: the same call again (a
  // stream: a training step's allreduce in a loop) is submitted from them,
  // without checking the addresses and filling the tasks again (collectives.cpp).
  // Cleared whenever collective_tasks is refilled and by Worker::free (an
  // address the checks accepted may lie in the memory freed).
  struct LastCollective {
    bool valid = false;
    worker::CollectiveKey key;
    std::vector<uint64_t> in, out;
    std::vector<uint32_t> seqs;  // each member's latest entry of the call (repeat_group)
  } last_collective;
  // repeat_group's scratch: the members (their ranks, their chips) that get an entry.
  std::vector<size_t> repeat_refused;
  std::vector<int> repeat_refused_chips;
  // Since when each chip has been seen stopped (SIGSTOP) while busy; and
  // when the next look at /proc is due (waits look at most every 250 ms).
  std::vector<std::optional<std::chrono::steady_clock::time_point>> stopped_since;
  std::chrono::steady_clock::time_point next_stop_check{};

  // The process that created the Worker: its chips are that process's
  // children, and a fork of it (a user's os.fork(), a child that exits
  // through its destructors) must neither use nor close them.
  const pid_t owner_pid = process::this_pid();
  bool in_forked_copy() const { return process::this_pid() != owner_pid; }
  // ConfigError naming both processes, in a fork of the owner.
  void require_owner(const char* what) const;

  explicit Impl(WorkerConfig c)
      : cfg(std::move(c)),
        live_pids(new std::atomic<pid_t>[cfg.device_ids.size()]),
        windows(cfg.device_ids.size()),
        allocations(cfg.device_ids.size()),
        submit_marks(cfg.device_ids.size(), 0),
        queued_kernel(cfg.device_ids.size()) {
    for (size_t i = 0; i < n(); ++i) live_pids[i].store(0);
  }
  // ChipError "interrupted" when interrupt() was called.
  void check_interrupted(const char* what) const;
  // At the start of a run (after run_gen moved): run_members holds the
  // chips with requests not yet inspected (normally none), header->run_chips
  // their count.
  void begin_run_members();
  size_t n() const { return cfg.device_ids.size(); }

  // --- the job's directories (job_dirs.cpp) ---
  // Lists `path` in the shared header for the chips to rmdir should this
  // process die (false: too long, or no free slot); disown_dir unlists it.
  bool own_dir(const std::string& path) noexcept;
  void disown_dir(const std::string& path) noexcept;
  // A communicator config with an empty rootinfo_path meets in a slot of
  // the shared header's rendezvous table (needs the header), or, when
  // CHIPMESH_RENDEZVOUS_DIR is set, in a private directory there
  // (`job_dir`), removed by remove_job_dir() once the rendezvous is over.
  std::string job_dir;
  void place_bringup_rendezvous();
  void remove_job_dir() noexcept;

  // --- lifecycle (worker.cpp) ---
  void map_region(uint64_t arena_bytes);
  void fork_chips();
  void wait_for_bringup(std::chrono::steady_clock::time_point start);
  // The error of a bring-up past bootstrap_timeout: the least advanced chip
  // that has not published, its step, and where the others were.
  ChipError bringup_timeout(const std::vector<ChipBootstrapChannel>& channels) const;
  void build_contexts();
  void lend_bringup_windows();
  // SIGTERM every live chip, give them `grace` to exit, SIGKILL the rest,
  // wait until all are reaped, unmap everything.
  void terminate_all(std::chrono::milliseconds grace) noexcept;
  // Before the watcher exists (a fork or pidfd failed): SIGKILL and waitpid
  // every chip forked so far.
  void reap_forked_without_watcher() noexcept;

  // --- requests (worker_link.cpp) ---
  // The error for a failure of `chip`, with its one WARN breadcrumb (INFO
  // when the chip already logged it: a failed request of its ring).
  ChipError chip_error(size_t chip, const std::string& cause, bool chip_logged = false) const;
  // The one "not initialized / closed" check: ConfigError naming the call
  // ("Worker::<what>: the worker is not initialized (call init() first)").
  void require_running(const char* what) const;
  // Throws when the worker is not running or `chip` is out of range / dead.
  void require_usable(int chip, const char* what) const;
  // Waits (spin, then futex on header->events) until done() or the deadline;
  // returns done()'s last value.
  // `arm`, called before each sleep, sets the chips' wake_parent_at to the
  // completions that may make done() true; by default any completion.
  // `busy`: the chips that may have work (the ones whose CPU the wait looks
  // at); null: every chip. The spin budget still counts every chip: an idle
  // chip spins and yields a while before it sleeps (counting only `busy`
  // put p99 of a one-chip round trip among 64 chips at 300 us).
  template <typename Pred>
  bool wait_until(Pred&& done, const Deadline* deadline);
  // How long a wait polls a chip busy on another core before it sleeps
  // (and wait_long yields, with no busy chip beside the parent).
  static constexpr std::chrono::microseconds kBusyPoll{500};
  // `spin`: false sleeps at once (see wait_long).
  template <typename Pred, typename Arm>
  bool wait_until(Pred&& done, const Deadline* deadline, Arm&& arm, const std::vector<int>* busy = nullptr,
                  bool spin = true);
  // wait_until for an operation that keeps the chips busy for a long time
  // (a domain's communicator and windows: hundreds of us of system calls).
  // Where the chips and the parent outnumber the cores, the parent sleeps
  // while a chip last seen on its own CPU is busy (its spins and yields
  // would only take turns with it: bench domains, 2 chips on 2 vCPUs,
  // allocate 0.19-0.34 -> 0.17-0.19 ms), and only such a chip's completion
  // wakes it: a wake-up from another CPU costs an interrupt to a vCPU, 20-30
  // us on the reference KVM guest, while the chip beside the parent idles;
  // one from the same CPU, a context switch (2 chips: 60-68 -> 44-50 us per
  // allocate + release). With no busy chip beside it, the parent yields in
  // turns for up to kBusyPoll: the others run on cores of their own.
  template <typename Pred>
  bool wait_long(Pred&& done) {
    if (static_cast<int>(n()) + 1 <= futex::cores()) return wait_until(std::forward<Pred>(done), nullptr);
    const auto poll_until = std::chrono::steady_clock::now() + kBusyPoll;
    for (;;) {
      if (done()) return true;
      if (!busy_chip_on_this_cpu(all_chips)) {
        // Not for long: a member that never comes holds the wait until the
        // platform's timeout (seconds); then any completion wakes it.
        if (std::chrono::steady_clock::now() >= poll_until)
          return wait_until(std::forward<Pred>(done), nullptr, [this] { wake_on_any_completion(); }, nullptr, false);
        futex::yield_cpu();
        continue;
      }
      // Until one of the chips armed (the busy ones here) completes; none
      // armed ends the wait at once.
      bool armed = false;
      wait_until(
          [&] {
            if (done()) return true;
            if (!armed) return false;
            for (size_t c : armed_chips)
              if (!idle(c)) return false;
            return true;
          },
          nullptr,
          [&] {
            wake_on_chips_here();
            armed = true;
          },
          nullptr, false);
    }
  }
  // Whether a chip of `watched` with work was last seen on the parent's CPU
  // (publishes the parent's CPU on the way).
  bool busy_chip_on_this_cpu(const std::vector<int>& watched);
  // Whether `chip` has work and was last seen on `cpu`.
  bool busy_on(size_t chip, int cpu) const {
    return chips[chip]->cpu.load(std::memory_order_relaxed) == cpu && !idle(chip);
  }
  // Arms only the busy chips last seen on the parent's CPU (wake_on for
  // several) and lists them in armed_chips.
  void wake_on_chips_here();
  std::vector<size_t> armed_chips;
  void wake_on_any_completion();
  // Arms only `chip`, at completion `at`: every other chip's wake_parent_at
  // is put past its last request, so that a stream on another chip does not
  // wake a parent that waits for this one at each completion (failures and
  // deaths still wake it).
  void wake_on(size_t chip, uint32_t at);
  // A free ring entry of `chip` (inspecting completions on the way); with
  // `chunk`, one whose chunk (chunks[seq % kChunkSlots]) is free too.
  worker::Entry& acquire_entry(size_t chip, bool chunk = false);
  // The extra part (EntryExtra) of the entry acquire_entry(chip) gave.
  worker::EntryExtra& acquired_extra(size_t chip) { return chips[chip]->extra(next_req[chip]); }
  uint32_t commit(size_t chip);  // publishes the acquired entry (wakes the chip); returns its seq
  // commit() for the entries acquired on `count` chips, with one fence.
  void commit_group(const int* members, size_t count);
  // submit_group(members, tasks) (one task per member) in entries marked
  // kTaskRepeatable (chip_shared.h): what repeat_group may run again.
  void submit_repeatable(const std::vector<int>& members, const std::vector<Task>& tasks);
  // The group `tasks` (one per member, on distinct chips: a domain's) once
  // more, after they passed submit_group's checks: only whether each chip
  // is usable is checked again. Members whose latest entry is still the
  // group's (`seqs`: each member's, kept up to date here) and not finished
  // run it again (grant_repeat, chip_shared.h); the others get an entry
  // (repeatable).
  // (orchestrator.cpp; the repeated-call record uses it.)
  void repeat_group(const std::vector<int>& members, const std::vector<Task>& tasks, std::vector<uint32_t>& seqs);
  // Each member's latest entry, into `seqs`.
  void record_latest(const std::vector<int>& members, std::vector<uint32_t>& seqs) const;
  // The store half of commit(): bumps req_seq with `order`; returns the seq.
  uint32_t publish(size_t chip, std::memory_order order = std::memory_order_seq_cst);
  // Waits for completion of `seq` (or the chip's death); inspects.
  void wait_done(size_t chip, uint32_t seq);
  void wait_idle(size_t chip);
  // Where [ptr, ptr + nbytes) of `chip` lies in this process when it is
  // inside one allocation in the chip's host arena or inside one of its lent
  // windows (pages had for `writing` or for reading: window_views.h), once
  // the chip has completed every request queued before (null: take the
  // ring). Throws when the chip is dead.
  unsigned char* arena_range(size_t chip, uint64_t ptr, size_t nbytes, bool writing);
  // Records the first failure among newly completed entries of `chip` and
  // the chip's death; sets the abort flags on the first one. Returns true
  // when every request written to `chip` has been inspected (or the chip is
  // dead): judge "settled" by this, never by a second read of done_seq,
  // which may move between the two reads and hide a failure.
  bool inspect(size_t chip);
  // inspect() of every chip of the run: the first failure or death anywhere
  // aborts the kernels still running, which may wait on that chip, also
  // while a wait is for other entries (a domain's CommCreate or CommDestroy
  // queued behind such a kernel). True when all are settled.
  bool inspect_run_members();
  void throw_pending();
  // The error text a chip wrote for its failed request `seq`.
  std::string error_text(size_t chip, uint32_t seq) const;
  // What request `seq` of `chip` (queued, not done: the one a chip that
  // died was in) asked for: " while running kernel 'k'", " during a copy
  // to the chip", ...; for a chip that died of it.
  std::string request_in_flight(size_t chip, uint32_t seq) const;
  void abort_running_kernels();
  // A busy chip stopped by a signal for CHIPMESH_STOPPED_CHIP_TIMEOUT_S
  // becomes the pending error and is killed, so that no wait on it is
  // endless (its peers' kernels are aborted). Called from the slow path of
  // every wait.
  void check_stopped_chips();
  // After chips died by a signal: remove the platform's names they owned
  // (worker/janitor.h).
  void sweep_leftovers() noexcept;
  bool idle(size_t chip) const;
};

template <typename Pred>
bool Worker::Impl::wait_until(Pred&& done, const Deadline* deadline) {
  return wait_until(std::forward<Pred>(done), deadline, [this] { wake_on_any_completion(); });
}

template <typename Pred, typename Arm>
bool Worker::Impl::wait_until(Pred&& done, const Deadline* deadline, Arm&& arm, const std::vector<int>* busy,
                              bool spin) {
  // A chip busy on the parent's own CPU gets it at once (futex.h).
  const std::vector<int>& watched = busy ? *busy : all_chips;
  auto busy_chip_here = [&] { return busy_chip_on_this_cpu(watched); };
  if (spin && futex::spin_then_yield(done, static_cast<int>(n()) + 1, busy_chip_here)) return true;
  // With a core each, a chip busy on another CPU is running: poll it a
  // while longer rather than sleep, whose wake-up from that CPU takes 20-30
  // us on the reference KVM guest (an interrupt to a halted vCPU). Yields
  // between looks: nobody else waits for this core.
  if (spin && static_cast<int>(n()) + 1 <= futex::cores()) {
    auto busy_elsewhere = [&] {
      const int me = futex::current_cpu();
      for (int c : watched) {
        const auto chip = static_cast<size_t>(c);
        if (!idle(chip) && chips[chip]->cpu.load(std::memory_order_relaxed) != me) return true;
      }
      return false;
    };
    const auto until = std::chrono::steady_clock::now() + kBusyPoll;
    while (busy_elsewhere() && std::chrono::steady_clock::now() < until && !(deadline && deadline->expired())) {
      if (done()) return true;
      futex::yield_cpu();
    }
  }
  for (;;) {
    const uint32_t seen = header->events.load(std::memory_order_acquire);
    if (done()) return true;
    if (deadline && deadline->expired()) return false;
    // Dekker pairing with notify_parent(): either it sees parent_sleeping
    // (and what arm() set) and bumps `events`, or done() sees what it
    // published (a chip bumps `events` only to wake a sleeping parent).
    arm();
    header->parent_sleeping.store(1, std::memory_order_seq_cst);
#if !defined(__SANITIZE_THREAD__)
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    if (!done() && header->events.load(std::memory_order_seq_cst) == seen)
      futex::wait(&header->events, seen,
                  deadline ? deadline->next_slice(std::chrono::seconds(1)) : std::chrono::nanoseconds(std::chrono::seconds(1)));
    header->parent_sleeping.store(0, std::memory_order_relaxed);
    check_stopped_chips();
  }
}

}  // namespace chipmesh

// Worker lifecycle: fork the chips, wait for their bootstrap mailboxes, build
// the ChipContexts; on any failure, or at close(), take every chip down and
// leave nothing behind.
#include "chipmesh/worker.h"

#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>

#include "chipmesh/bootstrap_channel.h"
#include "chipmesh/chip_worker.h"
#include "kernel_loader/kernel_library.h"
#include "plugin_loader/platform_loader.h"
#include "worker/fork_locks.h"
#include "worker/janitor.h"
#include "chip/chip_process.h"
#include "config/comm_groups.h"
#include "knobs/knobs.h"
#include "logging/log.h"
#include "worker/worker_impl.h"

namespace chipmesh {

using Clock = std::chrono::steady_clock;
using worker::ChipShared;

namespace {

// The header, rounded up to the chips' blocks' alignment (its rendezvous
// table's control areas are touched only when lent).
constexpr size_t kHeaderBytes = (sizeof(worker::SharedHeader) + alignof(ChipShared) - 1) / alignof(ChipShared) *
                                alignof(ChipShared);

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// CHIPMESH_HOST_ARENA_BYTES, capped at the machine's memory (a chip can
// never fill more), in whole pages.
uint64_t host_arena_bytes() {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const long pages = sysconf(_SC_PHYS_PAGES);
  uint64_t bytes = static_cast<uint64_t>(knobs::integer(knobs::Id::HostArenaBytes));
  if (pages > 0) bytes = std::min(bytes, static_cast<uint64_t>(pages) * page);
  return bytes / page * page;
}

}  // namespace

Worker::Worker(WorkerConfig cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {
  const auto& c = impl_->cfg;
  if (c.device_ids.empty()) throw ConfigError("Worker: device_ids is empty");
  if (!c.chip_bootstrap_configs.empty() && c.chip_bootstrap_configs.size() != c.device_ids.size())
    throw ConfigError("Worker: " + std::to_string(c.chip_bootstrap_configs.size()) +
                      " chip_bootstrap_configs for " + std::to_string(c.device_ids.size()) +
                      " device_ids; give one per device or none");
  for (size_t i = 0; i < c.chip_bootstrap_configs.size(); ++i)
    if (c.chip_bootstrap_configs[i].buffers.size() > CHIP_BOOTSTRAP_MAX_BUFFERS)
      throw ConfigError("Worker: chip " + std::to_string(i) + " declares " +
                        std::to_string(c.chip_bootstrap_configs[i].buffers.size()) + " buffers, at most " +
                        std::to_string(CHIP_BOOTSTRAP_MAX_BUFFERS) + " fit a bootstrap mailbox");
  validate_comm_groups(c.chip_bootstrap_configs);
  if (c.bootstrap_timeout.count() <= 0) throw ConfigError("Worker: bootstrap_timeout must be > 0");
  impl_->cluster_kind = c.cluster;
  if (impl_->cluster_kind.empty() && knobs::is_set(knobs::Id::Cluster)) impl_->cluster_kind = "mpi";
  if (!impl_->cluster_kind.empty() && impl_->cluster_kind != "mpi")
    throw ConfigError("Worker: cluster must be \"\" (one host) or \"mpi\", got '" + impl_->cluster_kind + "'");
  if (!impl_->cluster_kind.empty() && !cluster::available())
    throw ConfigError("Worker: cluster \"mpi\": chipmesh was built without MPI (install libopenmpi-dev and rebuild)");
}

Worker::~Worker() {
  if (impl_->in_forked_copy()) {
    // A fork's copy (a child exiting through its destructors): the chips,
    // the shared memory, the watcher's eventfd and threads are the other
    // process's (the threads do not even exist here). Touch none of it;
    // what this copy maps goes with this process.
    (void)impl_.release();
    return;
  }
  try {
    close();
  } catch (...) {
    // A destructor must not throw; close() released everything regardless.
  }
}

size_t Worker::num_chips() const { return impl_->n(); }

pid_t Worker::chip_pid(int chip) const {
  if (chip < 0 || static_cast<size_t>(chip) >= impl_->pids.size()) return -1;
  return impl_->pids[chip];
}

std::map<std::string, double> Worker::bringup_phases_ms() const { return impl_->phases; }

void Worker::exclude_from_chips(const void* ptr, size_t bytes) {
  if (impl_->state != Impl::State::Created)
    throw ConfigError("Worker::exclude_from_chips: the chips are forked already (call it before init())");
  impl_->fork_exclusions.add(ptr, bytes);
}

const std::vector<ChipContext>& Worker::chip_contexts() const {
  impl_->require_running("chip_contexts");
  return impl_->contexts;
}

void Worker::Impl::map_region(uint64_t arena_bytes) {
  // The header takes the first page; the chips' blocks are page-aligned after it.
  static_assert(sizeof(worker::SharedHeader) <= kHeaderBytes && alignof(ChipShared) <= kHeaderBytes);
  region_bytes = kHeaderBytes + n() * sizeof(ChipShared);
  all_chips.resize(n());
  std::iota(all_chips.begin(), all_chips.end(), 0);
  // Anonymous and shared: inherited by the chips, invisible in /dev/shm, gone
  // with the last process that maps it.
  region = mmap(nullptr, region_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) {
    region = nullptr;
    throw DeviceError("Worker::init: cannot map " + std::to_string(region_bytes) + " bytes of shared memory for " +
                      std::to_string(n()) + " chips: " + std::strerror(errno) + process::address_space_hint(errno));
  }
  header = static_cast<worker::SharedHeader*>(region);
  header->parent_cpu.store(-1, std::memory_order_relaxed);  // nobody seen anywhere yet
  header->run_chips.store(0, std::memory_order_relaxed);
  header->rendezvous.init();  // the mapping is zeroed: every slot empty
  for (size_t i = 0; i < n(); ++i) {
    chips.push_back(reinterpret_cast<ChipShared*>(static_cast<char*>(region) + kHeaderBytes + i * sizeof(ChipShared)));
    chips.back()->cpu.store(-1, std::memory_order_relaxed);
    chips.back()->window_fd.store(worker::kWindowFdUnknown, std::memory_order_relaxed);
    ChipBootstrapChannel(chips.back()->mailbox, CHIP_BOOTSTRAP_MAX_BUFFERS).reset();
  }
  next_req.assign(n(), 0);
  inspected.assign(n(), 0);
  worked_in_run.assign(n(), 0);
  run_members.reserve(n());
  armed_chips.reserve(n());
  arenas = std::make_unique<worker::HostArenas>(n(), arena_bytes);
}

void Worker::Impl::fork_chips() {
  static const ChipBootstrapConfig kNoComm{};
  // A token of this job alone, even when CHIPMESH_JOB_TOKEN is set: two
  // Workers with one token on one rootinfo path must never meet.
  const std::string token = knobs::job_token_of_one_job("worker");
  const pid_t parent = getpid();
  std::fflush(nullptr);  // no doubled stdio buffers in the children
  // Each fork makes the parent's pages copy-on-write again, so whatever the
  // loop writes faults once per chip: no allocation in it.
  pids.reserve(n());
  worker::ForkLocks locks;  // no chip starts with a lock another thread held
  for (size_t i = 0; i < n(); ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      int err = errno;
      locks.release();
      reap_forked_without_watcher();
      throw DeviceError("Worker::init: fork of chip " + std::to_string(i) + " of " + std::to_string(n()) +
                        " failed: " + std::strerror(err) +
                        process::limit_hint(err, RLIMIT_NPROC, "RLIMIT_NPROC (processes)") + "; the " +
                        std::to_string(i) + " chips already forked were killed and reaped");
    }
    if (pid == 0) {
      fork_exclusions.guard_in_child();
      locks.release();
      arenas->keep_only(i);
      const std::vector<int> window_fds = window_files.open_fds();
      worker::ChipProcessArgs args{static_cast<int>(i),
                                   static_cast<int>(n()),
                                   cfg.device_ids[i],
                                   cfg.platform,
                                   cfg.chip_bootstrap_configs.empty() ? &kNoComm : &cfg.chip_bootstrap_configs[i],
                                   chips[i],
                                   header,
                                   parent,
                                   token,
                                   arenas->fd(i),
                                   arenas->bytes(),
                                   window_files.fd(i),
                                   window_files.offset(i),
                                   window_files.shared(),
                                   &window_fds};
      worker::run_chip_process(args);
    }
    pids.push_back(pid);
    // Dekker pairing with interrupt(): it sets the flag, then reads the slots.
    live_pids[i].store(pid, std::memory_order_seq_cst);
    if (interrupted.load(std::memory_order_seq_cst)) kill(pid, SIGTERM);
  }
  locks.release();
  arenas->map_all();    // only now: a mapping held across the forks costs each of them
  arenas->close_fds();  // each chip holds its own; the mappings stay here
  window_files.close_all();  // likewise; the staging views keep descriptors of their own
  try {
    watcher = std::make_unique<worker::ChildWatcher>(pids, header,
                                                     std::vector<const ChipShared*>(chips.begin(), chips.end()));
  } catch (const Error& e) {
    // No pidfds (RLIMIT_NOFILE) or no thread (RLIMIT_NPROC): reap the chips
    // the plain way, leaving no process and no zombie, and say which limit
    // it was.
    const int err = errno;
    reap_forked_without_watcher();
    throw DeviceError(std::string("Worker::init: cannot watch the ") + std::to_string(n()) + " chips: " + e.what() +
                      (err == EAGAIN ? process::thread_limit_hint(err)
                                     : process::limit_hint(err, RLIMIT_NOFILE, "RLIMIT_NOFILE (open files)")) +
                      "; every chip was killed and reaped");
  }
}

void Worker::Impl::reap_forked_without_watcher() noexcept {
  // The chips have not touched anything shared yet that a SIGKILL would
  // leak: they are at most in their first bring-up steps.
  for (pid_t p : pids) kill(p, SIGKILL);
  for (pid_t p : pids) {
    while (waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pids.clear();
}

void Worker::Impl::wait_for_bringup(Clock::time_point start) {
  Deadline deadline(cfg.bootstrap_timeout);
  std::vector<ChipBootstrapChannel> channels;
  for (auto* c : chips) channels.emplace_back(c->mailbox, CHIP_BOOTSTRAP_MAX_BUFFERS);
  std::optional<ChipError> failure;
  auto settled = [&] {
    if (interrupted.load()) {
      failure = chip_error(0, "interrupted during bring-up");
      return true;
    }
    bool all = true;
    for (size_t i = 0; i < n(); ++i) {
      auto st = channels[i].state();
      if (st == ChipBootstrapMailboxState::ERROR) {
        failure = chip_error(i, channels[i].error_message());
        return true;
      }
      if (st != ChipBootstrapMailboxState::IDLE && st != ChipBootstrapMailboxState::SUCCESS) {
        failure = chip_error(i, "InternalError: bootstrap mailbox holds invalid state " +
                                    std::to_string(static_cast<int32_t>(st)));
        return true;
      }
      if (watcher->dead(i)) {
        failure = chip_error(i, (st == ChipBootstrapMailboxState::IDLE ? "died before publishing its bootstrap mailbox: "
                                                                         : "died during bring-up: ") +
                                    watcher->cause(i));
        return true;
      }
      // Done once it has also said whether it lends its window (it does
      // right after publishing, then notifies).
      all = all && st == ChipBootstrapMailboxState::SUCCESS &&
            chips[i]->window_fd.load(std::memory_order_acquire) != worker::kWindowFdUnknown;
    }
    return all;
  };
  if (!wait_until(settled, &deadline)) failure = bringup_timeout(channels);
  if (failure) throw *failure;
  const auto done = Clock::now();
  double comm = 0, windows = 0, staging = 0;
  for (auto* c : chips) {
    const BootstrapTimings t = ChipBootstrapChannel(c->mailbox, CHIP_BOOTSTRAP_MAX_BUFFERS).timings();
    comm = std::max(comm, t.comm_init_ms);
    windows = std::max(windows, t.windows_ms);
    staging = std::max(staging, t.staging_ms);
  }
  phases["comm_init"] = comm;
  phases["windows"] = windows;
  phases["staging"] = staging;
  phases["total"] = ms(done - start);
  phases["handshake"] = std::max(0.0, phases["total"] - phases["fork"] - comm - windows - staging);
}

ChipError Worker::Impl::bringup_timeout(const std::vector<ChipBootstrapChannel>& channels) const {
  // Name the least advanced of the chips that have not published: the one
  // the others wait for (a chip stuck setting its device, not its peer
  // waiting in comm_init), and say where the rest were.
  const std::string within = " within " + std::to_string(cfg.bootstrap_timeout.count()) + " ms";
  auto step_of = [&](size_t i) {
    return std::min(chips[i]->bringup_step.load(std::memory_order_acquire),
                    static_cast<uint32_t>(BootstrapStep::kPublishing));
  };
  std::optional<size_t> worst;
  for (size_t i = 0; i < n(); ++i)
    if (channels[i].state() == ChipBootstrapMailboxState::IDLE && (!worst || step_of(i) < step_of(*worst))) worst = i;
  if (!worst) {
    for (size_t i = 0; i < n(); ++i)
      if (chips[i]->window_fd.load(std::memory_order_acquire) == worker::kWindowFdUnknown)
        return chip_error(i, "TimeoutError: published its bootstrap mailbox but did not say whether it lends its "
                             "window" + within);
    return chip_error(0, "TimeoutError: bring-up did not settle" + within);
  }
  std::map<uint32_t, size_t> others;  // step -> chips there
  for (size_t i = 0; i < n(); ++i)
    if (i != *worst && channels[i].state() == ChipBootstrapMailboxState::IDLE) ++others[step_of(i)];
  std::string msg = "TimeoutError: did not publish its bootstrap mailbox" + within + "; it was still " +
                    describe(static_cast<BootstrapStep>(step_of(*worst)));
  if (!others.empty()) {
    msg += " (not published either:";
    const char* sep = " ";
    for (const auto& [step, count] : others) {
      msg += sep + std::to_string(count) + (count == 1 ? " chip " : " chips ") +
             describe(static_cast<BootstrapStep>(step));
      sep = "; ";
    }
    msg += ")";
  }
  return chip_error(*worst, msg);
}

// The windows the chips lend (said before their bring-up counted as done).
void Worker::Impl::lend_bringup_windows() {
  for (size_t i = 0; i < n(); ++i)
    if (contexts[i].rank >= 0)
      windows.add(i, contexts[i].local_window_base, contexts[i].actual_window_size, watcher->pidfd(i),
                  chips[i]->window_fd.load(std::memory_order_acquire),
                  chips[i]->window_offset.load(std::memory_order_relaxed));
}

void Worker::Impl::build_contexts() {
  contexts.clear();
  for (size_t i = 0; i < n(); ++i) {
    ChipBootstrapChannel ch(chips[i]->mailbox, CHIP_BOOTSTRAP_MAX_BUFFERS);
    ChipContext ctx;
    ctx.device_id = cfg.device_ids[i];
    ctx.device_ctx = ch.device_ctx();
    ctx.local_window_base = ch.local_window_base();
    ctx.actual_window_size = ch.actual_window_size();
    const ChipBootstrapConfig* c = cfg.chip_bootstrap_configs.empty() ? nullptr : &cfg.chip_bootstrap_configs[i];
    if (c && c->comm) {
      ctx.rank = c->comm->rank;
      ctx.nranks = c->comm->nranks;
    }
    std::vector<uint64_t> ptrs = ch.buffer_ptrs();
    const size_t expected = c ? c->buffers.size() : 0;
    if (ptrs.size() != expected)
      throw chip_error(i, "InternalError: bootstrap mailbox reports " + std::to_string(ptrs.size()) +
                              " buffer pointers, the config declares " + std::to_string(expected));
    for (size_t b = 0; b < expected; ++b) ctx.buffer_ptrs[c->buffers[b].name] = ptrs[b];
    contexts.push_back(std::move(ctx));
  }
}

namespace {

// The chips inherit this process's CPU affinity. Bound to fewer CPUs than
// it has chips (mpirun binds a process to one core by default for up to two
// processes, `taskset`), they all share those CPUs: say so once, with the
// way out. Not an error: the job works, only slower.
void warn_if_bound_tighter_than(size_t chips) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return;
  const int bound = CPU_COUNT(&set);
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (bound >= static_cast<int>(chips) || bound >= online) return;
  CHIPMESH_WARN(WORKER,
                "this process is bound to %d of the %ld online CPUs and its %zu chips inherit that, so they share "
                "them; under mpirun use --bind-to none (or --map-by ppr:1:node:pe=N), or widen the affinity",
                bound, online, chips);
}

}  // namespace

void Worker::init() {
  Impl& m = *impl_;
  m.require_owner("init");
  if (m.state != Impl::State::Created)
    throw ConfigError(std::string("Worker::init: the worker is already ") +
                      (m.state == Impl::State::Running ? "initialized" : "closed"));
  m.check_interrupted("init");
  // A misspelt knob is silently unset: say so, once, where the log is on
  // (`chipmesh env` lists them always).
  static std::once_flag typos;
  if (log::enabled(log::WARN, log::INIT))
    std::call_once(typos, [] {
      for (const auto& u : knobs::unknown_in_environment())
        if (!u.nearest.empty())
          CHIPMESH_WARN(INIT, "%s is set but is not a knob (did you mean %s?)", u.name.c_str(), u.nearest.c_str());
    });
  if (!m.cluster_kind.empty()) {
    // In a cluster: join, load the platform and agree on the job before
    // anything is forked, each step settled with the other hosts.
    m.join_cluster();
  } else {
    // Load the platform here too: a bad name fails before anything is forked.
    m.platform = load_platform(m.cfg.platform);
  }
  preload_builtin_kernels();
  warn_if_bound_tighter_than(m.n());
  const PlatformTables& tables = load_platform_tables(m.cfg.platform);
  const auto start = Clock::now();
  Clock::time_point forking = start;  // set by fork(), on whichever thread runs it
  try {
    m.fork_exclusions.mark();  // first: memory freed since fails before anything is made
    m.map_region(tables.device->attach_host_arena ? host_arena_bytes() : 0);
    m.place_bringup_rendezvous();
    auto fork = [&] {
      // The plugin's per-thread error slot is a thread_local of a dlopen'ed
      // library: its first use in a thread allocates the block and registers
      // its destructor (__tls_get_addr, __cxa_thread_atexit, a lazy binding
      // in libstdc++), page faults that each chip paid in its bring-up. Used
      // once here, in the thread that forks, every chip inherits it done.
      if (tables.device->last_error_code) (void)tables.device->last_error_code();
      if (tables.transport && tables.transport->last_error_code) (void)tables.transport->last_error_code();
      forking = Clock::now();
      m.fork_chips();
    };
    // A chip's parent-death signal follows the thread that forked it. The
    // main thread ends with the process, so it forks them itself, as
    // before; any other thread may end first, so a thread of the Worker's
    // own does (8 chips on the AMD EPYC VM: the fork phase 0.5-0.7 ms
    // longer with the handoff, init() as a whole the same within noise,
    // the chips' bring-up overlapping the wake-up).
    if (syscall(SYS_gettid) == process::this_pid())
      fork();
    else
      m.chip_parent = std::make_unique<worker::ChipParentThread>(fork);
    m.fork_exclusions.unmark();
  } catch (...) {
    m.fork_exclusions.unmark();
    // On one host the worker stays as it was, less what this init() made
    // (the shared region, the host arenas, the job's directory: no chip
    // runs, every one forked was reaped), so that neither a second init()
    // nor the Worker's end leaks it; in a cluster it is done, and the other
    // hosts must hear of it rather than wait in MPI.
    m.terminate_all(std::chrono::milliseconds(2000));
    if (!m.cluster) m.pids.clear();  // a second init() forks its own
    if (m.cluster) {
      m.state = Impl::State::Closed;
      m.settle("bring-up", describe_current_exception());
    }
    throw;
  }
  m.phases["fork"] = ms(Clock::now() - start);
  m.phases["setup"] = ms(forking - start);
  try {
    knobs::test_pause_point("fork");
    m.wait_for_bringup(start);
    knobs::test_pause_point("handshake");
    m.build_contexts();
    m.lend_bringup_windows();
    m.build_world();
    // The rendezvous is over (its last arriver removed the rootinfo): the
    // job's directory goes now, so no kill from here on, however abrupt
    // (a launcher's SIGKILL to the chips' process group), can leave it.
    m.remove_job_dir();
  } catch (...) {
    m.terminate_all(std::chrono::milliseconds(2000));
    m.state = Impl::State::Closed;
    // The other hosts wait for this one: tell them, then rethrow ours.
    if (m.cluster) m.settle("bring-up", describe_current_exception());
    throw;
  }
  if (m.cluster) {
    try {
      m.settle("bring-up", "");
    } catch (...) {
      m.terminate_all(std::chrono::milliseconds(2000));
      m.state = Impl::State::Closed;
      throw;
    }
  }
  m.state = Impl::State::Running;
  CHIPMESH_INFO(INIT,
                "init timings: job of %zu chips: fork %.3f ms, handshake %.3f ms, total %.3f ms (slowest chip: "
                "comm_init %.3f ms, windows %.3f ms, staging %.3f ms)",
                m.n(), m.phases["fork"], m.phases["handshake"], m.phases["total"], m.phases["comm_init"],
                m.phases["windows"], m.phases["staging"]);
}

void Worker::interrupt() noexcept {
  Impl& m = *impl_;
  if (m.in_forked_copy()) return;  // the chips are the owner's (this_pid: loads, or getpid once)
  m.interrupted.store(true, std::memory_order_seq_cst);
  for (size_t i = 0; i < m.n(); ++i)
    if (pid_t pid = m.live_pids[i].load(std::memory_order_seq_cst); pid > 0) kill(pid, SIGTERM);
}

bool Worker::interrupted() const noexcept { return impl_->interrupted.load(); }

void Worker::Impl::check_interrupted(const char* what) const {
  if (interrupted.load()) throw ConfigError(std::string("Worker::") + what + ": the worker was interrupted; close() it");
}

void Worker::Impl::terminate_all(std::chrono::milliseconds grace) noexcept {
  for (size_t i = 0; i < n(); ++i) live_pids[i].store(0);
  windows.clear();  // before the watcher (and its pidfds) goes
  if (watcher) {
    // SIGTERM first: a chip cut short in bring-up removes the names it owns
    // (platform emergency_cleanup) before it exits.
    for (size_t i = 0; i < pids.size(); ++i)
      if (!watcher->dead(i)) kill(pids[i], SIGTERM);
    Deadline soft(grace);
    wait_until([&] { return watcher->all_dead(); }, &soft);
    for (size_t i = 0; i < pids.size(); ++i)
      if (!watcher->dead(i)) kill(pids[i], SIGKILL);
    wait_until([&] { return watcher->all_dead(); }, nullptr);
    bool unclean = false;
    for (size_t i = 0; i < pids.size(); ++i) unclean = unclean || watcher->died_uncleanly(i);
    watcher.reset();
    chip_parent.reset();  // every chip is reaped
    if (unclean) sweep_leftovers();
  }
  arenas.reset();
  remove_job_dir();  // the chips are gone (or were never forked)
  if (region) {
    munmap(region, region_bytes);
    region = nullptr;
    header = nullptr;
    chips.clear();
  }
}

void Worker::Impl::sweep_leftovers() noexcept {
  try {
    std::vector<std::string> rootinfos;
    for (const auto& c : cfg.chip_bootstrap_configs)
      if (c.comm) rootinfos.push_back(c.comm->rootinfo_path);
    for (const std::string& name : worker::remove_stale_leftovers(load_platform_tables(cfg.platform).transport, rootinfos))
      CHIPMESH_INFO(WORKER, "removed %s, left by a chip that died by a signal", name.c_str());
  } catch (const std::exception& e) {
    CHIPMESH_WARN(WORKER, "could not sweep what dead chips left: %s", e.what());
  }
}

void Worker::close() {
  Impl& m = *impl_;
  if (m.in_forked_copy()) return;  // the owner's to close (see ~Worker)
  if (m.state == Impl::State::Closed) return;
  if (m.in_run)
    throw ConfigError("Worker::close: called from the orchestration function of run(), which still uses the chips; "
                      "close() once run() has returned (an exception out of the function ends the run)");
  if (m.state == Impl::State::Created) {
    m.state = Impl::State::Closed;
    return;
  }
  m.state = Impl::State::Closed;
  m.abort_running_kernels();  // a kernel still waiting on a peer gives up now
  std::optional<ChipError> failure;
  // Ask every live, idle-enough chip to shut down (shutdown_bootstrap, then
  // finalize); a chip stuck in a kernel is terminated below.
  std::vector<std::pair<size_t, uint32_t>> asked;
  for (size_t i = 0; i < m.n(); ++i) {
    if (m.watcher->dead(i)) continue;
    if (m.next_req[i] - m.chips[i]->done_seq.load() >= worker::kRingDepth) continue;
    worker::Entry& e = m.chips[i]->entry(m.next_req[i]);
    e.op = worker::Op::Shutdown;
    asked.emplace_back(i, m.commit(i));
  }
  Deadline deadline(std::chrono::seconds(10));
  m.wait_until([&] { return m.watcher->all_dead(); }, &deadline);
  for (auto [i, seq] : asked) {
    const worker::Entry& e = m.chips[i]->entry(seq);
    if (m.chips[i]->done_seq.load() != seq + 1 || e.status == 0 || failure) continue;
    failure = m.chip_error(i, "shutdown failed: " + m.error_text(i, seq));
  }
  m.terminate_all(std::chrono::milliseconds(1000));
  if (failure) throw *failure;
}

}  // namespace chipmesh

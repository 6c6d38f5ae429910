#include "chip/chip_process.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <charconv>
#include <cstring>
#include <map>
#include <vector>

#include "chip/fault_report.h"
#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"
#include "chipmesh/shared_memory.h"
#include "common/env.h"
#include "common/futex.h"
#include "common/status_map.h"
#include "kernel_loader/kernel_library.h"
#include "knobs/knobs.h"
#include "logging/log.h"

namespace chipmesh::worker {
namespace {

// The platform whose emergency_cleanup the signal handler runs, and the
// Worker's shared header (the job's directories).
const chipmesh_platform* g_platform = nullptr;
SharedHeader* g_header = nullptr;

// SIGTERM: the parent died (PR_SET_PDEATHSIG) or gave up on us. SIGINT,
// SIGHUP: Ctrl-C or a hang-up reached the whole process group, chips
// included (they would otherwise die by the parent's inherited handler or
// the default action, leaving their windows).
constexpr int kCleanupSignals[] = {SIGTERM, SIGINT, SIGHUP};

void on_terminating_signal(int sig) {
  // Remove the names this process still owns, then leave. Async-signal-safe only.
  if (g_platform && g_platform->emergency_cleanup) g_platform->emergency_cleanup();
  // The job's directories go too, each once its rootinfo's owner has
  // removed that: every chip tries rmdir after its own cleanup, so the last
  // one to leave takes each (a parent killed by SIGKILL, or one that dies of
  // the same Ctrl-C, gets no say). A directory still holding a live
  // communicator's rootinfo is not empty and stays.
  if (g_header)
    for (const OwnedDir& d : g_header->owned_dirs)
      if (d.state.load(std::memory_order_acquire) == 2) rmdir(d.path);
  _exit(128 + sig);
}

void install_signal_handlers(pid_t parent, SharedHeader* header) {
  g_header = header;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_terminating_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : kCleanupSignals) sigaddset(&sa.sa_mask, sig);  // one cleanup at a time
  sigset_t unblock;
  sigemptyset(&unblock);
  for (int sig : kCleanupSignals) {
    sigaction(sig, &sa, nullptr);
    sigaddset(&unblock, sig);
  }
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  // The parent may have died before prctl took effect: check once by hand.
  if (getppid() != parent) _exit(128 + SIGTERM);
}

// Every failed request of the ring passes here: its one breadcrumb.
void copy_error(EntryExtra& x, const std::string& text) {
  CHIPMESH_WARN(CHIP, "request failed: %s", text.c_str());
  std::snprintf(x.error, sizeof(x.error), "%s", text.c_str());
}

// The fd on communicator `comm`'s window that the transport lends the
// parent (worker/window_views.h), or kNoWindowFd, and where in its file the
// window lies: window_file first (a window inside one object of every
// rank's), then window_fd (offset 0).
int32_t lent_window_fd(ChipWorker& w, uint64_t comm, uint64_t* offset) {
  *offset = 0;
  if (comm == 0 || !w.has_transport()) return kNoWindowFd;
  const auto h = reinterpret_cast<CommHandle>(comm);
  int fd = kNoWindowFd;
  if (w.transport().window_file) {
    uint64_t off = 0;
    if (w.transport().window_file(h, &fd, &off) == CHIPMESH_SUCCESS && fd >= 0) {
      *offset = off;
      return fd;
    }
    fd = kNoWindowFd;
  }
  if (!w.transport().window_fd || w.transport().window_fd(h, &fd) != CHIPMESH_SUCCESS) return kNoWindowFd;
  return fd;
}

// now + timeout on CLOCK_MONOTONIC (the clock of device::now_ns), read
// from the coarse clock plus its resolution: never earlier, at most one
// tick (a few ms) later. The precise clock costs tens of ns per task on a
// VM, the coarse one a memory read.
uint64_t kernel_deadline_ns(std::chrono::nanoseconds timeout) {
  auto ns = [](const timespec& t) {
    return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + static_cast<uint64_t>(t.tv_nsec);
  };
  static const uint64_t tick = [&] {
    timespec res{};
    return clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 ? ns(res) : 0;
  }();
  timespec now{};
  if (tick == 0 || clock_gettime(CLOCK_MONOTONIC_COARSE, &now) != 0) clock_gettime(CLOCK_MONOTONIC, &now);
  return ns(now) + tick + static_cast<uint64_t>(timeout.count());
}

class ChipServer {
 public:
  ChipServer(const ChipProcessArgs& a, ChipWorker& w, ChipBootstrapResult result, bool arena)
      : a_(a),
        w_(w),
        result_(std::move(result)),
        kernel_timeout_(env::comm_timeout()),
        arena_(arena),
        flushes_(std::any_of(a.config->buffers.begin(), a.config->buffers.end(),
                             [](const ChipBufferSpec& b) { return b.store_to_host; })) {}

  [[noreturn]] void serve() {
    ChipShared& s = *a_.shared;
    // Requests below `posted` are known to be there (one acquire load of
    // req_seq published them all): a stream reads the parent's line once
    // per batch, not once per request.
    uint32_t posted = 0;
    for (uint32_t seq = 0;; ++seq) {
      if (seq == posted) posted = wait_for_request(s, seq);
      // Where the parent's wait should not spin; stored only when it moved,
      // so that the line the parent reads stays shared.
      if (const int cpu = futex::current_cpu(); s.cpu.load(std::memory_order_relaxed) != cpu)
        s.cpu.store(cpu, std::memory_order_relaxed);
      Entry& e = s.entry(seq);
      bool shutdown = e.op == Op::Shutdown;
      handle(e, s.extra(seq), s.chunk(seq));
      // The runs of this task the parent granted while it ran (grant_repeat).
      if (e.op == Op::Task && (e.task.flags & kTaskRepeatable) != 0)
        for (uint32_t ran = 0; next_repeat(s.repeat, seq, ran, e.status != 0); ++ran) handle(e, s.extra(seq), nullptr);
      s.done_seq.store(seq + 1, std::memory_order_release);
      // A failure and a shutdown wake the parent whatever it waits for.
      notify_parent(a_.header, e.status != 0 || shutdown ? nullptr : &s.wake_parent_at, seq + 1);
      if (shutdown) _exit(e.status == 0 ? 0 : 1);
    }
  }

 private:
  // Waits until request `seq` is posted; returns req_seq as then read.
  uint32_t wait_for_request(ChipShared& s, uint32_t seq) {
    // Spin long only while the chips and the parent have a core each;
    // otherwise a spinning chip steals the core the parent or a peer needs.
    auto parent_here = [&] {
      const int me = futex::current_cpu();
      s.cpu.store(me, std::memory_order_relaxed);
      return a_.header->parent_cpu.load(std::memory_order_relaxed) == me;
    };
    // Stacked on the parent's CPU while the chips of this run() and the
    // parent fit the cores: the chip moves, never the user's thread (futex.h).
    auto move_off = [&] {
      if (a_.header->run_chips.load(std::memory_order_relaxed) + 1 <= futex::cores()) futex::move_off_this_cpu();
    };
    uint32_t posted = seq;
    auto arrived = [&] {
      posted = s.req_seq.load(std::memory_order_acquire);
      return posted != seq;
    };
    // The first request comes only once every chip is up: until then a
    // chip's spins and yields take the cores from those still bringing up.
    if (seq != 0 && futex::spin_then_yield(arrived, a_.num_chips + 1, parent_here, move_off)) return posted;
    while (!arrived()) {
      s.chip_sleeping.store(1, std::memory_order_seq_cst);
      if (s.req_seq.load(std::memory_order_seq_cst) == seq)
        futex::wait(&s.req_seq, seq, std::chrono::seconds(1));
      s.chip_sleeping.store(0, std::memory_order_relaxed);
      if (getppid() != a_.parent) _exit(128 + SIGTERM);  // belt and braces to PDEATHSIG
    }
    return posted;
  }

  // e.status is 0 (the parent's commit); only a failure writes it, and the
  // error text, so that a request that succeeds leaves the entry's lines to
  // the parent.
  void handle(Entry& e, EntryExtra& x, unsigned char* chunk) {
    try {
      switch (e.op) {
        case Op::Task: run_task(e, x); break;
        case Op::Malloc:
          e.arena_offset = CHIPMESH_NO_ARENA_OFFSET;
          e.result = w_.malloc(e.a);
          if (arena_) e.arena_offset = w_.host_range(e.result, e.a).arena_offset;
          break;
        case Op::Free: w_.free(e.a); break;
        case Op::CopyTo: w_.copy_to(e.a, chunk, e.b); break;
        case Op::CopyFrom: w_.copy_from(chunk, e.a, e.b); break;
        case Op::CommCreate: comm_create(x.comm); break;
        case Op::CommDestroy: comm_destroy(e.a); break;
        case Op::Flush: flush(static_cast<int>(e.a)); break;
        case Op::Shutdown:
          // Domains the parent did not release, in the order they were made
          // (the same on every member).
          while (!domains_.empty()) comm_destroy(domains_.front().handle);
          w_.shutdown_bootstrap();
          w_.finalize();
          break;
        default: throw InternalError("unknown request op " + std::to_string(static_cast<uint32_t>(e.op)));
      }
    } catch (const std::exception& ex) {
      e.status = status_of(ex);
      copy_error(x, describe_current_exception());
    } catch (...) {
      e.status = CHIPMESH_ERR_INTERNAL;
      copy_error(x, "InternalError: unknown exception");
    }
  }

  void run_task(Entry& e, EntryExtra& x) {
    const TaskDesc& t = e.task;
    // Until this task succeeds, its outputs are suspect: no explicit Flush
    // may publish them (set first: a bad kernel name throws below).
    last_task_failed_ = true;
    // Back-to-back tasks mostly call the kernel of the task before, and the
    // parent then says so (TaskDesc::same_kernel) without writing the
    // names. last_library_ and last_kernel_ are kept also when the lookup
    // failed, so that a same_kernel task fails alike.
    if (!t.same_kernel) {
      last_fn_ = nullptr;
      last_library_.assign(x.library, strnlen(x.library, sizeof(x.library)));
      last_kernel_.assign(x.kernel, strnlen(x.kernel, sizeof(x.kernel)));
    }
    if (!last_fn_) last_fn_ = kernels_.find(last_library_, last_kernel_);
    chipmesh_kernel_entry fn = last_fn_;
    const std::string& kernel = last_kernel_;
    char message[CHIPMESH_KERNEL_ERROR_SIZE];  // not zeroed: only read up to the NUL a failure writes
    message[0] = '\0';
    chipmesh_kernel_args args{};
    args.abi_version = CHIPMESH_KERNEL_ABI_VERSION;
    args.device_id = a_.device_id;
    args.comm = reinterpret_cast<const CommContext*>(comm_ctx(t.comm_ctx));
    args.tensors = task_tensors(t, x);
    args.num_tensors = t.num_tensors;
    args.scalars = task_scalars(t, x);
    args.num_scalars = t.num_scalars;
    args.deadline_ns = kernel_deadline_ns(kernel_timeout_);
    args.abort = reinterpret_cast<const volatile uint32_t*>(&a_.shared->abort);
    args.error = message;
    int rc = w_.launch(reinterpret_cast<chipmesh_kernel_fn>(fn), &args);
    if (rc != 0) {
      message[sizeof(message) - 1] = '\0';  // a kernel that filled the buffer without a NUL
      const bool known = rc > 0 && rc <= CHIPMESH_ERR_INTERNAL;
      e.status = rc;
      copy_error(x, std::string(known ? status_kind(rc) : "KernelError") + ": kernel '" + kernel + "': " +
                        (message[0] ? std::string(message) : "returned status " + std::to_string(rc)));
      return;  // outputs are not flushed after a failed task
    }
    last_task_failed_ = false;
    // Publish completion only after every side effect: flush store_to_host
    // buffers into their staging before done_seq moves (unless the parent
    // asked to flush later, with an Op::Flush).
    // The run's other chips flush theirs about now too (a collective's members end together).
    if ((t.flags & kTaskFlushOutputs) && flushes_)
      w_.store_to_host(a_.header->run_chips.load(std::memory_order_relaxed));
  }

  // An explicit flush (Orchestrator::flush_outputs). The rule of tasks holds:
  // the outputs of a failed task are never flushed, also not by a Flush
  // queued behind it before the parent saw the failure.
  // `flushing`: the chips of the flush_outputs call, flushing at once.
  void flush(int flushing) {
    if (last_task_failed_)
      throw ConfigError("flush_outputs: the last task on this chip failed, and outputs are not flushed after a "
                        "failed task (run a successful task first)");
    w_.store_to_host(flushing);
  }

  // A domain's communicator: comm_init as its rank, then its windows
  // (fresh shared memory on sim, so zero before any peer maps it).
  void comm_create(CommDesc& c) {
    const std::string rootinfo(c.rootinfo, strnlen(c.rootinfo, sizeof(c.rootinfo)));
    w_.set_comm_timeout(std::chrono::milliseconds(c.timeout_ms));
    const uint64_t h = w_.comm_init(c.rank, c.nranks, rootinfo);
    try {
      c.device_ctx = w_.comm_alloc_windows(h, c.window_size);
      c.local_window_base = w_.comm_get_local_window_base(h);
      c.actual_window_size = w_.comm_get_window_size(h);
      if (c.actual_window_size < c.window_size)
        throw DeviceError("the platform returned a window of " + std::to_string(c.actual_window_size) +
                          " bytes for a request of " + std::to_string(c.window_size));
    } catch (...) {
      try {
        w_.comm_destroy(h);
      } catch (...) {
        // the first error is the one to report
      }
      throw;
    }
    c.handle = h;
    c.window_fd = lent_window_fd(w_, h, &c.window_offset);
    domains_.push_back(Domain{h, c.device_ctx});
  }

  void comm_destroy(uint64_t handle) {
    for (auto it = domains_.begin(); it != domains_.end(); ++it) {
      if (it->handle != handle) continue;
      domains_.erase(it);  // first: a failed destroy is not retried on a freed handle
      w_.comm_destroy(handle);
      return;
    }
    throw InternalError("comm_destroy: no live domain communicator " + std::to_string(handle) + " on this chip");
  }

  // The CommContext a task asked for: 0 is the bring-up one.
  uint64_t comm_ctx(uint64_t requested) const {
    if (requested == 0 || requested == result_.device_ctx) return result_.device_ctx;
    for (const Domain& d : domains_)
      if (d.device_ctx == requested) return requested;
    throw ConfigError("task asks for communicator context " + std::to_string(requested) +
                      ", which is no live domain's on this chip");
  }

  struct Domain {
    uint64_t handle;
    uint64_t device_ctx;
  };
  std::vector<Domain> domains_;  // live, in the order made
  bool last_task_failed_ = false;
  const ChipProcessArgs& a_;
  ChipWorker& w_;
  ChipBootstrapResult result_;
  KernelLibraries kernels_;
  // The kernel of the last task that found one, by its names.
  chipmesh_kernel_entry last_fn_ = nullptr;
  std::string last_library_, last_kernel_;
  const std::chrono::milliseconds kernel_timeout_;  // read once: not per task
  const bool arena_;  // the platform took the host arena: report where allocations lie
  // Some buffer is store_to_host: a task's flush has work (and reads the
  // run's chip count) only then.
  const bool flushes_;
};

// Hands the Worker's arena to the platform when it takes one; without it
// (or when attaching fails) the parent's copies take the ring.
bool attach_arena(const ChipProcessArgs& a, ChipWorker& w) {
  if (a.arena_fd < 0) return false;
  bool attached = false;
  try {
    attached = w.attach_host_arena(a.arena_fd, a.arena_bytes);
  } catch (const std::exception& e) {
    CHIPMESH_INFO(CHIP, "no host arena: %s; copies take the request ring", e.what());
  }
  ::close(a.arena_fd);  // the platform holds its own duplicate
  return attached;
}


}  // namespace

void notify_parent(SharedHeader* h, const std::atomic<uint32_t>* wake_at, uint32_t done) {
  // What the parent waits for (done_seq, a death, a mailbox) is written
  // before. The fence pairs with the one after the parent's parent_sleeping
  // store: either we see it sleeping, or its re-check of done() sees what we
  // wrote. So `events`, a line every chip would otherwise bump on every
  // completion, moves only to wake a parent that sleeps.
#if defined(__SANITIZE_THREAD__)
  h->events.fetch_add(1, std::memory_order_seq_cst);  // ThreadSanitizer does not model fences: this orders
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  if (h->parent_sleeping.load(std::memory_order_seq_cst) == 0) return;
  // Read only now: the parent sets it before it publishes that it sleeps.
  if (wake_at && static_cast<int32_t>(done - wake_at->load(std::memory_order_seq_cst)) < 0) return;
  h->events.fetch_add(1, std::memory_order_seq_cst);  // the futex word: a parent not yet asleep does not sleep
  futex::wake(&h->events);
}

void run_chip_process(const ChipProcessArgs& a) {
  // "chipmesh.chip3" in ps, top and perf rather than the launching
  // program's name (python3 for a Python user), so a chip is told from its
  // parent and its siblings at a glance. 15 characters at most: chip 63
  // fits. (<charconv>, not snprintf: printf's pages of libc would be a
  // page fault each in every chip's bring-up.)
  char name[16] = "chipmesh.chip";
  *std::to_chars(name + 13, name + sizeof(name) - 1, a.index).ptr = '\0';
  prctl(PR_SET_NAME, name);
  install_signal_handlers(a.parent, a.header);
  install_fault_report(a.shared->fault_report, sizeof(a.shared->fault_report), &a.shared->fault_signo);
  // The one bring-up path: bootstrap_context validates, brings up, maps the
  // outputs and publishes the result (or "<Kind>: <message>", code 1) on
  // this chip's mailbox itself.
  log::set_identity(a.index, a.config->comm ? a.config->comm->rank : -1);
  ChipBootstrapChannel channel(a.shared->mailbox, CHIP_BOOTSTRAP_MAX_BUFFERS);
  ChipWorker w;
  if (!a.job_token.empty()) w.set_job_token(a.job_token);  // travels through comm_init's options
  if (a.window_file_shared)
    w.set_shared_window_file(a.window_file, a.window_file_offset);
  else
    w.set_window_file(a.window_file);
  w.set_bootstrap_step_sink(&a.shared->bringup_step);
  ChipBootstrapResult result;
  bool arena = false;
  try {
    try {
      a.shared->bringup_step.store(static_cast<uint32_t>(BootstrapStep::kLoadingPlatform), std::memory_order_release);
      w.init(a.platform);
    } catch (...) {
      channel.write_error(1, describe_current_exception());  // before bootstrap_context could
      throw;
    }
    g_platform = &w.platform();
    arena = attach_arena(a, w);
    result = w.bootstrap_context(a.device_id, *a.config, &channel);
    // The window holds the file now (the transport took a descriptor), and
    // the peers' windows are mapped.
    if (a.window_file >= 0) w.set_window_file(-1);
    for (int fd : *a.window_files) ::close(fd);  // a.window_file among them
  } catch (...) {
    notify_parent(a.header);
    _exit(1);  // bootstrap_context released what it made
  }
  uint64_t window_offset = 0;
  const int32_t window_fd = lent_window_fd(w, w.bootstrap_comm(), &window_offset);
  a.shared->window_offset.store(window_offset, std::memory_order_relaxed);
  a.shared->window_fd.store(window_fd, std::memory_order_release);  // publishes the offset too
  notify_parent(a.header);
  ChipServer server(a, w, std::move(result), arena);
  server.serve();
}

}  // namespace chipmesh::worker

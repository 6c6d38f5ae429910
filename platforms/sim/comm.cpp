// The sim communicator's collective waits, failure handling and teardown, and
// the comm.h C API around SimComm.
#include "comm.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "chipmesh/errors.h"
#include "chipmesh/kernel_device.h"  // device::detail::note_stacked, shared with the kernels
#include "chipmesh/transport_abi.h"
#include "common/deadline.h"
#include "common/env.h"
#include "common/futex.h"
#include "common/status_map.h"
#include "device.h"

namespace chipmesh::sim {
namespace {

// How often a sleeping waiter wakes to check for dead peers: detection
// latency of a SIGKILLed rank is bounded by this.
constexpr std::chrono::milliseconds kLivenessSlice{100};
// A barrier looks at its peers' processes only once it has waited this
// long: a peer's liveness watch costs a pidfd and a /proc read (~13 us
// here), which every rank paid for every peer at every bring-up although
// the peers were only a few milliseconds late (issue 10).
constexpr std::chrono::milliseconds kFirstLivenessCheck{10};
// How long ranks that failed comm_init together keep the names alive for a
// rank that was merely slow to start, so it fails now rather than at its deadline.
constexpr std::chrono::milliseconds kLateJoinerGrace{2000};

}  // namespace

SimComm::~SimComm() {
  forget_names();
  unmap_all();
}

void SimComm::remember_name(names::Kind kind, const std::string& name) {
  int slot = names::add(kind, name, token_);
  if (slot >= 0) name_slots_.push_back(slot);
}

void SimComm::forget_names() noexcept {
  for (int slot : name_slots_) names::remove(slot);
  name_slots_.clear();
}

void SimComm::throw_aborted(const char* what) const {
  // The aborting rank publishes state 1 then its message then 2; give it a
  // moment to finish writing (it is running, not blocked).
  for (int i = 0; i < 1000000 && ctrl_->abort_state.load(std::memory_order_acquire) == 1; ++i) futex::cpu_relax();
  std::string msg(ctrl_->abort_message, strnlen(ctrl_->abort_message, kAbortMessageBytes));
  // Same error kind as the original failure (a timeout stays a timeout).
  throw_status(ctrl_->abort_status != CHIPMESH_SUCCESS ? ctrl_->abort_status : CHIPMESH_ERR_COMM,
               std::string(what) + " on rank " + std::to_string(rank_) + " failed: communicator aborted by rank " +
                   std::to_string(ctrl_->abort_rank) + ": " + msg);
}

void SimComm::abort_all(int status, const std::string& message) noexcept {
  failed_ = true;
  if (!ctrl_) return;
  uint32_t expected = 0;
  if (ctrl_->abort_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    ctrl_->abort_rank = rank_;
    ctrl_->abort_status = status;
    std::snprintf(ctrl_->abort_message, kAbortMessageBytes, "%s", message.c_str());
    ctrl_->abort_state.store(2, std::memory_order_release);
  }
  futex::wake(&ctrl_->bar_gen);
}

void SimComm::linger_for_late_joiners() noexcept {
  if (!ctrl_) return;
  Deadline grace(kLateJoinerGrace);
  const uint32_t everyone = ctrl_->nranks;
  // An abandoned rendezvous has none to wait for: a rank still on its way
  // finds it abandoned too.
  for (uint32_t seen; (seen = ctrl_->attached.load(std::memory_order_acquire)) < everyone && !grace.expired() &&
                      !rendezvous_abandoned();)
    futex::wait(&ctrl_->attached, seen, grace.next_slice(kLivenessSlice));
}

bool SimComm::rendezvous_abandoned() const { return store_ && store_->abandoned(); }

std::string SimComm::exited_peers() {
  std::string dead;
  for (int r = 0; r < nranks_; ++r) {
    if (r == rank_) continue;
    process::Watch& w = watches_[r];
    if (!w.valid()) {
      int32_t pid = ctrl_->slots[r].pid.load(std::memory_order_acquire);
      if (pid == 0) continue;  // not joined yet: only the deadline applies
      w = process::Watch(pid, ctrl_->slots[r].start_time);
    }
    if (w.exited())
      dead += (dead.empty() ? "" : ", ") + ("rank " + std::to_string(r) + " (pid " + std::to_string(w.pid()) + ")");
  }
  return dead;
}

void SimComm::check_peers(const char* what) {
  if (ctrl_->abort_state.load(std::memory_order_acquire) != 0) throw_aborted(what);
  std::string dead = exited_peers();
  if (dead.empty() && !rendezvous_abandoned()) return;
  std::string msg = std::string(what) + " on rank " + std::to_string(rank_) + " failed: " +
                    (dead.empty() ? std::string(rendezvous::kAbandonedMark) +
                                        " (a member died or failed before it joined)"
                                  : dead + " exited");
  // Tell every peer the root cause rather than let each find its own.
  abort_all(CHIPMESH_ERR_COMM, msg);
  throw CommError(msg);
}

template <typename Released>
bool SimComm::spin_in_barrier(Released&& released, uint32_t gen) {
  // More ranks than cores: they share cores by design, and a spin only
  // delays the ones not arrived (futex.h).
  if (nranks_ > futex::cores()) return futex::spin_then_sleep_when_crowded(released, nranks_);
  // A rank not arrived yet that was last seen on this CPU gets it at once.
  CtrlBlock& c = *ctrl_;
  bool lower_here = false;
  auto peer_here = [&] {
    const int32_t here = futex::current_cpu() + 1;
    c.slots[rank_].cpu.store(here, std::memory_order_relaxed);
    if (here == 0) return false;  // unknown here: no rank compares equal
    bool any = false;
    for (int r = 0; r < nranks_; ++r) {
      const RankSlot& s = c.slots[r];
      if (r == rank_ || s.arrived_gen.load(std::memory_order_relaxed) == gen + 1 ||
          s.cpu.load(std::memory_order_relaxed) != here)
        continue;
      any = true;
      lower_here = lower_here || r < rank_;
    }
    return any;
  };
  const bool done = futex::spin_then_yield(released, nranks_, peer_here, [] {});
  // Ranks that keep meeting on one core while another is free move apart:
  // the scheduler balances queues, not processes that take turns (2 chips
  // on one vCPU: allocating a domain took 140 us instead of 50 for the
  // first tens of ms after bring-up). Counted per process, over barriers of
  // every communicator (a domain's makes three). Only the higher rank of a
  // pair moves, or the two would chase each other (as kernel_device.h's
  // wait_for_peers, whose count this shares).
  chipmesh::device::detail::note_stacked(static_cast<uint32_t>(nranks_), lower_here, kStackedBarrierWaits);
  return done;
}

void SimComm::collective_barrier(const char* what, const std::function<void()>& on_last) {
  if (failed_) throw CommError(std::string(what) + " on rank " + std::to_string(rank_) +
                               ": communicator failed earlier; destroy it");
  CtrlBlock& c = *ctrl_;
  const uint32_t gen = c.bar_gen.load(std::memory_order_acquire);
  RankSlot& mine = c.slots[rank_];
  mine.cpu.store(futex::current_cpu() + 1, std::memory_order_relaxed);  // a line we write anyway
  mine.arrived_gen.store(gen + 1, std::memory_order_relaxed);
  if (c.bar_arrived.fetch_add(1, std::memory_order_acq_rel) == static_cast<uint32_t>(nranks_ - 1)) {
    // Last arriver: reset the count before releasing, so a fast rank that
    // enters the next barrier counts from zero.
    c.bar_arrived.store(0, std::memory_order_relaxed);
    if (on_last) on_last();
    c.bar_gen.store(gen + 1, std::memory_order_seq_cst);
    if (c.bar_sleepers.load(std::memory_order_seq_cst) != 0) futex::wake(&c.bar_gen);
    return;
  }
  auto released = [&] { return c.bar_gen.load(std::memory_order_acquire) != gen; };
  if (spin_in_barrier(released, gen)) return;
  Deadline deadline(timeout_);
  const Deadline first_check(kFirstLivenessCheck);
  for (;;) {
    if (released()) return;
    // A peer that passed this barrier may exit before we see the release:
    // only a failure observed while the barrier is still closed counts.
    const bool look_at_peers = first_check.expired();
    if (ctrl_->abort_state.load(std::memory_order_acquire) != 0 ||
        (look_at_peers && (!exited_peers().empty() || rendezvous_abandoned()))) {
      if (released()) return;
      check_peers(what);
    }
    if (deadline.expired()) {
      std::string missing;
      for (int r = 0; r < nranks_; ++r)
        if (c.slots[r].arrived_gen.load(std::memory_order_relaxed) != gen + 1)
          missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      failed_ = true;
      throw TimeoutError(std::string(what) + " on rank " + std::to_string(rank_) + " of " +
                         std::to_string(nranks_) + " timed out after " + std::to_string(deadline.budget_ms()) +
                         " ms; ranks not arrived: " + missing);
    }
    // Dekker pairing with the releaser: it stores bar_gen then reads
    // bar_sleepers; we bump bar_sleepers then let the kernel re-read bar_gen.
    c.bar_sleepers.fetch_add(1, std::memory_order_seq_cst);
    const std::chrono::nanoseconds slice =
        look_at_peers ? std::chrono::nanoseconds(kLivenessSlice) : first_check.next_slice(kFirstLivenessCheck);
    futex::wait(&c.bar_gen, gen, deadline.next_slice(slice));
    c.bar_sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void SimComm::barrier() { collective_barrier("comm_barrier"); }

void SimComm::unlink_all_names() noexcept {
  if (token_ == 0) return;
  if (!ctrl_name_.empty()) shm_unlink(ctrl_name_.c_str());
  if (ctrl_) {
    for (int r = 0; r < nranks_; ++r) {
      int32_t pid = ctrl_->slots[r].pid.load(std::memory_order_acquire);
      if (pid != 0) shm_unlink(window_shm_name(pid, token_, r).c_str());
    }
    // Rank 0's object of every window, when no rank adopted one.
    if (int32_t root = ctrl_->slots[0].pid.load(std::memory_order_acquire))
      shm_unlink(segment_shm_name(root, token_).c_str());
  }
  remove_rootinfo_if_ours();
  forget_names();
}

void SimComm::unmap_all() noexcept {
  const bool cached = cache_one_object();  // keeps all_windows_ and window_fd_ mapped and open
  if (context_) device::unregister_region(reinterpret_cast<uint64_t>(context_.get()));
  for (int r = 0; r < static_cast<int>(windows_.size()); ++r) {
    if (windows_[r]) {
      device::unregister_region(reinterpret_cast<uint64_t>(windows_[r]));
      if (!all_windows_) munmap(windows_[r], segment_size_);  // else part of the one mapping below
      windows_[r] = nullptr;
    }
  }
  if (all_windows_) {
    if (!cached) munmap(all_windows_, all_windows_bytes_);
    all_windows_ = nullptr;
    made_object_ = false;
  }
  if (reused_.map) {  // taken from the cache but never mapped as the windows
    munmap(reused_.map, reused_.bytes);
    ::close(reused_.fd);
    reused_ = CachedObject{};
  }
  if (workspace_) {
    device::unregister_region(reinterpret_cast<uint64_t>(workspace_));  // part of my window's mapping
    workspace_ = nullptr;
  }
  if (ctrl_) {
    if (!ctrl_lent_) munmap(ctrl_, sizeof(CtrlBlock));  // a lent one stays its lender's
    ctrl_ = nullptr;
  }
  if (window_fd_ >= 0) {
    if (!cached) ::close(window_fd_);
    window_fd_ = -1;
  }
  if (adopted_fd_ >= 0) {
    ::close(adopted_fd_);
    adopted_fd_ = -1;
  }
  given_fd_ = -1;
  adopted_at_ = false;
  adopted_offset_ = 0;
}

}  // namespace chipmesh::sim

// ---------------------------------------------------------------------------
// C API (comm.h). Exceptions stop here.
// ---------------------------------------------------------------------------
using chipmesh::sim::SimComm;

namespace {

thread_local chipmesh::LastError t_last_error;

SimComm* unwrap(CommHandle h) {
  if (h == nullptr) throw chipmesh::ConfigError("null communicator handle");
  return reinterpret_cast<SimComm*>(h);
}

template <typename T>
void require_out(T* p, const char* what) {
  if (p == nullptr) throw chipmesh::ConfigError(std::string(what) + ": null output pointer");
}

}  // namespace

namespace chipmesh::sim {
LastError& last_error() { return t_last_error; }
}  // namespace chipmesh::sim

#define CHIPMESH_EXPORT extern "C" __attribute__((visibility("default")))

namespace chipmesh::sim {

// The transport table's comm_init: options override the environment.
CommHandle comm_init_with_options(int rank, int nranks, void* /*stream: unused on sim*/, const char* rootinfo_path,
                                  const chipmesh_comm_options_v1_t* options) {
  SimComm* comm = nullptr;
  int rc = t_last_error.guard([&] {
    auto fits = [&](size_t offset, size_t size) { return options && options->struct_size >= offset + size; };
    if (options && options->struct_size < sizeof(uint32_t))
      throw ConfigError("comm_init: options.struct_size=" + std::to_string(options->struct_size) + " is too small");
    CommOptions o;
    const bool has_token = fits(offsetof(chipmesh_comm_options_v1_t, job_token), sizeof(const char*)) &&
                           options->job_token != nullptr;
    o.job = has_token ? std::string(options->job_token) : env::job_token();
    const bool has_timeout =
        fits(offsetof(chipmesh_comm_options_v1_t, timeout_ms), sizeof(uint64_t)) && options->timeout_ms != 0;
    o.timeout = has_timeout ? std::chrono::milliseconds(options->timeout_ms) : env::comm_timeout();
    comm = new SimComm(rank, nranks, rootinfo_path ? std::string(rootinfo_path) : std::string(), std::move(o));
  });
  return rc == CHIPMESH_SUCCESS ? reinterpret_cast<CommHandle>(comm) : nullptr;
}

}  // namespace chipmesh::sim

// The comm.h symbol: every setting from the environment.
CHIPMESH_EXPORT CommHandle comm_init(int rank, int nranks, void* stream, const char* rootinfo_path) {
  return chipmesh::sim::comm_init_with_options(rank, nranks, stream, rootinfo_path, nullptr);
}

CHIPMESH_EXPORT int comm_alloc_windows(CommHandle h, size_t win_size, uint64_t* device_ctx) {
  return t_last_error.guard([&] {
    require_out(device_ctx, "comm_alloc_windows");
    *device_ctx = unwrap(h)->alloc_windows(win_size);
  });
}

CHIPMESH_EXPORT int comm_get_local_window_base(CommHandle h, uint64_t* base) {
  return t_last_error.guard([&] {
    require_out(base, "comm_get_local_window_base");
    *base = unwrap(h)->local_window_base();
  });
}

CHIPMESH_EXPORT int comm_get_window_size(CommHandle h, size_t* size) {
  return t_last_error.guard([&] {
    require_out(size, "comm_get_window_size");
    *size = unwrap(h)->window_size();
  });
}

CHIPMESH_EXPORT int comm_barrier(CommHandle h) {
  return t_last_error.guard([&] { unwrap(h)->barrier(); });
}

namespace chipmesh::sim {
// The transport table's adopt_window (not a comm.h symbol).
int comm_adopt_window(CommHandle h, int fd) {
  return t_last_error.guard([&] { unwrap(h)->adopt_window(fd); });
}

// The transport table's adopt_window_at and adopted_window_stride.
int comm_adopt_window_at(CommHandle h, int fd, uint64_t offset) {
  return t_last_error.guard([&] { unwrap(h)->adopt_window_at(fd, offset); });
}

int comm_adopted_window_stride(size_t win_size, uint64_t* stride) {
  return t_last_error.guard([&] {
    require_out(stride, "comm adopted_window_stride");
    *stride = SimComm::segment_for(win_size);
  });
}

// The transport table's window_fd (not a comm.h symbol).
int comm_window_fd(CommHandle h, int* fd) {
  return t_last_error.guard([&] {
    require_out(fd, "comm window_fd");
    *fd = unwrap(h)->window_fd();
  });
}

// The transport table's window_file (not a comm.h symbol).
int comm_window_file(CommHandle h, int* fd, uint64_t* offset) {
  return t_last_error.guard([&] {
    require_out(fd, "comm window_file");
    require_out(offset, "comm window_file");
    *fd = unwrap(h)->window_file(offset);
  });
}
}  // namespace chipmesh::sim

CHIPMESH_EXPORT int comm_destroy(CommHandle h) {
  return t_last_error.guard([&] { delete unwrap(h); });
}

CHIPMESH_EXPORT const char* comm_last_error(void) { return t_last_error.message(); }

CHIPMESH_EXPORT int comm_last_error_code(void) { return t_last_error.code(); }

// The parent side of each chip's request ring, and the control operations
// (malloc, free, copy_to, copy_from) built on it. A copy of memory in the
// chip's host arena skips the ring: one memcpy by the parent, once the chip
// has finished everything queued before it (the ring's own order).
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <deque>

#include "chipmesh/status.h"
#include "common/process.h"
#include "common/stream_copy.h"
#include "knobs/knobs.h"
#include "logging/log.h"
#include "worker/worker_impl.h"

namespace chipmesh {

using worker::Entry;
using worker::kChunkBytes;
using worker::kRingDepth;
using worker::Op;

ChipError Worker::Impl::chip_error(size_t chip, const std::string& cause, bool chip_logged) const {
  ChipError e(static_cast<int>(chip), cfg.device_ids[chip], pids.empty() ? -1 : pids[chip], cause);
  if (chip_logged)
    CHIPMESH_INFO(WORKER, "%s", e.what());
  else
    CHIPMESH_WARN(WORKER, "%s", e.what());
  return e;
}

void Worker::Impl::require_owner(const char* what) const {
  if (in_forked_copy())
    throw ConfigError(std::string("Worker::") + what + ": this process (pid " + std::to_string(getpid()) +
                      ") is a fork of the one that created the Worker (pid " + std::to_string(owner_pid) +
                      "); the Worker and its chips belong to that process: make a Worker of its own here");
}

void Worker::Impl::require_running(const char* what) const {
  require_owner(what);
  if (state != State::Running)
    throw ConfigError(std::string("Worker::") + what + ": the worker is " +
                      (state == State::Created ? "not initialized (call init() first)" : "closed"));
}

void Worker::Impl::require_usable(int chip, const char* what) const {
  require_running(what);
  if (chip < 0 || static_cast<size_t>(chip) >= n())
    throw ConfigError(std::string("Worker::") + what + ": chip " + std::to_string(chip) + " is outside [0, " +
                      std::to_string(n()) + ")");
  if (watcher->dead(chip)) throw chip_error(chip, "the chip process is gone: " + watcher->cause(chip));
}

bool Worker::Impl::idle(size_t chip) const {
  return chips[chip]->done_seq.load(std::memory_order_acquire) == next_req[chip];
}

void Worker::Impl::abort_running_kernels() {
  for (auto* c : chips) c->abort.store(1, std::memory_order_release);
}

void Worker::Impl::check_stopped_chips() {
  if (state != State::Running || !watcher) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_stop_check) return;
  next_stop_check = now + std::chrono::milliseconds(250);
  stopped_since.resize(n());
  const auto limit = std::chrono::seconds(knobs::integer(knobs::Id::StoppedChipTimeoutS));
  for (size_t c = 0; c < n(); ++c) {
    if (idle(c) || watcher->dead(c) || !process::info(pids[c]).stopped) {
      stopped_since[c].reset();
      continue;
    }
    if (!stopped_since[c]) stopped_since[c] = now;
    if (now - *stopped_since[c] < limit) continue;
    if (!pending_error) {
      pending_error = chip_error(c, "stopped by a signal (process state T) for " + std::to_string(limit.count()) +
                                        " s (CHIPMESH_STOPPED_CHIP_TIMEOUT_S) while busy; killed");
      abort_running_kernels();
    }
    kill(pids[c], SIGKILL);  // the watcher reaps it; waits then see it dead
    stopped_since[c].reset();
  }
}

bool Worker::Impl::inspect(size_t chip) {
  const uint32_t done = chips[chip]->done_seq.load(std::memory_order_acquire);
  for (; inspected[chip] != done; ++inspected[chip]) {
    const Entry& e = chips[chip]->entry(inspected[chip]);
    // allocate_domain / release_domain judge their own entries.
    const bool own = e.op == Op::CommCreate || e.op == Op::CommDestroy;
    if (e.status != 0 && !pending_error && !own) {
      pending_error = chip_error(chip, error_text(chip, inspected[chip]), true);
      abort_running_kernels();
    }
  }
  // A chip that died with requests in flight fails them once; later waits
  // see it as settled (require_usable refuses new work for it).
  if (done != next_req[chip] && watcher->dead(chip)) {
    if (!pending_error) {
      std::string during = request_in_flight(chip, done);
      if (chips[chip]->entry(done).op == Op::Task && watcher->exited_by_itself(chip))
        during += " (a kernel returns its status; exit() in a kernel ends the chip process)";
      pending_error = chip_error(chip, watcher->cause(chip, during));
      abort_running_kernels();
    }
    next_req[chip] = done;
  }
  return inspected[chip] == next_req[chip];
}

bool Worker::Impl::inspect_run_members() {
  bool settled = true;
  for (int c : run_members) settled = inspect(static_cast<size_t>(c)) && settled;
  return settled;
}

std::string Worker::Impl::request_in_flight(size_t chip, uint32_t seq) const {
  const Entry& e = chips[chip]->entry(seq);
  switch (e.op) {
    case Op::Task: {
      // The kernel's name is in this entry unless it is the kernel of the
      // task before; then, unless a later task changed it, the one queued last.
      std::string kernel;
      if (!e.task.same_kernel) {
        const char* name = chips[chip]->extra(seq).kernel;
        kernel.assign(name, strnlen(name, worker::kMaxKernelName));
      } else {
        bool changed = false;
        for (uint32_t s = seq + 1; s != next_req[chip] && !changed; ++s)
          changed = chips[chip]->entry(s).op == Op::Task && !chips[chip]->entry(s).task.same_kernel;
        if (!changed) kernel = queued_kernel[chip].kernel;
      }
      return kernel.empty() ? " while running a task" : " while running kernel '" + kernel + "'";
    }
    case Op::Malloc: return " during malloc";
    case Op::Free: return " during free";
    case Op::CopyTo: return " during a copy to the chip";
    case Op::CopyFrom: return " during a copy from the chip";
    case Op::Shutdown: return " while shutting down";
    case Op::CommCreate: return " while joining a domain's communicator";
    case Op::CommDestroy: return " while leaving a domain's communicator";
    case Op::Flush: return " while flushing outputs to host staging";
    case Op::None: break;
  }
  return "";
}

std::string Worker::Impl::error_text(size_t chip, uint32_t seq) const {
  const char* text = chips[chip]->extra(seq).error;
  return std::string(text, strnlen(text, worker::kErrorBytes));
}

void Worker::Impl::throw_pending() {
  if (!pending_error) return;
  ChipError e = *pending_error;
  pending_error.reset();
  throw e;
}

void Worker::Impl::wake_on_any_completion() {
  for (auto* c : chips) c->wake_parent_at.store(c->done_seq.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
}

bool Worker::Impl::busy_chip_on_this_cpu(const std::vector<int>& watched) {
  const int me = futex::current_cpu();
  header->parent_cpu.store(me, std::memory_order_relaxed);
  for (int c : watched)
    if (busy_on(static_cast<size_t>(c), me)) return true;
  return false;
}

void Worker::Impl::wake_on_chips_here() {
  const int me = futex::current_cpu();
  header->parent_cpu.store(me, std::memory_order_relaxed);
  armed_chips.clear();
  for (size_t c = 0; c < n(); ++c) {
    const bool here = busy_on(c, me);
    chips[c]->wake_parent_at.store(here ? chips[c]->done_seq.load(std::memory_order_relaxed) + 1 : next_req[c] + 1,
                                   std::memory_order_seq_cst);
    if (here) armed_chips.push_back(c);
  }
}

void Worker::Impl::wake_on(size_t chip, uint32_t at) {
  for (size_t c = 0; c < n(); ++c)
    chips[c]->wake_parent_at.store(c == chip ? at : next_req[c] + 1, std::memory_order_seq_cst);
}

Entry& Worker::Impl::acquire_entry(size_t chip, bool chunk) {
  // Entry seq's chunk was last used by seq - kChunkSlots (or earlier): done
  // once fewer than kChunkSlots requests are in flight.
  const uint32_t depth = chunk ? worker::kChunkSlots : kRingDepth;
  // done_seq is a line the chip writes on every completion: a stream reads
  // it (and inspects the completions) once per kInspectEvery requests, or
  // when the completions seen so far do not leave room. (inspected[chip]
  // trails done_seq, so the room it shows is never more than there is.)
  if (next_req[chip] - inspected[chip] >= depth || next_req[chip] % worker::kInspectEvery == 0) {
    auto in_flight = [&] { return next_req[chip] - chips[chip]->done_seq.load(std::memory_order_acquire); };
    if (in_flight() >= depth) {
      // A full ring of tasks (a stream): wait until kRefillBurst entries have
      // drained, so that the parent wakes once per burst, not per completion.
      const uint32_t target = chunk ? depth - 1 : depth - worker::kRefillBurst;
      wait_until([&] { return in_flight() <= target || watcher->dead(chip); }, nullptr,
                 [&] { wake_on(chip, next_req[chip] - target); }, &run_members);
    }
    inspect(chip);
  }
  if (watcher->dead(chip)) throw chip_error(chip, "the chip process is gone: " + watcher->cause(chip));
  return chips[chip]->entry(next_req[chip]);
}

uint32_t Worker::Impl::commit(size_t chip) {
  const uint32_t seq = publish(chip);
  if (chips[chip]->chip_sleeping.load(std::memory_order_seq_cst) != 0) futex::wake(&chips[chip]->req_seq);
  return seq;
}

void Worker::Impl::commit_group(const int* members, size_t count) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not model fences (and GCC warns on them): one
  // seq_cst store per chip instead.
  for (size_t i = 0; i < count; ++i) commit(static_cast<size_t>(members[i]));
#else
  // Every chip's request is published before the one store-load fence that
  // pairs with each sleeping chip's (a seq_cst store per chip would wait for
  // each chip's line in turn).
  for (size_t i = 0; i < count; ++i) publish(static_cast<size_t>(members[i]), std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (size_t i = 0; i < count; ++i) {
    worker::ChipShared& c = *chips[static_cast<size_t>(members[i])];
    if (c.chip_sleeping.load(std::memory_order_relaxed) != 0) futex::wake(&c.req_seq);
  }
#endif
}

void Worker::Impl::begin_run_members() {
  run_members.clear();
  for (size_t c = 0; c < n(); ++c) {
    if (inspected[c] == next_req[c]) continue;
    worked_in_run[c] = run_gen;
    run_members.push_back(static_cast<int>(c));
  }
  header->run_chips.store(static_cast<int32_t>(run_members.size()), std::memory_order_relaxed);
}

uint32_t Worker::Impl::publish(size_t chip, std::memory_order order) {
  worker::ChipShared& c = *chips[chip];
  if (worked_in_run[chip] != run_gen) {
    worked_in_run[chip] = run_gen;
    run_members.push_back(static_cast<int>(chip));  // reserved: n() at most
    // The parent is the only writer: a plain store, no locked add on the dispatch path.
    header->run_chips.store(static_cast<int32_t>(run_members.size()), std::memory_order_relaxed);
  }
  const uint32_t seq = next_req[chip]++;
  // The chip writes the status (and the error text) only when the request
  // fails; cleared only then, so that the line stays shared with the chip.
  if (c.entry(seq).status != 0) c.entry(seq).status = 0;
  c.req_seq.store(next_req[chip], order);
  return seq;
}

void Worker::Impl::wait_done(size_t chip, uint32_t seq) {
  wait_until(
      [&] {
        return static_cast<int32_t>(chips[chip]->done_seq.load(std::memory_order_acquire) - (seq + 1)) >= 0 ||
               watcher->dead(chip);
      },
      nullptr, [&] { wake_on(chip, seq + 1); }, &run_members);
  inspect(chip);
}

void Worker::Impl::wait_idle(size_t chip) {
  if (next_req[chip] != 0) wait_done(chip, next_req[chip] - 1);
}

unsigned char* Worker::Impl::arena_range(size_t chip, uint64_t ptr, size_t nbytes, bool writing) {
  unsigned char* host = arenas ? arenas->find(chip, ptr, nbytes) : nullptr;
  if (!host) host = windows.find(chip, ptr, nbytes, writing);
  if (!host) return nullptr;
  // Requests queued before this copy (a kernel writing or reading the
  // range) complete first, as they would ahead of it in the ring.
  // (A chip that dies meanwhile becomes the pending error: the copy still
  // lands in this process's mapping, which keeps the pages alive.)
  if (!idle(chip) || inspected[chip] != next_req[chip]) wait_idle(chip);
  return host;
}

// ---------------------------------------------------------------------------

uint64_t Worker::malloc(int chip, size_t nbytes) {
  impl_->require_usable(chip, "malloc");
  Entry& e = impl_->acquire_entry(chip);
  e.op = Op::Malloc;
  e.a = nbytes;
  uint32_t seq = impl_->commit(chip);
  impl_->wait_done(chip, seq);
  impl_->throw_pending();
  const Entry& done = impl_->chips[chip]->entry(seq);
  if (impl_->arenas && done.arena_offset != CHIPMESH_NO_ARENA_OFFSET)
    impl_->arenas->add(chip, done.result, nbytes, done.arena_offset);
  if (nbytes > 0) impl_->allocations[static_cast<size_t>(chip)][done.result] = nbytes;
  return done.result;
}

bool Worker::Impl::allocated(size_t chip, uint64_t addr, uint64_t bytes) const {
  const auto& a = allocations[chip];
  auto it = a.upper_bound(addr);
  if (it == a.begin()) return false;
  --it;
  return addr - it->first <= it->second && bytes <= it->second - (addr - it->first);
}

void Worker::free(int chip, uint64_t ptr) {
  impl_->require_usable(chip, "free");
  if (ptr == 0) return;  // as free(NULL) and cudaFree(0): code ported from either frees 0
  impl_->last_collective.valid = false;  // its address checks may have accepted this allocation
  if (impl_->arenas) impl_->arenas->remove(chip, ptr);  // first: no copy may reach it once it is going
  impl_->allocations[static_cast<size_t>(chip)].erase(ptr);
  Entry& e = impl_->acquire_entry(chip);
  e.op = Op::Free;
  e.a = ptr;
  impl_->wait_done(chip, impl_->commit(chip));
  impl_->throw_pending();
}

void Worker::copy_to(int chip, uint64_t dst, const void* src, size_t nbytes) {
  impl_->require_usable(chip, "copy_to");
  if (nbytes > 0 && src == nullptr) throw ConfigError("Worker::copy_to: null source for " + std::to_string(nbytes) + " bytes");
  const auto* in = static_cast<const unsigned char*>(src);
  if (nbytes > 0) {
    if (unsigned char* to = impl_->arena_range(chip, dst, nbytes, true)) {
      copy_bulk(to, in, nbytes);
      impl_->throw_pending();  // a failure of a request queued before this copy
      return;
    }
  }
  // Fill chunk k+1 while the chip drains chunk k.
  for (size_t off = 0; off < nbytes; off += kChunkBytes) {
    const size_t len = std::min(kChunkBytes, nbytes - off);
    Entry& e = impl_->acquire_entry(chip, true);
    std::memcpy(impl_->chips[chip]->chunk(impl_->next_req[chip]), in + off, len);
    e.op = Op::CopyTo;
    e.a = dst + off;
    e.b = len;
    impl_->commit(chip);
  }
  impl_->wait_idle(chip);
  impl_->throw_pending();
}

void Worker::copy_from(int chip, void* dst, uint64_t src, size_t nbytes) {
  impl_->require_usable(chip, "copy_from");
  if (nbytes > 0 && dst == nullptr) throw ConfigError("Worker::copy_from: null destination for " + std::to_string(nbytes) + " bytes");
  auto* out = static_cast<unsigned char*>(dst);
  if (nbytes > 0) {
    if (const unsigned char* from = impl_->arena_range(chip, src, nbytes, false)) {
      copy_bulk(out, from, nbytes);
      impl_->throw_pending();
      return;
    }
  }
  struct InFlight {
    uint32_t seq;
    size_t off, len;
  };
  std::deque<InFlight> inflight;
  size_t posted = 0;
  while (posted < nbytes || !inflight.empty()) {
    // Keep the ring full: the chip copies chunk k+1 while we drain chunk k.
    while (posted < nbytes && inflight.size() < worker::kChunkSlots) {
      const size_t len = std::min(kChunkBytes, nbytes - posted);
      Entry& e = impl_->acquire_entry(chip, true);
      e.op = Op::CopyFrom;
      e.a = src + posted;
      e.b = len;
      inflight.push_back({impl_->commit(chip), posted, len});
      posted += len;
    }
    InFlight f = inflight.front();
    inflight.pop_front();
    impl_->wait_done(chip, f.seq);
    if (impl_->pending_error) {
      impl_->wait_idle(chip);
      impl_->throw_pending();
    }
    std::memcpy(out + f.off, impl_->chips[chip]->chunk(f.seq), f.len);
  }
  impl_->throw_pending();
}

}  // namespace chipmesh

// Communication domains (docs/domains.md): allocate_domain resets a
// rendezvous slot of the shared region and posts one CommCreate per member,
// all-or-nothing like a task group (so every chip sees the domain operations
// and the collectives in one global order, whatever domains overlap);
// release_domain posts CommDestroy. The buffers are carved on the parent
// side, as bring-up carves them on the chip.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "chipmesh/worker.h"
#include "logging/log.h"
#include "worker/worker_impl.h"

namespace chipmesh {

using worker::Entry;
using worker::Op;

// The buffers' offsets in the window, in order, no padding; ConfigError
// naming the buffer for anything bring-up would refuse, for host staging
// and for a window too small.
std::vector<uint64_t> carve_domain_offsets(const std::string& what, const std::vector<ChipBufferSpec>& buffers,
                                           size_t window_size) {
  std::set<std::string> names;
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (const auto& b : buffers) {
    if (b.name.empty()) throw ConfigError(what + ": a buffer has an empty name");
    if (!names.insert(b.name).second) throw ConfigError(what + ": buffer '" + b.name + "' is declared twice");
    if (b.placement != "window")
      throw ConfigError(what + ": buffer '" + b.name + "' has placement '" + b.placement +
                        "'; only \"window\" exists");
    if (b.load_from_host || b.store_to_host)
      throw ConfigError(what + ": buffer '" + b.name + "' asks for " +
                        (b.load_from_host ? "load_from_host" : "store_to_host") +
                        ", which only bring-up (chip_bootstrap_configs) supports; copy with Worker::copy_to / "
                        "copy_from instead");
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(b.count), static_cast<uint64_t>(dtype_size(b.dtype)), &bytes) ||
        bytes != b.nbytes)
      throw ConfigError(what + ": buffer '" + b.name + "' has nbytes=" + std::to_string(b.nbytes) + " but count=" +
                        std::to_string(b.count) + " of " + std::string(dtype_name(b.dtype)) + " needs " +
                        std::to_string(bytes));
    if (b.nbytes > window_size || offset > window_size - b.nbytes)
      throw ConfigError(what + ": buffer '" + b.name + "' (nbytes=" + std::to_string(b.nbytes) + ") at offset " +
                        std::to_string(offset) + " overflows window size " + std::to_string(window_size));
    offsets.push_back(offset);
    offset += b.nbytes;
  }
  return offsets;
}


uint32_t Worker::Impl::lend_control() {
  for (uint32_t c = 0; c < rendezvous::MemoryTable::kControls; ++c)
    if (!(lent_controls >> c & 1u)) {
      lent_controls |= 1u << c;
      return c;
    }
  return rendezvous::MemoryTable::kNoControl;
}

void Worker::Impl::take_back_control(uint32_t control) {
  if (control != rendezvous::MemoryTable::kNoControl) lent_controls &= ~(1u << control);
}

namespace {
uint32_t slot_of(uint64_t generation) { return static_cast<uint32_t>(generation % rendezvous::MemoryTable::kSlots); }
}  // namespace

std::string Worker::Impl::fresh_rendezvous(uint32_t control, uint64_t* generation_out) {
  const uint64_t generation = rendezvous_generation++;
  if (generation_out) *generation_out = generation;
  return header->rendezvous.reset(slot_of(generation), generation, control);
}

void Worker::Impl::abandon_rendezvous(uint64_t generation) {
  header->rendezvous.abandon(slot_of(generation), generation);
}

std::optional<ChipError> Worker::Impl::destroy_domain(const std::string& name, const std::vector<int>& members,
                                                      const std::vector<uint64_t>& handles, bool* settled) {
  std::optional<ChipError> failure;
  size_t to_destroy = 0, gone = 0;  // members with a handle; of them, destroyed or dead
  for (size_t r = 0; r < members.size(); ++r)
    if (handles[r] != 0) ++to_destroy, gone += watcher->dead(members[r]) ? 1 : 0;
  // All-or-nothing like a group: first an entry on every live member.
  std::vector<std::pair<int, Entry*>> posted;
  for (size_t r = 0; r < members.size(); ++r) {
    const int c = members[r];
    if (handles[r] == 0 || watcher->dead(c)) continue;
    try {
      posted.emplace_back(c, &acquire_entry(c));
    } catch (const ChipError& e) {
      if (!failure) failure = e;
    }
  }
  std::vector<std::pair<int, uint32_t>> seqs;
  for (auto [c, e] : posted) {
    const size_t r = static_cast<size_t>(std::find(members.begin(), members.end(), c) - members.begin());
    e->op = Op::CommDestroy;
    e->a = handles[r];
  }
  for (auto [c, e] : posted) seqs.emplace_back(c, commit(c));
  auto done = [&](int c, uint32_t seq) {
    return static_cast<int32_t>(chips[c]->done_seq.load(std::memory_order_acquire) - (seq + 1)) >= 0;
  };
  wait_until(
      [&] {
        inspect_run_members();  // a kernel ahead of a destroy, waiting on a dead chip, is aborted
        for (auto [c, seq] : seqs)
          if (!done(c, seq) && !watcher->dead(c)) return false;
        return true;
      },
      nullptr);
  for (auto [c, seq] : seqs) {
    inspect(c);
    if (!done(c, seq)) {
      if (!failure || !watcher->dead(failure->chip()))
        failure = chip_error(c, "died during release_domain '" + name + "': " + watcher->cause(c));
      continue;
    }
    const Entry& e = chips[c]->entry(seq);
    if (e.status != 0 && !failure)
      failure = chip_error(c, "release_domain '" + name + "': " + error_text(c, seq), true);
  }
  // Every posted member has completed its destroy or died by now.
  if (settled) *settled = gone + seqs.size() == to_destroy;
  return failure;
}

void Worker::Impl::release_domain(const std::string& name) {
  auto it = domains.find(name);
  if (it == domains.end()) return;
  LiveDomain d = std::move(it->second);
  domains.erase(it);
  d.state->released = true;
  // No copy reaches the windows once they are going.
  for (const auto& [chip, ctx] : d.state->contexts) windows.remove(static_cast<size_t>(chip), ctx.local_window_base);
  bool settled = false;
  std::optional<ChipError> failure = destroy_domain(name, d.state->chips, d.handles, &settled);
  if (settled) take_back_control(d.control);  // else never lent again: a member may still use it
  CHIPMESH_INFO(WORKER, "released domain '%s' (allocation %llu)%s", name.c_str(),
                static_cast<unsigned long long>(d.state->allocation_id), failure ? " with a failure" : "");
  if (failure) throw *failure;
}

void Worker::Impl::release_all_domains(bool throwing) {
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [name, d] : domains) order.emplace_back(d.state->allocation_id, name);
  std::sort(order.begin(), order.end());
  std::optional<ChipError> failure;
  for (const auto& [id, name] : order) {
    try {
      release_domain(name);
    } catch (const ChipError& e) {
      if (!failure) failure = e;
    }
  }
  if (failure && throwing) throw *failure;
}

CommDomain Orchestrator::allocate_domain(const std::string& name, const std::vector<int>& members, size_t window_size,
                                         const std::vector<ChipBufferSpec>& buffers) {
  Worker::Impl& m = *worker_.impl_;
  m.require_running("allocate_domain");
  // In a cluster the chips are global chip numbers (cluster_domains.cpp).
  return m.cluster ? m.allocate_cluster_domain(name, members, window_size, buffers)
                   : m.allocate_local_domain(name, members, window_size, buffers);
}

CommDomain Worker::Impl::allocate_local_domain(const std::string& name, const std::vector<int>& members,
                                               size_t window_size, const std::vector<ChipBufferSpec>& buffers) {
  Worker::Impl& m = *this;
  if (name.empty()) throw ConfigError("Orchestrator::allocate_domain: the domain name is empty");
  const std::string what = "Orchestrator::allocate_domain '" + name + "'";
  if (auto it = m.domains.find(name); it != m.domains.end())
    throw ConfigError(what + ": a domain named '" + name + "' is live (allocation " +
                      std::to_string(it->second.state->allocation_id) + "); release it first");
  if (name == "world" && m.world) throw ConfigError(what + ": the name 'world' is the bring-up communicator's");
  if (members.empty()) throw ConfigError(what + ": the chip list is empty");
  std::set<int> seen;
  for (int c : members) {
    m.require_usable(c, "allocate_domain");
    if (!seen.insert(c).second) throw ConfigError(what + ": chip " + std::to_string(c) + " is listed twice");
  }
  if (window_size == 0) throw ConfigError(what + ": window_size must be > 0");
  const std::vector<uint64_t> offsets = carve_domain_offsets(what, buffers, window_size);
  m.throw_pending();  // nothing is started after a failure

  // The members meet in a slot of the shared region, not in a file: no
  // directory, no inotify, nothing to leave behind (memory_store.h).
  // A control area for the communicator too, while one is free (the
  // platform needs no control object of its own then).
  struct Lent {
    Worker::Impl& m;
    uint32_t control;
    bool posted = false;  // from then on only a settled destroy gives it back
    ~Lent() {
      if (!posted) m.take_back_control(control);
    }
  } lent_control{m, m.lend_control()};
  uint64_t generation = 0;
  const std::string rootinfo = m.fresh_rendezvous(lent_control.control, &generation);
  // prefix, 16 hex digits, a slot, a 64-bit generation, two colons
  static_assert(worker::kMaxLibraryPath > sizeof(rendezvous::kMemoryAddressPrefix) + 16 + 10 + 20 + 2,
                "a memory store's address fits a CommDesc");
  const auto timeout_ms = static_cast<uint64_t>(std::max<int64_t>(m.cfg.bootstrap_timeout.count(), 1));
  const size_t n = members.size();
  std::vector<Entry*> entries;
  for (int c : members) entries.push_back(&m.acquire_entry(c));
  m.throw_pending();
  std::vector<uint32_t> seqs;
  for (size_t r = 0; r < n; ++r) {
    entries[r]->op = Op::CommCreate;
    worker::CommDesc& cd = m.acquired_extra(static_cast<size_t>(members[r])).comm;
    std::memset(&cd, 0, sizeof(cd));
    std::snprintf(cd.rootinfo, sizeof(cd.rootinfo), "%s", rootinfo.c_str());
    cd.rank = static_cast<int32_t>(r);
    cd.nranks = static_cast<int32_t>(n);
    cd.window_size = window_size;
    cd.timeout_ms = timeout_ms;
  }
  lent_control.posted = true;
  for (int c : members) seqs.push_back(m.commit(c));

  auto done = [&](size_t r) {
    return static_cast<int32_t>(m.chips[members[r]]->done_seq.load(std::memory_order_acquire) - (seqs[r] + 1)) >= 0;
  };
  auto failed = [&](size_t r) { return m.chips[members[r]]->entry(seqs[r]).status != 0; };
  // Every member settles: joined, failed or died. Once one has died or
  // failed, the others may wait for it in the platform's rendezvous, where
  // one that never joined has no pid to watch: the slot is abandoned, so
  // they fail within the platform's liveness slice instead of at
  // bootstrap_timeout.
  bool abandoned = false;
  m.wait_long([&] {
    m.inspect_run_members();  // a kernel ahead of a CommCreate, waiting on a dead chip, is aborted
    bool settled = true;
    for (size_t r = 0; r < n; ++r) {
      const bool dead = m.watcher->dead(members[r]);
      if (!abandoned && (dead || (done(r) && failed(r)))) {
        abandoned = true;
        m.abandon_rendezvous(generation);
      }
      settled = settled && (done(r) || dead);
    }
    return settled;
  });
  std::vector<uint64_t> handles(n, 0);
  std::vector<std::pair<int32_t, uint64_t>> lent(n, {worker::kNoWindowFd, 0});  // fd, offset in its file
  std::optional<ChipError> failure;
  bool own_failure = false;  // `failure` is a member's own, not the abandonment's
  int dead_member = -1;
  auto s = std::make_shared<CommDomain::State>();
  for (size_t r = 0; r < n; ++r) {
    const int c = members[r];
    m.inspect(c);
    if (!done(r)) {
      if (dead_member < 0) dead_member = c;
      continue;
    }
    const worker::CommDesc& cd = m.chips[c]->extra(seqs[r]).comm;
    const Entry& e = m.chips[c]->entry(seqs[r]);
    if (e.status != 0) {
      // The first member in rank order that failed on its own; a failure
      // the abandoned rendezvous caused only when there is none.
      const std::string text = m.error_text(c, seqs[r]);
      const bool own = text.find(rendezvous::kAbandonedMark) == std::string::npos;
      if (!failure || (own && !own_failure)) failure = m.chip_error(c, what + ": " + text, true);
      own_failure = own_failure || own;
      continue;
    }
    handles[r] = cd.handle;
    lent[r] = {cd.window_fd, cd.window_offset};
    DomainContext ctx{c, static_cast<int>(r), static_cast<int>(n), cd.device_ctx, cd.local_window_base,
                      cd.actual_window_size, {}};
    for (size_t b = 0; b < buffers.size(); ++b) {
      ctx.buffer_ptrs[buffers[b].name] = cd.local_window_base + offsets[b];
      s->buffer_bytes[c][buffers[b].name] = buffers[b].nbytes;
    }
    s->contexts[c] = std::move(ctx);
  }
  if (dead_member >= 0 || failure) {
    // The death is the cause; the others' failures (a peer that never came)
    // follow from it.
    if (dead_member >= 0) {
      if (m.pending_error && m.pending_error->chip() == dead_member) m.pending_error.reset();
      failure = m.chip_error(static_cast<size_t>(dead_member),
                             "died during " + what + ": " + m.watcher->cause(static_cast<size_t>(dead_member)));
    }
    // What the other members made goes; a failure there adds nothing.
    bool settled = false;
    (void)m.destroy_domain(name, members, handles, &settled);
    if (settled) m.take_back_control(lent_control.control);
    throw *failure;
  }
  s->owner = &m;
  s->name = name;
  s->chips = members;
  s->allocation_id = m.next_allocation_id++;
  s->free_offset = buffers.empty() ? 0 : offsets.back() + buffers.back().nbytes;
  m.domains[name] = Worker::Impl::LiveDomain{s, handles, lent_control.control};
  for (size_t r = 0; r < n; ++r) {
    const DomainContext& ctx = s->contexts.at(members[r]);
    m.windows.add(static_cast<size_t>(members[r]), ctx.local_window_base, ctx.actual_window_size,
                  m.watcher->pidfd(static_cast<size_t>(members[r])), lent[r].first, lent[r].second);
  }
  CHIPMESH_INFO(WORKER, "allocated domain '%s' (allocation %llu) over %zu chips, window %zu bytes", name.c_str(),
                static_cast<unsigned long long>(s->allocation_id), n, window_size);
  return CommDomain(std::move(s));
}

void Orchestrator::release_domain(CommDomain& d) {
  Worker::Impl& m = *worker_.impl_;
  if (!d.state()) throw ConfigError("Orchestrator::release_domain: the domain handle refers to no domain");
  if (d.state()->owner != &m)
    throw ConfigError("Orchestrator::release_domain '" + d.state()->name + "': the domain belongs to another worker");
  if (d.released()) return;
  if (d.allocation_id() == 0)
    throw ConfigError("Orchestrator::release_domain: 'world' is the bring-up communicator; close() ends it");
  auto it = m.domains.find(d.name());
  if (it == m.domains.end() || it->second.state != d.state()) {
    d.state()->released = true;  // not live under this name: nothing to destroy
    return;
  }
  m.release_domain(d.name());
}

}  // namespace chipmesh

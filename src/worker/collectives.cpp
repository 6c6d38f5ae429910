// The typed collectives of the Orchestrator: check every argument against
// the domain, build one task of the built-in kernels per member
// (chipmesh/collectives.h), dispatch them all-or-nothing with submit_group.
#include "chipmesh/collectives.h"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "chipmesh/worker.h"
#include "worker/across_hosts.h"
#include "worker/worker_impl.h"

namespace chipmesh {
namespace {

struct Checked {
  size_t es = 0;
  uint64_t in_bytes = 0;
  uint64_t out_bytes = 0;
};

std::string where(const char* what, const CommDomain& d) {
  return std::string("Orchestrator::") + what + " on domain '" + d.name() + "'";
}

// The handle refers to a live domain of this worker.
void check_live(const void* owner, const CommDomain& d, const char* what) {
  if (!d.state()) throw ConfigError(std::string("Orchestrator::") + what + ": the domain handle refers to no domain");
  if (d.state()->owner != owner) throw ConfigError(where(what, d) + ": the domain belongs to another worker");
  if (d.released()) throw ConfigError(where(what, d) + ": the domain was released");
}

// (The domain was found live by no_local_members.) The dtype (and op) are
// supported; the vectors have one address per local member; the counts'
// bytes do not overflow (block multipliers count every member of every host).
Checked check_common(const CommDomain& d, const char* what, size_t nin, size_t nout, uint64_t in_elems_per_count,
                     uint64_t out_elems_per_count, uint64_t count, DataType dtype, bool reduces, const ReduceOp* op) {
  Checked c;
  const size_t n = d.chips().size();
  if (nin != n || nout != n)
    throw ConfigError(where(what, d) + ": " + std::to_string(nin) + " input and " + std::to_string(nout) +
                      " output addresses for a domain of " + std::to_string(n) +
                      (d.spans_hosts() ? " chips on this host (one per local member)" : " chips (one per domain rank)"));
  c.es = dtype_size(dtype);  // ConfigError outside the enum
  if (reduces && !reducible(dtype))
    throw ConfigError(where(what, d) + ": dtype " + std::string(dtype_name(dtype)) +
                      " is not supported by the reducing collectives (float32, float16, bfloat16, float64, int8, "
                      "uint8, int32, int64)");
  if (op) allreduce_kernel::op(*op);  // ConfigError outside the enum
  uint64_t in_elems = 0, out_elems = 0;
  if (__builtin_mul_overflow(count, in_elems_per_count, &in_elems) ||
      __builtin_mul_overflow(count, out_elems_per_count, &out_elems) ||
      __builtin_mul_overflow(in_elems, c.es, &c.in_bytes) || __builtin_mul_overflow(out_elems, c.es, &c.out_bytes))
    throw ConfigError(where(what, d) + ": a count of " + std::to_string(count) + " " +
                      std::string(dtype_name(dtype)) + " elements overflows 64-bit byte sizes");
  return c;
}

// Where a call's data lies: every address inside its member's window
// (the kernels work there directly), or some in ordinary device memory
// (Worker::malloc): then every member moves its data through its window's
// staging area [stage_off, stage_off + chunk * blocks * es) in chunks
// (chipmesh_staged; kernels/staged.cpp).
struct Placement {
  bool staged = false;
  uint64_t stage_off = 0;
  uint64_t chunk = 0;  // elements per block
};

// Whether [addr, addr + bytes) of a chip lies in one Worker::malloc allocation.
using Allocated = std::function<bool(int chip, uint64_t addr, uint64_t bytes)>;

// The Worker's record of its allocations (a template: Worker::Impl is private
// to Worker and friends, so it is deduced, not named).
template <typename Impl>
Allocated allocations_of(const Impl* m) {
  return [m](int chip, uint64_t addr, uint64_t bytes) { return m->allocated(static_cast<size_t>(chip), addr, bytes); };
}

// The Worker's views of the chips' lent windows (deduced like allocations_of).
template <typename Impl>
across_hosts::View views_of(Impl* m) {
  return [m](int chip, uint64_t addr, size_t bytes) { return m->windows.find(static_cast<size_t>(chip), addr, bytes); };
}

bool in_window(const DomainContext& ctx, uint64_t addr, uint64_t bytes) {
  const uint64_t base = ctx.local_window_base, size = ctx.actual_window_size;
  return addr >= base && bytes <= size && addr - base <= size - bytes;
}

std::string range(uint64_t addr, uint64_t bytes) {
  return "[" + std::to_string(addr) + ", +" + std::to_string(bytes) + " bytes)";
}

// One used address: inside the member's window or inside one Worker::malloc
// allocation of its chip (then the call is staged), and aligned.
void check_addr(const Allocated& allocated, const CommDomain& d, const char* what, const char* which, int rank,
                uint64_t addr, uint64_t bytes, size_t es, Placement& p) {
  const DomainContext& ctx = d.context(d.chips()[static_cast<size_t>(rank)]);
  if (!in_window(ctx, addr, bytes)) {
    if (!allocated(ctx.chip, addr, bytes))
      throw ConfigError(where(what, d) + ": " + which + " of rank " + std::to_string(rank) + " (chip " +
                        std::to_string(ctx.chip) + ") " + range(addr, bytes) + " is neither inside its window " +
                        range(ctx.local_window_base, ctx.actual_window_size) +
                        " nor inside one allocation Worker::malloc returned for chip " + std::to_string(ctx.chip));
    p.staged = true;
  }
  if (addr % es != 0)
    throw ConfigError(where(what, d) + ": " + which + " of rank " + std::to_string(rank) + " (" +
                      std::to_string(addr) + ") is not aligned to the " + std::to_string(es) + "-byte element size");
}

// Checks every used address (`in_root_only`: only the root's input is read,
// `out_root_only`: only its output written) and the overlap of a member's
// input and output (`own_block`: the NCCL in-place form of allgather (in ==
// out + rank * count) or reduce_scatter (out == in + rank * count) is
// allowed); picks the placement. Staged: the area starts after the domain's
// named buffers (64-byte aligned) and takes the rest of the smallest window;
// `blocks` blocks of one chunk must fit it, and no used address in a window
// may reach into it.
enum class OwnBlock { kNone, kInAtOut, kOutAtIn };
Placement check_addrs(const Allocated& m, const CommDomain& d, const char* what, const Checked& c,
                      const std::vector<uint64_t>& in, const std::vector<uint64_t>& out, bool in_root_only,
                      bool out_root_only, int root, uint64_t count, uint64_t blocks, OwnBlock own_block,
                      bool plan_staging = true) {
  Placement p;
  for (size_t r = 0; r < in.size(); ++r) {
    const int rank = static_cast<int>(r);
    const bool in_used = c.in_bytes && (!in_root_only || rank == root);
    const bool out_used = c.out_bytes && (!out_root_only || rank == root);
    if (in_used) check_addr(m, d, what, "input", rank, in[r], c.in_bytes, c.es, p);
    if (out_used) check_addr(m, d, what, "output", rank, out[r], c.out_bytes, c.es, p);
    if (!in_used || !out_used || in[r] == out[r]) continue;
    const uint64_t block = count * c.es * static_cast<uint64_t>(d.global_rank_of(d.chips()[r]));
    if ((own_block == OwnBlock::kInAtOut && in[r] == out[r] + block) ||
        (own_block == OwnBlock::kOutAtIn && out[r] == in[r] + block))
      continue;
    if (in[r] < out[r] + c.out_bytes && out[r] < in[r] + c.in_bytes)
      throw ConfigError(where(what, d) + ": rank " + std::to_string(r) + "'s input " + range(in[r], c.in_bytes) +
                        " and output " + range(out[r], c.out_bytes) + " overlap without being in place");
  }
  if (!plan_staging) return p;  // across hosts the Worker moves the data
  if (c.in_bytes == 0 && c.out_bytes == 0) {
    // Nothing moves; the staged form (which returns at once) takes any address.
    for (size_t r = 0; r < in.size(); ++r) {
      const DomainContext& ctx = d.context(d.chips()[r]);
      if (!in_window(ctx, in[r], 0) || !in_window(ctx, out[r], 0)) p = Placement{true, 0, 1};
    }
    return p;
  }
  if (!p.staged) return p;
  uint64_t size = UINT64_MAX;
  for (int chip : d.chips()) size = std::min<uint64_t>(size, d.context(chip).actual_window_size);
  const uint64_t off = (d.state()->free_offset + 63) / 64 * 64;
  const uint64_t per_chunk = blocks * c.es;  // bytes of one element of every block
  if (off >= size || (size - off) / per_chunk == 0)
    throw ConfigError(where(what, d) + ": data outside the windows moves through the window bytes after the " +
                      "domain's buffers, [" + std::to_string(off) + ", " + std::to_string(size) +
                      "), which cannot hold one element of each of its " + std::to_string(blocks) + " blocks (" +
                      std::to_string(per_chunk) + " bytes)");
  uint64_t chunk = std::min<uint64_t>((size - off) / per_chunk, std::max<uint64_t>(count, 1));
  const uint64_t line = 64 / c.es;  // whole cache lines per block when there is room
  if (chunk > line) chunk -= chunk % line;
  p.stage_off = off;
  p.chunk = chunk;
  for (size_t r = 0; r < in.size(); ++r) {
    const DomainContext& ctx = d.context(d.chips()[r]);
    const uint64_t area = ctx.local_window_base + off, area_bytes = chunk * per_chunk;
    const int rank = static_cast<int>(r);
    const std::pair<uint64_t, uint64_t> used[] = {{in[r], in_root_only && rank != root ? 0 : c.in_bytes},
                                                  {out[r], out_root_only && rank != root ? 0 : c.out_bytes}};
    for (const auto& [addr, bytes] : used)
      if (bytes && in_window(ctx, addr, bytes) && addr < area + area_bytes && area < addr + bytes)
        throw ConfigError(where(what, d) + ": rank " + std::to_string(r) + "'s buffer " + range(addr, bytes) +
                          " reaches into the window's staging area " + range(area, area_bytes) +
                          " that the data outside the windows moves through");
  }
  return p;
}

// `root` is a (global) domain rank; returns its local rank, -1 when it is
// on another host.
int check_root(const CommDomain& d, const char* what, int root) {
  if (root < 0 || root >= d.global_size())
    throw ConfigError(where(what, d) + ": root " + std::to_string(root) + " is outside the domain of " +
                      std::to_string(d.global_size()) + " chips");
  for (int chip : d.chips())
    if (d.global_rank_of(chip) == root) return d.rank_of(chip);
  return -1;
}

// In a cluster, a host without members of `d` has nothing to do.
bool no_local_members(const void* owner, const CommDomain& d, const char* what) {
  check_live(owner, d, what);
  return d.chips().empty();
}

// The address of buffer `name` of every member, into `v` (the worker's
// Worker::Impl::NamedBuffer: no allocation per call; the same name on the
// same allocation of the domain is not looked up again).
template <typename Named>
const std::vector<uint64_t>& resolve(const CommDomain& d, const char* what, const std::string& name, Named& v) {
  if (v.domain == d.state().get() && v.domain && v.allocation_id == d.allocation_id() && v.name == name) return v.ptrs;
  v.domain = nullptr;
  v.ptrs.clear();
  v.bytes.clear();
  v.min_bytes = UINT64_MAX;
  for (int chip : d.chips()) {
    const DomainContext& ctx = d.context(chip);
    auto it = ctx.buffer_ptrs.find(name);
    if (it == ctx.buffer_ptrs.end())
      throw ConfigError(where(what, d) + ": chip " + std::to_string(chip) + " (rank " +
                        std::to_string(ctx.domain_rank) + ") has no buffer '" + name + "'");
    v.ptrs.push_back(it->second);
    uint64_t bytes = UINT64_MAX;  // unknown: only the address checks apply
    if (auto sizes = d.state()->buffer_bytes.find(chip); sizes != d.state()->buffer_bytes.end())
      if (auto b = sizes->second.find(name); b != sizes->second.end()) bytes = b->second;
    v.bytes.push_back(bytes);
    v.min_bytes = std::min(v.min_bytes, bytes);
  }
  v.name = name;
  v.allocation_id = d.allocation_id();
  v.domain = d.state().get();
  return v.ptrs;
}

// What a collective reads of its input on each member and writes of its
// output: `count` elements in `blocks` blocks; `root_only` for broadcast's
// input and reduce's output, significant on the root alone.
struct BufferUse {
  uint64_t count;
  uint64_t blocks = 1;
  bool root_only = false;
};

// The bytes `use` covers of elements of `es` bytes; 0 when that overflows
// (the address overloads name the overflow).
uint64_t bytes_of(BufferUse use, uint64_t es) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(use.count, use.blocks, &bytes) || __builtin_mul_overflow(bytes, es, &bytes)) return 0;
  return bytes;
}

// A named buffer holds what the collective uses of it on every member. (The
// address overloads can only check that the range lies in the chip's
// memory: a count too large for a buffer ran on into the next one.)
template <typename Named>
void check_named_bytes(const CommDomain& d, const char* what, const char* role, const Named& v, BufferUse use,
                       DataType dtype, int root) {
  const uint64_t bytes = bytes_of(use, dtype_size(dtype));
  if (bytes <= v.min_bytes) return;  // every member's holds it
  for (size_t r = 0; r < v.bytes.size(); ++r) {
    if (bytes <= v.bytes[r]) continue;
    const int chip = d.chips()[r];
    if (use.root_only && d.global_rank_of(chip) != root) continue;
    throw ConfigError(where(what, d) + ": the " + role + " '" + v.name + "' of chip " + std::to_string(chip) +
                      " (rank " + std::to_string(d.global_rank_of(chip)) + ") holds " + std::to_string(v.bytes[r]) +
                      " bytes, and " + std::to_string(use.count) +
                      (use.blocks > 1 ? " x " + std::to_string(use.blocks) : std::string()) + " " +
                      std::string(dtype_name(dtype)) + " elements need " + std::to_string(bytes));
  }
}

// Buffers `in` and `out` of every member, into the worker's scratch; the
// checks of the address overload that follows will check the counts
// `in_use` / `out_use` against them (NamedUse, run_named_check).
struct Resolved {
  const std::vector<uint64_t>& in;
  const std::vector<uint64_t>& out;
};
template <typename Impl>  // Worker::Impl, which only Worker's friends may name
Resolved resolve_both(Impl& m, const CommDomain& d, const char* what, const std::string& in, const std::string& out,
                      BufferUse in_use, BufferUse out_use, DataType dtype, int root = 0) {
  try {
    resolve(d, what, in, m.named_in);
    resolve(d, what, out, m.named_out);
  } catch (const ConfigError& e) {
    if (!(d.state() && d.state()->spans_hosts)) throw;
    // Across hosts (a name one host lacks) the error must come out of the
    // settled step, as the checks' do: the other hosts wait on it.
    for (auto* v : {&m.named_in, &m.named_out}) {
      v->domain = nullptr;
      v->ptrs.assign(d.chips().size(), 0);
    }
    m.named_use.pending = true;
    m.named_use.error = e.what();
    return {m.named_in.ptrs, m.named_out.ptrs};
  }
  // Every member's buffers hold it (the call in a loop): nothing left to check.
  uint64_t es = 0;
  try {
    es = dtype_size(dtype);
  } catch (const ConfigError&) {
    return {m.named_in.ptrs, m.named_out.ptrs};  // the address overload names it (across hosts, in the settled step)
  }
  if (bytes_of(in_use, es) <= m.named_in.min_bytes && bytes_of(out_use, es) <= m.named_out.min_bytes)
    return {m.named_in.ptrs, m.named_out.ptrs};
  auto& u = m.named_use;
  u.pending = true;
  u.in_count = in_use.count, u.in_blocks = in_use.blocks, u.in_root_only = in_use.root_only;
  u.out_count = out_use.count, u.out_blocks = out_use.blocks, u.out_root_only = out_use.root_only;
  u.dtype = dtype;
  u.root = root;
  return {m.named_in.ptrs, m.named_out.ptrs};
}

// Ends a call by name however its address overload returns.
template <typename Impl>
struct NamedCall {
  Impl& m;
  ~NamedCall() {
    m.named_use.pending = false;
    m.named_use.error.clear();
  }
};

// First of an address overload's checks: those of the call by name that
// led to it, if any (once). On one host before the repeat of the last call
// (which skips the checks); across hosts inside the settled step.
template <typename Impl>
void run_named_check(Impl& m, const CommDomain& d, const char* what) {
  if (!m.named_use.pending) return;
  m.named_use.pending = false;
  if (!m.named_use.error.empty()) {
    const std::string error = std::move(m.named_use.error);
    m.named_use.error.clear();
    throw ConfigError(error);
  }
  const auto& u = m.named_use;
  check_named_bytes(d, what, "input", m.named_in, {u.in_count, u.in_blocks, u.in_root_only}, u.dtype, u.root);
  check_named_bytes(d, what, "output", m.named_out, {u.out_count, u.out_blocks, u.out_root_only}, u.dtype, u.root);
}

// A typed collective as Worker::Impl::LastCollective records it: its key
// and addresses (what its checks and tasks depend on, apart from the
// allocations: Worker::free clears the record). `what` is the collective's
// name, a literal.
struct Call {
  const CommDomain& d;
  worker::CollectiveKey key;
  const std::vector<uint64_t>& in;
  const std::vector<uint64_t>& out;
  Call(const char* what, const CommDomain& dom, const std::vector<uint64_t>& i, const std::vector<uint64_t>& o,
       uint64_t count, DataType dtype, uint32_t op = 0, uint32_t algo = 0, int root = 0)
      : d(dom), key{what, dom.state().get(), dom.allocation_id(), count, dtype, op, algo, root}, in(i), out(o) {}
};

// The same call as the last one (on the same allocation of the domain):
// run again from the tasks it left, which passed every check then, as a
// repeat of each member's entry where that is still its latest.
// (Impl: Worker::Impl, deduced.)
template <typename Impl>
bool repeat_last(Impl& m, const Call& c) {
  auto& l = m.last_collective;
  if (!(l.valid && l.key == c.key && l.in == c.in && l.out == c.out)) return false;
  m.repeat_group(c.d.chips(), m.collective_tasks, l.seqs);
  return true;
}

// Records `c` as the call whose tasks collective_tasks now holds.
template <typename Impl>
void remember(Impl& m, const Call& c) {
  auto& l = m.last_collective;
  l.key = c.key;
  l.in = c.in;
  l.out = c.out;
  m.record_latest(c.d.chips(), l.seqs);
  l.valid = true;
}

// Refills `tasks` (the worker's: their strings and vectors keep their
// capacity, so nothing is allocated per call) with one task per local
// member of `d`: fill(task, rank), in its staged form when the placement
// says so (`collective`: staged_kernel's number), on the domain's
// communicator of that chip; then submits them as one group. Refilling
// collective_tasks ends the worker's record of the last collective.
template <typename Impl, typename Fill>
void submit_on_domain(Orchestrator& o, Impl& m, std::vector<Task>& tasks, const CommDomain& d, const Placement& p,
                      uint64_t collective, Fill&& fill) {
  // Only the record's tasks are ever repeated (repeat_last): only their
  // entries are marked repeatable.
  const bool record = &tasks == &m.collective_tasks;
  if (record) m.last_collective.valid = false;
  const std::vector<int>& chips = d.chips();
  tasks.resize(chips.size());
  for (size_t r = 0; r < chips.size(); ++r) {
    fill(tasks[r], r);
    if (p.staged) make_staged_task(tasks[r], collective, p.stage_off, p.chunk);
    tasks[r].comm_ctx = d.context(chips[r]).device_ctx;
  }
  if (record)
    m.submit_repeatable(chips, tasks);
  else
    o.submit_group(chips, tasks);
}

}  // namespace

namespace {

// Checks an allreduce and submits one task per member; returns the chips.
// `flush`: whether the tasks flush their store_to_host buffers.
template <typename Impl>
const std::vector<int>& submit_allreduce(Orchestrator& o, Impl& m, const CommDomain& d, const std::vector<uint64_t>& in,
                                         const std::vector<uint64_t>& out, size_t count, DataType dtype, ReduceOp op,
                                         AllreduceAlgo algo, bool flush) {
  const char* what = "allreduce";
  run_named_check(m, d, what);
  Checked c = check_common(d, what, in.size(), out.size(), 1, 1, count, dtype, true, &op);
  allreduce_kernel::mode(algo, 0);  // ConfigError outside the enum
  if (d.spans_hosts()) cluster::check_reducible("allreduce", dtype, op);
  const Placement p = check_addrs(allocations_of(&m), d, what, c, in, out, false, false, 0, count, 1, OwnBlock::kNone);
  // The allreduce kernel needs the same window offsets on every member
  // (staged, the staging area is at one offset everywhere).
  for (size_t r = 1; r < in.size() && count && !p.staged; ++r) {
    const DomainContext& c0 = d.context(d.chips()[0]);
    const DomainContext& cr = d.context(d.chips()[r]);
    if (in[r] - cr.local_window_base != in[0] - c0.local_window_base ||
        out[r] - cr.local_window_base != out[0] - c0.local_window_base)
      throw ConfigError(where(what, d) + ": rank " + std::to_string(r) +
                        "'s buffers are not at the same window offsets as rank 0's (allreduce needs that)");
  }
  const auto n = static_cast<uint32_t>(in.size());
  submit_on_domain(o, m, m.collective_tasks, d, p, staged_kernel::kAllreduce, [&](Task& t, size_t r) {
    set_allreduce_task(t, in[r], out[r], count, dtype, op, algo, n);
    if (p.staged) t.scalars[0] = allreduce_kernel::mode(algo, p.chunk * c.es, n);  // by the size of one chunk
    t.flush_outputs = flush;
  });
  return d.chips();
}

bool spans_hosts(const CommDomain& d) { return d.state() && d.state()->spans_hosts; }

}  // namespace

void Orchestrator::allreduce(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                             size_t count, DataType dtype, ReduceOp op, AllreduceAlgo algo) {
  Worker::Impl* m = worker_.impl_.get();
  if (no_local_members(m, d, "allreduce")) return;
  if (!spans_hosts(d)) {
    run_named_check(*m, d, "allreduce");  // before a repeat skips the checks
    const Call call{"allreduce", d, in, out, count, dtype, static_cast<uint32_t>(op), static_cast<uint32_t>(algo)};
    if (repeat_last(*m, call)) return;
    submit_allreduce(*this, *m, d, in, out, count, dtype, op, algo, true);
    remember(*m, call);
    return;
  }
  // Hierarchical: this host's chips reduce into `out` (no flush yet), the
  // hosts exchange, every chip gets the result; returns when done.
  across_hosts::allreduce(
      worker_, *this, d,
      [&] {
        return submit_allreduce(*this, *m, d, in, out, count, dtype, op, algo, false);
      },
      views_of(m), out, count, dtype, op);
}

void Orchestrator::allgather(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                             size_t count_per_rank, DataType dtype) {
  const char* what = "allgather";
  Worker::Impl* m = worker_.impl_.get();
  if (no_local_members(m, d, what)) return;
  if (!spans_hosts(d)) run_named_check(*m, d, what);  // before a repeat skips the checks
  const auto n = static_cast<uint64_t>(d.global_size());
  auto check = [&] {
    run_named_check(*m, d, what);
    Checked c = check_common(d, what, in.size(), out.size(), 1, n, count_per_rank, dtype, false, nullptr);
    const Placement p = check_addrs(allocations_of(m), d, what, c, in, out, false, false, 0, count_per_rank, n,
                                    OwnBlock::kInAtOut, !spans_hosts(d));
    return std::make_pair(c, p);
  };
  if (spans_hosts(d))
    return across_hosts::allgather(worker_, *this, d, [&] { check(); }, in, out, count_per_rank, dtype);
  const Call call{what, d, in, out, count_per_rank, dtype};
  if (repeat_last(*m, call)) return;
  const auto [c, p] = check();
  submit_on_domain(*this, *m, m->collective_tasks, d, p, staged_kernel::kAllgather,
                   [&](Task& t, size_t r) { set_allgather_task(t, in[r], out[r], count_per_rank, dtype, n); });
  remember(*m, call);
}

void Orchestrator::reduce_scatter(const CommDomain& d, const std::vector<uint64_t>& in,
                                  const std::vector<uint64_t>& out, size_t count_per_rank, DataType dtype,
                                  ReduceOp op) {
  const char* what = "reduce_scatter";
  Worker::Impl* m = worker_.impl_.get();
  if (no_local_members(m, d, what)) return;
  if (!spans_hosts(d)) run_named_check(*m, d, what);  // before a repeat skips the checks
  const auto n = static_cast<uint64_t>(d.global_size());
  auto check = [&] {
    run_named_check(*m, d, what);
    Checked c = check_common(d, what, in.size(), out.size(), n, 1, count_per_rank, dtype, true, &op);
    const Placement p = check_addrs(allocations_of(m), d, what, c, in, out, false, false, 0, count_per_rank, n,
                                    OwnBlock::kOutAtIn, !spans_hosts(d));
    return std::make_pair(c, p);
  };
  if (spans_hosts(d))
    return across_hosts::reduce_scatter(worker_, *this, d, [&] { check(); }, in, out, count_per_rank, dtype, op);
  const Call call{what, d, in, out, count_per_rank, dtype, static_cast<uint32_t>(op)};
  if (repeat_last(*m, call)) return;
  const auto [c, p] = check();
  submit_on_domain(*this, *m, m->collective_tasks, d, p, staged_kernel::kReduceScatter,
                   [&](Task& t, size_t r) { set_reduce_scatter_task(t, in[r], out[r], count_per_rank, dtype, op, n); });
  remember(*m, call);
}

void Orchestrator::broadcast(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                             size_t count, DataType dtype, int root) {
  const char* what = "broadcast";
  Worker::Impl* m = worker_.impl_.get();
  if (no_local_members(m, d, what)) return;
  if (!spans_hosts(d)) run_named_check(*m, d, what);  // before a repeat skips the checks
  auto check = [&] {
    run_named_check(*m, d, what);
    Checked c = check_common(d, what, in.size(), out.size(), 1, 1, count, dtype, false, nullptr);
    const int local_root = check_root(d, what, root);
    const Placement p = check_addrs(allocations_of(m), d, what, c, in, out, true, false, local_root, count, 1,
                                    OwnBlock::kNone, !spans_hosts(d));
    return std::make_pair(c, p);
  };
  if (spans_hosts(d))
    return across_hosts::broadcast(worker_, *this, d, [&] { check(); }, in, out, count, dtype, root);
  const Call call{what, d, in, out, count, dtype, 0, 0, root};
  if (repeat_last(*m, call)) return;
  const auto [c, p] = check();
  submit_on_domain(*this, *m, m->collective_tasks, d, p, staged_kernel::kBroadcast,
                   [&](Task& t, size_t r) { set_broadcast_task(t, in[r], out[r], count, dtype, static_cast<uint64_t>(root)); });
  remember(*m, call);
}

void Orchestrator::reduce(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                          size_t count, DataType dtype, ReduceOp op, int root) {
  const char* what = "reduce";
  Worker::Impl* m = worker_.impl_.get();
  if (no_local_members(m, d, what)) return;
  if (!spans_hosts(d)) run_named_check(*m, d, what);  // before a repeat skips the checks
  auto check = [&] {
    run_named_check(*m, d, what);
    Checked c = check_common(d, what, in.size(), out.size(), 1, 1, count, dtype, true, &op);
    const int local_root = check_root(d, what, root);
    const Placement p = check_addrs(allocations_of(m), d, what, c, in, out, false, true, local_root, count, 1,
                                    OwnBlock::kNone, !spans_hosts(d));
    return std::make_pair(c, p);
  };
  if (spans_hosts(d))
    return across_hosts::reduce(worker_, *this, d, [&] { check(); }, in, out, count, dtype, op, root);
  const Call call{what, d, in, out, count, dtype, static_cast<uint32_t>(op), 0, root};
  if (repeat_last(*m, call)) return;
  const auto [c, p] = check();
  submit_on_domain(*this, *m, m->collective_tasks, d, p, staged_kernel::kReduce,
                   [&](Task& t, size_t r) { set_reduce_task(t, in[r], out[r], count, dtype, op, static_cast<uint64_t>(root)); });
  remember(*m, call);
}

void Orchestrator::all_to_all(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                              size_t count_per_peer, DataType dtype) {
  const char* what = "all_to_all";
  Worker::Impl* m = worker_.impl_.get();
  if (no_local_members(m, d, what)) return;
  if (!spans_hosts(d)) run_named_check(*m, d, what);  // before a repeat skips the checks
  const auto n = static_cast<uint64_t>(d.global_size());
  auto check = [&] {
    run_named_check(*m, d, what);
    Checked c = check_common(d, what, in.size(), out.size(), n, n, count_per_peer, dtype, false, nullptr);
    const Placement p = check_addrs(allocations_of(m), d, what, c, in, out, false, false, 0, count_per_peer, n,
                                    OwnBlock::kNone, !spans_hosts(d));
    return std::make_pair(c, p);
  };
  if (spans_hosts(d))
    return across_hosts::all_to_all(worker_, *this, d, [&] { check(); }, in, out, count_per_peer, dtype);
  const Call call{what, d, in, out, count_per_peer, dtype};
  if (repeat_last(*m, call)) return;
  const auto [c, p] = check();
  submit_on_domain(*this, *m, m->collective_tasks, d, p, staged_kernel::kAlltoall,
                   [&](Task& t, size_t r) { set_alltoall_task(t, in[r], out[r], count_per_peer, dtype, n); });
  remember(*m, call);
}

void Orchestrator::barrier(const CommDomain& d) {
  Worker::Impl* m = worker_.impl_.get();
  if (no_local_members(m, d, "barrier")) return;
  auto local = [&] {
    check_common(d, "barrier", static_cast<size_t>(d.size()), static_cast<size_t>(d.size()), 1, 1, 0, DataType::UINT8,
                 false, nullptr);
    // Tasks of their own: a task without tensors would drop the others'
    // shape vectors.
    submit_on_domain(*this, *m, m->barrier_tasks, d, Placement{}, 0, [](Task& t, size_t) { set_barrier_task(t); });
  };
  if (spans_hosts(d))
    across_hosts::barrier(*this, d, local);
  else
    local();
}

// --- by buffer name ---------------------------------------------------------------

namespace {
// A block per member of every host (an allgather's output, ...); the
// domain's own checks refuse a dead handle first.
uint64_t blocks(const CommDomain& d) { return d.state() ? static_cast<uint64_t>(d.global_size()) : 1; }
}  // namespace

void Orchestrator::allreduce(const CommDomain& d, const std::string& in, const std::string& out, size_t count,
                             DataType dtype, ReduceOp op, AllreduceAlgo algo) {
  const Resolved r = resolve_both(*worker_.impl_, d, "allreduce", in, out, {count}, {count}, dtype);
  const NamedCall<Worker::Impl> done{*worker_.impl_};
  allreduce(d, r.in, r.out, count, dtype, op, algo);
}
void Orchestrator::allgather(const CommDomain& d, const std::string& in, const std::string& out,
                             size_t count_per_rank, DataType dtype) {
  const Resolved r =
      resolve_both(*worker_.impl_, d, "allgather", in, out, {count_per_rank}, {count_per_rank, blocks(d)}, dtype);
  const NamedCall<Worker::Impl> done{*worker_.impl_};
  allgather(d, r.in, r.out, count_per_rank, dtype);
}
void Orchestrator::reduce_scatter(const CommDomain& d, const std::string& in, const std::string& out,
                                  size_t count_per_rank, DataType dtype, ReduceOp op) {
  const Resolved r = resolve_both(*worker_.impl_, d, "reduce_scatter", in, out, {count_per_rank, blocks(d)},
                                  {count_per_rank}, dtype);
  const NamedCall<Worker::Impl> done{*worker_.impl_};
  reduce_scatter(d, r.in, r.out, count_per_rank, dtype, op);
}
void Orchestrator::broadcast(const CommDomain& d, const std::string& in, const std::string& out, size_t count,
                             DataType dtype, int root) {
  const Resolved r = resolve_both(*worker_.impl_, d, "broadcast", in, out, {count, 1, true}, {count}, dtype, root);
  const NamedCall<Worker::Impl> done{*worker_.impl_};
  broadcast(d, r.in, r.out, count, dtype, root);
}
void Orchestrator::reduce(const CommDomain& d, const std::string& in, const std::string& out, size_t count,
                          DataType dtype, ReduceOp op, int root) {
  const Resolved r = resolve_both(*worker_.impl_, d, "reduce", in, out, {count}, {count, 1, true}, dtype, root);
  const NamedCall<Worker::Impl> done{*worker_.impl_};
  reduce(d, r.in, r.out, count, dtype, op, root);
}
void Orchestrator::all_to_all(const CommDomain& d, const std::string& in, const std::string& out,
                              size_t count_per_peer, DataType dtype) {
  const Resolved r = resolve_both(*worker_.impl_, d, "all_to_all", in, out, {count_per_peer, blocks(d)},
                                  {count_per_peer, blocks(d)}, dtype);
  const NamedCall<Worker::Impl> done{*worker_.impl_};
  all_to_all(d, r.in, r.out, count_per_peer, dtype);
}

}  // namespace chipmesh

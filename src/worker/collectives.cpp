// The typed collectives of the Orchestrator: check every argument against
// the domain, build one task of the built-in kernels per member
// (chipmesh/collectives.h), dispatch them all-or-nothing with submit_group.
#include "chipmesh/collectives.h"

#include <functional>
#include <string>
#include <vector>

#include "chipmesh/worker.h"
#include "worker/worker_impl.h"

namespace chipmesh {
namespace {

// Which of a member's two buffers the kernel reads or writes.
enum class Use { kAll, kRootOnly };

struct Checked {
  std::vector<int> chips;
  size_t es = 0;
  uint64_t in_bytes = 0;
  uint64_t out_bytes = 0;
};

std::string where(const char* what, const CommDomain& d) {
  return std::string("Orchestrator::") + what + " on domain '" + d.name() + "'";
}

// The domain is this worker's and live; the dtype (and op) are supported;
// the vectors have one address per rank; the counts' bytes do not overflow.
Checked check_common(const void* owner, const CommDomain& d, const char* what, size_t nin, size_t nout,
                     uint64_t in_elems_per_count, uint64_t out_elems_per_count, uint64_t count, DataType dtype,
                     bool reduces, const ReduceOp* op) {
  if (!d.state()) throw ConfigError(std::string("Orchestrator::") + what + ": the domain handle refers to no domain");
  if (d.state()->owner != owner) throw ConfigError(where(what, d) + ": the domain belongs to another worker");
  if (d.released()) throw ConfigError(where(what, d) + ": the domain was released");
  // Across hosts only allreduce and barrier exist so far (docs/multi-host.md).
  if (d.spans_hosts() && std::string(what) != "allreduce" && std::string(what) != "barrier")
    throw ConfigError(where(what, d) + ": " + what + " is not yet supported across hosts (allreduce and barrier are)");
  Checked c;
  c.chips = d.chips();
  const size_t n = c.chips.size();
  if (nin != n || nout != n)
    throw ConfigError(where(what, d) + ": " + std::to_string(nin) + " input and " + std::to_string(nout) +
                      " output addresses for a domain of " + std::to_string(n) + " chips (one per domain rank)");
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

// The address lies inside the member's window with its bytes, aligned.
void check_addr(const CommDomain& d, const char* what, const char* which, int rank, uint64_t addr, uint64_t bytes,
                size_t es) {
  const DomainContext& ctx = d.context(d.chips()[static_cast<size_t>(rank)]);
  const uint64_t base = ctx.local_window_base, size = ctx.actual_window_size;
  if (addr < base || bytes > size || addr - base > size - bytes)
    throw ConfigError(where(what, d) + ": " + which + " of rank " + std::to_string(rank) + " (chip " +
                      std::to_string(ctx.chip) + ") [" + std::to_string(addr) + ", +" + std::to_string(bytes) +
                      " bytes) is not inside its window [" + std::to_string(base) + ", +" + std::to_string(size) +
                      " bytes); data outside the window is not staged through it yet");
  if (addr % es != 0)
    throw ConfigError(where(what, d) + ": " + which + " of rank " + std::to_string(rank) + " (" +
                      std::to_string(addr) + ") is not aligned to the " + std::to_string(es) + "-byte element size");
}

void check_addrs(const CommDomain& d, const char* what, const Checked& c, const std::vector<uint64_t>& in,
                 const std::vector<uint64_t>& out, bool in_root_only, bool out_root_only, int root) {
  for (size_t r = 0; r < in.size(); ++r) {
    const int rank = static_cast<int>(r);
    if (c.in_bytes && (!in_root_only || rank == root)) check_addr(d, what, "input", rank, in[r], c.in_bytes, c.es);
    if (c.out_bytes && (!out_root_only || rank == root)) check_addr(d, what, "output", rank, out[r], c.out_bytes, c.es);
  }
}

void check_root(const CommDomain& d, const char* what, int root) {
  if (root < 0 || root >= d.size())
    throw ConfigError(where(what, d) + ": root " + std::to_string(root) + " is outside the domain of " +
                      std::to_string(d.size()) + " chips");
}

std::vector<uint64_t> resolve(const CommDomain& d, const char* what, const std::string& name) {
  std::vector<uint64_t> v;
  for (int chip : d.chips()) {
    const DomainContext& ctx = d.context(chip);
    auto it = ctx.buffer_ptrs.find(name);
    if (it == ctx.buffer_ptrs.end())
      throw ConfigError(where(what, d) + ": chip " + std::to_string(chip) + " (rank " +
                        std::to_string(ctx.domain_rank) + ") has no buffer '" + name + "'");
    v.push_back(it->second);
  }
  return v;
}

// Each member's task runs on the domain's communicator of that chip.
std::vector<Task> on_domain(const CommDomain& d, const std::vector<int>& chips, std::vector<Task> tasks) {
  for (size_t r = 0; r < chips.size(); ++r) tasks[r].comm_ctx = d.context(chips[r]).device_ctx;
  return tasks;
}

}  // namespace

namespace {

// Checks an allreduce and submits one task per member; returns the chips.
// `flush`: whether the tasks flush their store_to_host buffers.
std::vector<int> submit_allreduce(Orchestrator& o, const void* owner, const CommDomain& d,
                                  const std::vector<uint64_t>& in, const std::vector<uint64_t>& out, size_t count,
                                  DataType dtype, ReduceOp op, AllreduceAlgo algo, bool flush) {
  const char* what = "allreduce";
  Checked c = check_common(owner, d, what, in.size(), out.size(), 1, 1, count, dtype, true, &op);
  allreduce_kernel::mode(algo, 0);  // ConfigError outside the enum
  if (d.spans_hosts()) cluster::check_allreduce(dtype, op);
  check_addrs(d, what, c, in, out, false, false, 0);
  // In place (in == out) or apart: a partial overlap would read what it has already written.
  for (size_t r = 0; r < in.size() && c.in_bytes; ++r) {
    if (in[r] != out[r] && in[r] < out[r] + c.out_bytes && out[r] < in[r] + c.in_bytes)
      throw ConfigError(where(what, d) + ": rank " + std::to_string(r) + "'s input [" + std::to_string(in[r]) + ", +" +
                        std::to_string(c.in_bytes) + " bytes) and output [" + std::to_string(out[r]) + ", +" +
                        std::to_string(c.out_bytes) + " bytes) overlap without being the same (in place)");
  }
  // The allreduce kernel needs the same window offsets on every member.
  for (size_t r = 1; r < in.size() && count; ++r) {
    const DomainContext& c0 = d.context(c.chips[0]);
    const DomainContext& cr = d.context(c.chips[r]);
    if (in[r] - cr.local_window_base != in[0] - c0.local_window_base ||
        out[r] - cr.local_window_base != out[0] - c0.local_window_base)
      throw ConfigError(where(what, d) + ": rank " + std::to_string(r) +
                        "'s buffers are not at the same window offsets as rank 0's (allreduce needs that)");
  }
  std::vector<Task> tasks;
  for (size_t r = 0; r < in.size(); ++r) {
    tasks.push_back(allreduce_task(in[r], out[r], count, dtype, op, algo));
    tasks.back().flush_outputs = flush;
  }
  o.submit_group(c.chips, on_domain(d, c.chips, std::move(tasks)));
  return c.chips;
}

bool spans_hosts(const CommDomain& d) { return d.state() && d.state()->spans_hosts; }

}  // namespace

void Orchestrator::allreduce(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                             size_t count, DataType dtype, ReduceOp op, AllreduceAlgo algo) {
  const void* owner = worker_.impl_.get();
  if (!spans_hosts(d)) {
    submit_allreduce(*this, owner, d, in, out, count, dtype, op, algo, true);
    return;
  }
  // Hierarchical: this host's chips reduce into `out` (no flush yet), the
  // hosts exchange, every chip gets the result; returns when done. Every
  // failure from the checks on is settled with the other hosts.
  worker_.impl_->across_hosts_allreduce(
      worker_, *this, [&] { return submit_allreduce(*this, owner, d, in, out, count, dtype, op, algo, false); }, out,
      count, dtype, op);
}

void Orchestrator::allgather(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                             size_t count_per_rank, DataType dtype) {
  const char* what = "allgather";
  Checked c = check_common(worker_.impl_.get(), d, what, in.size(), out.size(), 1, static_cast<uint64_t>(d.size()),
                           count_per_rank, dtype, false, nullptr);
  check_addrs(d, what, c, in, out, false, false, 0);
  std::vector<Task> tasks;
  for (size_t r = 0; r < in.size(); ++r)
    tasks.push_back(allgather_task(in[r], out[r], count_per_rank, dtype, static_cast<uint64_t>(d.size())));
  submit_group(c.chips, on_domain(d, c.chips, std::move(tasks)));
}

void Orchestrator::reduce_scatter(const CommDomain& d, const std::vector<uint64_t>& in,
                                  const std::vector<uint64_t>& out, size_t count_per_rank, DataType dtype,
                                  ReduceOp op) {
  const char* what = "reduce_scatter";
  Checked c = check_common(worker_.impl_.get(), d, what, in.size(), out.size(), static_cast<uint64_t>(d.size()), 1,
                           count_per_rank, dtype, true, &op);
  check_addrs(d, what, c, in, out, false, false, 0);
  std::vector<Task> tasks;
  for (size_t r = 0; r < in.size(); ++r)
    tasks.push_back(reduce_scatter_task(in[r], out[r], count_per_rank, dtype, op, static_cast<uint64_t>(d.size())));
  submit_group(c.chips, on_domain(d, c.chips, std::move(tasks)));
}

void Orchestrator::broadcast(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                             size_t count, DataType dtype, int root) {
  const char* what = "broadcast";
  Checked c = check_common(worker_.impl_.get(), d, what, in.size(), out.size(), 1, 1, count, dtype, false, nullptr);
  check_root(d, what, root);
  check_addrs(d, what, c, in, out, true, false, root);
  std::vector<Task> tasks;
  for (size_t r = 0; r < in.size(); ++r)
    tasks.push_back(broadcast_task(in[r], out[r], count, dtype, static_cast<uint64_t>(root)));
  submit_group(c.chips, on_domain(d, c.chips, std::move(tasks)));
}

void Orchestrator::reduce(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                          size_t count, DataType dtype, ReduceOp op, int root) {
  const char* what = "reduce";
  Checked c = check_common(worker_.impl_.get(), d, what, in.size(), out.size(), 1, 1, count, dtype, true, &op);
  check_root(d, what, root);
  check_addrs(d, what, c, in, out, false, true, root);
  std::vector<Task> tasks;
  for (size_t r = 0; r < in.size(); ++r)
    tasks.push_back(reduce_task(in[r], out[r], count, dtype, op, static_cast<uint64_t>(root)));
  submit_group(c.chips, on_domain(d, c.chips, std::move(tasks)));
}

void Orchestrator::all_to_all(const CommDomain& d, const std::vector<uint64_t>& in, const std::vector<uint64_t>& out,
                              size_t count_per_peer, DataType dtype) {
  const char* what = "all_to_all";
  const auto n = static_cast<uint64_t>(d.size());
  Checked c = check_common(worker_.impl_.get(), d, what, in.size(), out.size(), n, n, count_per_peer, dtype, false, nullptr);
  check_addrs(d, what, c, in, out, false, false, 0);
  std::vector<Task> tasks;
  for (size_t r = 0; r < in.size(); ++r) tasks.push_back(alltoall_task(in[r], out[r], count_per_peer, dtype, n));
  submit_group(c.chips, on_domain(d, c.chips, std::move(tasks)));
}

void Orchestrator::barrier(const CommDomain& d) {
  auto local = [&] {
    Checked c = check_common(worker_.impl_.get(), d, "barrier", static_cast<size_t>(d.size()),
                             static_cast<size_t>(d.size()), 1, 1, 0, DataType::UINT8, false, nullptr);
    submit_group(c.chips, on_domain(d, c.chips, std::vector<Task>(c.chips.size(), barrier_task())));
  };
  if (spans_hosts(d))
    worker_.impl_->across_hosts_barrier(*this, local);
  else
    local();
}

// --- by buffer name ---------------------------------------------------------------

void Orchestrator::allreduce(const CommDomain& d, const std::string& in, const std::string& out, size_t count,
                             DataType dtype, ReduceOp op, AllreduceAlgo algo) {
  allreduce(d, resolve(d, "allreduce", in), resolve(d, "allreduce", out), count, dtype, op, algo);
}
void Orchestrator::allgather(const CommDomain& d, const std::string& in, const std::string& out,
                             size_t count_per_rank, DataType dtype) {
  allgather(d, resolve(d, "allgather", in), resolve(d, "allgather", out), count_per_rank, dtype);
}
void Orchestrator::reduce_scatter(const CommDomain& d, const std::string& in, const std::string& out,
                                  size_t count_per_rank, DataType dtype, ReduceOp op) {
  reduce_scatter(d, resolve(d, "reduce_scatter", in), resolve(d, "reduce_scatter", out), count_per_rank, dtype, op);
}
void Orchestrator::broadcast(const CommDomain& d, const std::string& in, const std::string& out, size_t count,
                             DataType dtype, int root) {
  broadcast(d, resolve(d, "broadcast", in), resolve(d, "broadcast", out), count, dtype, root);
}
void Orchestrator::reduce(const CommDomain& d, const std::string& in, const std::string& out, size_t count,
                          DataType dtype, ReduceOp op, int root) {
  reduce(d, resolve(d, "reduce", in), resolve(d, "reduce", out), count, dtype, op, root);
}
void Orchestrator::all_to_all(const CommDomain& d, const std::string& in, const std::string& out,
                              size_t count_per_peer, DataType dtype) {
  all_to_all(d, resolve(d, "all_to_all", in), resolve(d, "all_to_all", out), count_per_peer, dtype);
}

}  // namespace chipmesh

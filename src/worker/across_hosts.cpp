// The collectives across hosts (across_hosts.h, docs/multi-host.md).
#include "worker/across_hosts.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/errors.h"
#include "cluster/cluster.h"

namespace chipmesh::across_hosts {
namespace {

using Bytes = std::vector<unsigned char>;

// Who holds which global rank of a domain (views of its state, which every
// domain spanning hosts fills: global_ranks, rank_hosts, hosts).
struct Layout {
  explicit Layout(const CommDomain::State& s)
      : hosts(s.hosts.get()), chips(s.chips), global(s.global_ranks), rank_hosts(s.rank_hosts),
        members(static_cast<size_t>(hosts->size())) {
    for (size_t g = 0; g < rank_hosts.size(); ++g)
      members[static_cast<size_t>(rank_hosts[g])].push_back(static_cast<int>(g));
  }
  cluster::Cluster* hosts;
  const std::vector<int>& chips;          // this host's members, by local rank
  const std::vector<int>& global;         // the global rank of each
  const std::vector<int>& rank_hosts;     // the host of every global rank
  std::vector<std::vector<int>> members;  // per host of `hosts`: its global ranks, ascending

  size_t local() const { return chips.size(); }
  size_t size() const { return rank_hosts.size(); }
  int host_of(int global_rank) const { return rank_hosts[static_cast<size_t>(global_rank)]; }
  int local_of(int global_rank) const {
    auto it = std::find(global.begin(), global.end(), global_rank);
    return it == global.end() ? -1 : static_cast<int>(it - global.begin());
  }
};

// The local step of `what` (`call`: its arguments, the same on every host):
// when it fails here, every member host learns it (and throws a CommError
// naming this host); when it fails elsewhere, this host throws that
// CommError; when the hosts' calls differ, every host throws a ConfigError.
void settled(const Layout& l, const char* what, const std::string& call, const std::function<void()>& local) {
  const std::string step = std::string(what) + " across hosts (local step)";
  const std::string described = std::string(what) + "(" + call + ")";
  try {
    local();
  } catch (...) {
    l.hosts->settle(step.c_str(), describe_current_exception(), described);  // false here: rethrow our own
    throw;
  }
  l.hosts->settle(step.c_str(), "", described);
}

std::string args(size_t count, DataType dtype) {
  return "count " + std::to_string(count) + ", " + std::string(dtype_name(dtype));
}
std::string args(size_t count, DataType dtype, ReduceOp op) {
  return args(count, dtype) + ", " + std::string(to_string(op));
}

// Every local member's `bytes` at in[r], one after the other.
Bytes read_inputs(Worker& w, const Layout& l, const Addrs& in, size_t bytes) {
  Bytes b(l.local() * bytes);
  for (size_t r = 0; r < l.local() && bytes; ++r) w.copy_from(l.chips[r], b.data() + r * bytes, in[r], bytes);
  return b;
}

// The local members' inputs of `count` elements folded into one.
Bytes fold_inputs(Worker& w, const Layout& l, const Addrs& in, size_t count, DataType dtype, ReduceOp op) {
  const size_t bytes = count * dtype_size(dtype);
  Bytes acc(bytes), next(bytes);
  for (size_t r = 0; r < l.local() && bytes; ++r) {
    w.copy_from(l.chips[r], r ? next.data() : acc.data(), in[r], bytes);
    if (r) cluster::reduce_local(next.data(), acc.data(), count, dtype, op);
  }
  return acc;
}

}  // namespace

void allreduce(Worker& w, Orchestrator& o, const CommDomain& d, const std::function<std::vector<int>()>& submit,
               const View& view, const Addrs& out, size_t count, DataType dtype, ReduceOp op) {
  const Layout l(*d.state());
  // 1. The local allreduce is checked, submitted and done on every host
  //    before any goes on. Its result is reduced between the hosts where it
  //    lies, in the first member's window, when that is mapped here;
  //    otherwise a copy of it.
  std::vector<int> chips;
  Bytes host;
  unsigned char* data = nullptr;
  size_t bytes = 0;
  settled(l, "allreduce", args(count, dtype, op), [&] {
    chips = submit();
    bytes = count * dtype_size(dtype);  // checked by submit()
    o.wait();
    if (!bytes) return;
    data = view(chips[0], out[0], bytes);
    if (!data) {
      host.resize(bytes);
      w.copy_from(chips[0], host.data(), out[0], bytes);
      data = host.data();
    }
  });
  // 2. Between the hosts; 3. into every other member's output (and the
  //    first one's when it went through a copy), then the store_to_host
  //    flush the local step skipped.
  if (count) l.hosts->allreduce(data, count, dtype, op);
  for (size_t r = host.empty() ? 1 : 0; r < chips.size() && bytes; ++r) w.copy_to(chips[r], out[r], data, bytes);
  o.flush_outputs(chips);
}

void barrier(Orchestrator& o, const CommDomain& d, const std::function<void()>& submit) {
  const Layout l(*d.state());
  settled(l, "barrier", "", [&] {
    submit();
    o.wait();
  });
  l.hosts->barrier();
}

void allgather(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in, const Addrs& out,
               size_t count, DataType dtype) {
  const Layout l(*d.state());
  const size_t bytes = count * dtype_size(dtype);
  Bytes mine;
  settled(l, "allgather", args(count, dtype), [&] {
    check();
    o.wait();
    mine = read_inputs(w, l, in, bytes);
  });
  std::vector<size_t> counts;
  for (const auto& m : l.members) counts.push_back(m.size() * bytes);
  Bytes by_host(l.size() * bytes), full(l.size() * bytes);
  l.hosts->allgatherv(mine.data(), by_host.data(), counts);
  size_t at = 0;
  for (const auto& m : l.members)
    for (int g : m) {
      if (bytes) std::memcpy(full.data() + static_cast<size_t>(g) * bytes, by_host.data() + at, bytes);
      at += bytes;
    }
  for (size_t r = 0; r < l.local() && bytes; ++r) w.copy_to(l.chips[r], out[r], full.data(), full.size());
  o.flush_outputs(l.chips);
}

void reduce_scatter(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in,
                    const Addrs& out, size_t count, DataType dtype, ReduceOp op) {
  const Layout l(*d.state());
  const size_t bytes = count * dtype_size(dtype);
  Bytes acc;
  settled(l, "reduce_scatter", args(count, dtype, op), [&] {
    check();
    cluster::check_reducible("reduce_scatter", dtype, op);
    o.wait();
    acc = fold_inputs(w, l, in, count * l.size(), dtype, op);
  });
  // Blocks in host order, so host h's members' blocks are its one share.
  Bytes by_host(acc.size());
  std::vector<size_t> counts;
  size_t at = 0;
  for (const auto& m : l.members) {
    counts.push_back(m.size() * count);
    for (int g : m) {
      if (bytes) std::memcpy(by_host.data() + at, acc.data() + static_cast<size_t>(g) * bytes, bytes);
      at += bytes;
    }
  }
  Bytes share(l.local() * bytes);
  l.hosts->reduce_scatter(by_host.data(), share.data(), counts, dtype, op);
  for (size_t r = 0; r < l.local() && bytes; ++r) w.copy_to(l.chips[r], out[r], share.data() + r * bytes, bytes);
  o.flush_outputs(l.chips);
}

void broadcast(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in, const Addrs& out,
               size_t count, DataType dtype, int root) {
  const Layout l(*d.state());
  const size_t bytes = count * dtype_size(dtype);
  Bytes data(bytes);
  int root_host = -1;
  settled(l, "broadcast", args(count, dtype) + ", root " + std::to_string(root), [&] {
    check();
    root_host = l.host_of(root);
    o.wait();
    const int r = l.local_of(root);
    if (r >= 0 && bytes) w.copy_from(l.chips[static_cast<size_t>(r)], data.data(), in[static_cast<size_t>(r)], bytes);
  });
  l.hosts->broadcast(data.data(), bytes, root_host);
  for (size_t r = 0; r < l.local() && bytes; ++r) w.copy_to(l.chips[r], out[r], data.data(), bytes);
  o.flush_outputs(l.chips);
}

void reduce(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in, const Addrs& out,
            size_t count, DataType dtype, ReduceOp op, int root) {
  const Layout l(*d.state());
  const size_t bytes = count * dtype_size(dtype);
  Bytes acc;
  int root_host = -1;
  settled(l, "reduce", args(count, dtype, op) + ", root " + std::to_string(root), [&] {
    check();
    cluster::check_reducible("reduce", dtype, op);
    root_host = l.host_of(root);
    o.wait();
    acc = fold_inputs(w, l, in, count, dtype, op);
  });
  l.hosts->reduce(acc.data(), count, dtype, op, root_host);
  const int r = l.local_of(root);
  if (r < 0) return;
  const int chip = l.chips[static_cast<size_t>(r)];
  if (bytes) w.copy_to(chip, out[static_cast<size_t>(r)], acc.data(), bytes);
  o.flush_outputs({chip});
}

void all_to_all(Worker& w, Orchestrator& o, const CommDomain& d, const Check& check, const Addrs& in,
                const Addrs& out, size_t count, DataType dtype) {
  const Layout l(*d.state());
  const size_t bytes = count * dtype_size(dtype), row = l.size() * bytes;
  Bytes ins;
  settled(l, "all_to_all", args(count, dtype), [&] {
    check();
    o.wait();
    ins = read_inputs(w, l, in, row);
  });
  // To host h: for each local member r, its blocks for h's members, in order.
  const size_t k = l.local();
  Bytes send(k * row), recv(k * row);
  std::vector<size_t> scounts, rcounts;
  size_t at = 0;
  for (const auto& m : l.members) {
    scounts.push_back(k * m.size() * bytes);
    rcounts.push_back(m.size() * k * bytes);
    for (size_t r = 0; r < k; ++r)
      for (int g : m) {
        if (bytes) std::memcpy(send.data() + at, ins.data() + r * row + static_cast<size_t>(g) * bytes, bytes);
        at += bytes;
      }
  }
  l.hosts->alltoallv(send.data(), scounts, recv.data(), rcounts);
  // From host h: for each of its members s, the blocks for our members.
  Bytes outs(k * row);
  at = 0;
  for (const auto& m : l.members)
    for (int s : m)
      for (size_t r = 0; r < k; ++r) {
        if (bytes) std::memcpy(outs.data() + r * row + static_cast<size_t>(s) * bytes, recv.data() + at, bytes);
        at += bytes;
      }
  for (size_t r = 0; r < k && bytes; ++r) w.copy_to(l.chips[r], out[r], outs.data() + r * row, row);
  o.flush_outputs(l.chips);
}

}  // namespace chipmesh::across_hosts

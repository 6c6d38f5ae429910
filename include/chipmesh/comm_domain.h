// Communication domains: a communicator over a subset of a Worker's chips,
// with one window per member, as the collectives of the Orchestrator see it
// (docs/collectives.md). For now the one domain is Worker::world(), the
// communicator that chip_bootstrap_configs brings up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace chipmesh {

namespace cluster {
class Cluster;  // internal: the hosts of a job (src/cluster/cluster.h)
}

// Reduction operators and allreduce algorithms of the built-in collectives
// (names, parsing and the kernels' encoding: chipmesh/collectives.h).
enum class ReduceOp : uint32_t { SUM, PROD, MAX, MIN };
enum class AllreduceAlgo : uint32_t { AUTO, ONEPHASE, TWOPHASE, RING };

// One member chip's view of a domain.
struct DomainContext {
  int chip = -1;         // index into the Worker's device_ids
  int domain_rank = -1;  // dense, in the order of the domain's chips
  int domain_size = 0;
  uint64_t device_ctx = 0;  // the member's CommContext (a device address)
  uint64_t local_window_base = 0;
  uint64_t actual_window_size = 0;
  std::map<std::string, uint64_t> buffer_ptrs;
};

// A value handle: copies refer to the same domain.
class CommDomain {
 public:
  CommDomain() = default;  // refers to no domain; every accessor but released() throws ConfigError
  const std::string& name() const;
  const std::vector<int>& chips() const;  // domain rank -> chip index
  int size() const;
  uint64_t allocation_id() const;
  bool released() const;
  // By chip index (as in device_ids); ConfigError if not a member.
  const DomainContext& context(int chip) const;
  // Domain rank of a chip, -1 if not a member.
  int rank_of(int chip) const;
  // Across hosts (Worker::world() and the domains Orchestrator::
  // allocate_domain makes in a cluster, docs/multi-host.md): chips() /
  // size() / rank_of() are this host's members, the ones a collective takes
  // addresses for (none on a host without members: collectives there return
  // at once); these count every member of every host. On one host they
  // equal size() / rank_of().
  bool spans_hosts() const;
  int global_size() const;
  // Global rank of a member chip of this host (members of lower hosts
  // first), -1 if not a member.
  int global_rank_of(int chip) const;

  // Internal: the state shared by the copies of one domain.
  struct State;
  explicit CommDomain(std::shared_ptr<State> s) : state_(std::move(s)) {}
  const std::shared_ptr<State>& state() const { return state_; }

 private:
  const State& get() const;
  std::shared_ptr<State> state_;
};

struct CommDomain::State {
  const void* owner = nullptr;  // the Worker::Impl that made it
  std::string name;
  std::vector<int> chips;
  uint64_t allocation_id = 0;
  bool released = false;
  std::map<int, DomainContext> contexts;  // by chip
  // By chip: the nbytes of each named buffer (DomainContext::buffer_ptrs),
  // which the collectives by buffer name check their counts against.
  std::map<int, std::map<std::string, uint64_t>> buffer_bytes;
  // Window bytes from this offset on hold no named buffer of any member:
  // the staging area of collectives on data outside the windows.
  uint64_t free_offset = 0;
  // In a cluster (world() and allocated domains): whether the members lie
  // on several hosts, how many there are on all hosts (0: chips.size()),
  // the global rank of each local rank (empty: the local rank), the host of
  // every global rank (its rank in `hosts`), and the cluster of the hosts
  // with members (null on a host without members).
  bool spans_hosts = false;
  int global_size = 0;
  std::vector<int> global_ranks;
  std::vector<int> rank_hosts;
  std::shared_ptr<cluster::Cluster> hosts;
};

}  // namespace chipmesh

// Orchestrator::allocate_domain in a cluster (docs/multi-host.md): the
// chips are global chip numbers (host_rank * chips per host + local chip).
// Every host calls it with the same arguments (SPMD). Each host with members
// allocates an ordinary domain over its own members (windows, buffers and a
// communicator among them, as on one host); the hosts with members get a
// cluster of their own, which the collectives across hosts run on. A host
// without members gets a handle with no chips: collectives on it return at
// once there.
#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "chipmesh/worker.h"
#include "logging/log.h"
#include "worker/worker_impl.h"

namespace chipmesh {

namespace {

std::string describe_call(const std::string& name, const std::vector<int>& members, size_t window_size,
                          const std::vector<ChipBufferSpec>& buffers) {
  std::string s = "name '" + name + "', chips {";
  // append(): GCC 12 warns (-Wrestrict, a false positive) on const char* + string.
  for (size_t i = 0; i < members.size(); ++i) s.append(i ? "," : "").append(std::to_string(members[i]));
  s += "}, window_size " + std::to_string(window_size) + ", buffers {";
  for (size_t i = 0; i < buffers.size(); ++i)
    s.append(i ? "," : "").append(buffers[i].name + ":" + std::string(dtype_name(buffers[i].dtype)) + "x" +
                                  std::to_string(buffers[i].count));
  return s + "}";
}

}  // namespace

CommDomain Worker::Impl::allocate_cluster_domain(const std::string& name, const std::vector<int>& members,
                                                 size_t window_size, const std::vector<ChipBufferSpec>& buffers) {
  const std::string what = "Orchestrator::allocate_domain '" + name + "'";
  // The same call on every host first: what follows is decided alike on
  // every host from the same arguments.
  cluster->check_same(what, describe_call(name, members, window_size, buffers));
  if (name.empty()) throw ConfigError("Orchestrator::allocate_domain: the domain name is empty");
  if (members.empty()) throw ConfigError(what + ": the chip list is empty");
  const int per_host = static_cast<int>(n());
  const int global_chips = per_host * cluster->size();
  std::set<int> seen;
  for (int g : members) {
    if (g < 0 || g >= global_chips)
      throw ConfigError(what + ": chip " + std::to_string(g) + " is not one of the job's " +
                        std::to_string(global_chips) + " chips (global chip numbers: host_rank * " +
                        std::to_string(per_host) + " + local chip)");
    if (!seen.insert(g).second) throw ConfigError(what + ": chip " + std::to_string(g) + " is listed twice");
  }
  if (window_size == 0) throw ConfigError(what + ": window_size must be > 0");
  carve_domain_offsets(what, buffers, window_size);

  // This host's members, in domain rank order, and their global ranks.
  const int me = cluster->rank();
  std::vector<int> local, global_ranks;
  for (size_t r = 0; r < members.size(); ++r)
    if (members[r] / per_host == me) {
      local.push_back(members[r] % per_host);
      global_ranks.push_back(static_cast<int>(r));
    }
  // The local part, settled with every host: a host that failed throws its
  // own error, the others a CommError naming it, and release what they made.
  std::optional<CommDomain> part;
  const std::string step = "allocate_domain '" + name + "' (local step)";
  try {
    if (!local.empty()) {
      part = allocate_local_domain(name, local, window_size, buffers);
    } else if (domains.count(name)) {
      throw ConfigError(what + ": a domain named '" + name + "' is live (allocation " +
                        std::to_string(domains.at(name).state->allocation_id) + "); release it first");
    }
  } catch (...) {
    settle(step.c_str(), describe_current_exception());
    throw;
  }
  try {
    settle(step.c_str(), "");
  } catch (...) {
    if (part) {
      try {
        release_domain(name);
      } catch (...) {  // the other host's failure is the one to report
      }
    }
    throw;
  }
  std::shared_ptr<cluster::Cluster> hosts = cluster->split(!local.empty());

  std::shared_ptr<CommDomain::State> s;
  if (part) {
    s = part->state();
  } else {
    // No member here: a handle to name the domain by, with no chips.
    s = std::make_shared<CommDomain::State>();
    s->owner = this;
    s->name = name;
    s->allocation_id = next_allocation_id++;
    domains[name] = LiveDomain{s, {}};
  }
  // The hosts with members, in job order, are the ranks of `hosts`.
  std::vector<int> member_hosts;
  for (int g : members) member_hosts.push_back(g / per_host);
  std::vector<int> sorted = member_hosts;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  s->global_size = static_cast<int>(members.size());
  s->spans_hosts = sorted.size() > 1 && part.has_value();
  if (s->spans_hosts) {
    s->global_ranks = global_ranks;
    for (int h : member_hosts)
      s->rank_hosts.push_back(static_cast<int>(std::lower_bound(sorted.begin(), sorted.end(), h) - sorted.begin()));
    s->hosts = std::move(hosts);
  }
  CHIPMESH_INFO(WORKER, "domain '%s' across %zu hosts: %zu of its %zu chips on this host", name.c_str(), sorted.size(),
                local.size(), members.size());
  return CommDomain(std::move(s));
}

}  // namespace chipmesh

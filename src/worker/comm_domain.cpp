// CommDomain (a value handle on a domain's shared state) and Worker::world(),
// the domain over the bring-up communicator.
#include "chipmesh/comm_domain.h"

#include <algorithm>
#include <string>

#include "chipmesh/errors.h"
#include "chipmesh/worker.h"
#include "worker/worker_impl.h"

namespace chipmesh {

const CommDomain::State& CommDomain::get() const {
  if (!state_) throw ConfigError("CommDomain: this handle refers to no domain");
  return *state_;
}

const std::string& CommDomain::name() const { return get().name; }
const std::vector<int>& CommDomain::chips() const { return get().chips; }
int CommDomain::size() const { return static_cast<int>(get().chips.size()); }
uint64_t CommDomain::allocation_id() const { return get().allocation_id; }
bool CommDomain::released() const { return state_ && state_->released; }

const DomainContext& CommDomain::context(int chip) const {
  const State& s = get();
  auto it = s.contexts.find(chip);
  if (it == s.contexts.end())
    throw ConfigError("CommDomain '" + s.name + "': chip " + std::to_string(chip) + " is not a member");
  return it->second;
}

int CommDomain::rank_of(int chip) const {
  const State& s = get();
  auto it = s.contexts.find(chip);
  return it == s.contexts.end() ? -1 : it->second.domain_rank;
}

bool CommDomain::spans_hosts() const { return get().spans_hosts; }
int CommDomain::global_size() const {
  const State& s = get();
  return s.global_size ? s.global_size : static_cast<int>(s.chips.size());
}
int CommDomain::global_rank_of(int chip) const {
  const int r = rank_of(chip);
  if (r < 0) return -1;
  const State& s = get();
  return s.global_ranks.empty() ? r : s.global_ranks[static_cast<size_t>(r)];
}

void Worker::Impl::build_world() {
  world.reset();
  world_error.clear();
  // The chips with a communicator, by rank; they must form one.
  std::vector<int> by_rank;
  int nranks = 0;
  for (size_t i = 0; i < contexts.size(); ++i) {
    const ChipContext& c = contexts[i];
    if (c.rank < 0) continue;
    if (nranks == 0) {
      nranks = c.nranks;
      by_rank.assign(static_cast<size_t>(nranks), -1);
    }
    if (c.nranks != nranks || c.rank >= nranks || by_rank[static_cast<size_t>(c.rank)] != -1) {
      world_error = "the chips' communicators do not form one (chip " + std::to_string(i) + " is rank " +
                    std::to_string(c.rank) + " of " + std::to_string(c.nranks) + ")";
      return;
    }
    by_rank[static_cast<size_t>(c.rank)] = static_cast<int>(i);
  }
  if (nranks == 0) {
    world_error = "the worker was created without a communicator in chip_bootstrap_configs";
    return;
  }
  for (int r = 0; r < nranks; ++r)
    if (by_rank[static_cast<size_t>(r)] < 0) {
      world_error = "rank " + std::to_string(r) + " of the " + std::to_string(nranks) +
                    "-rank communicator is not one of this worker's chips";
      return;
    }
  auto s = std::make_shared<CommDomain::State>();
  s->owner = this;
  s->name = "world";
  s->chips = by_rank;
  s->allocation_id = 0;
  for (int r = 0; r < nranks; ++r) {
    const int chip = by_rank[static_cast<size_t>(r)];
    const ChipContext& c = contexts[static_cast<size_t>(chip)];
    s->contexts[chip] = DomainContext{chip, r, nranks, c.device_ctx, c.local_window_base, c.actual_window_size,
                                      c.buffer_ptrs};
    for (const auto& b : cfg.chip_bootstrap_configs[static_cast<size_t>(chip)].buffers) {
      s->buffer_bytes[chip][b.name] = b.nbytes;
      auto it = c.buffer_ptrs.find(b.name);
      if (b.placement == "window" && it != c.buffer_ptrs.end())
        s->free_offset = std::max<uint64_t>(s->free_offset, it->second - c.local_window_base + b.nbytes);
    }
  }
  if (cluster) {
    // Every host has the same number of chips (checked by agree()).
    s->spans_hosts = true;
    s->global_size = nranks * cluster->size();
    for (int r = 0; r < nranks; ++r) s->global_ranks.push_back(nranks * cluster->rank() + r);
    for (int g = 0; g < s->global_size; ++g) s->rank_hosts.push_back(g / nranks);
    s->hosts = cluster;
  }
  world = CommDomain(std::move(s));
}

const CommDomain& Worker::world() const {
  impl_->require_running("world");
  if (!impl_->world) throw ConfigError("Worker::world: there is no world domain: " + impl_->world_error);
  return *impl_->world;
}

}  // namespace chipmesh

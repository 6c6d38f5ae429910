// A Worker as one host of a cluster (docs/multi-host.md): joining the job
// and the host accessors. The collectives across hosts: across_hosts.cpp.
#include <string>
#include <vector>

#include "chipmesh/worker.h"
#include "plugin_loader/platform_loader.h"
#include "worker/worker_impl.h"

namespace chipmesh {

void Worker::Impl::join_cluster() {
  cluster = cluster::join(cluster_kind);
  try {
    platform = load_platform(cfg.platform);
  } catch (...) {
    state = State::Closed;
    settle("loading the platform", describe_current_exception());
    throw;
  }
  try {
    settle("loading the platform", "");
  } catch (...) {
    state = State::Closed;
    throw;
  }
  cluster::JobShape shape;
  shape.chips = static_cast<int>(n());
  shape.platform = cfg.platform;
  if (!cfg.chip_bootstrap_configs.empty() && cfg.chip_bootstrap_configs[0].comm)
    shape.window_size = cfg.chip_bootstrap_configs[0].comm->window_size;
  try {
    cluster->agree(shape);
  } catch (...) {
    state = State::Closed;
    throw;
  }
}

bool Worker::Impl::settle(const char* step, const std::string& error) { return cluster->settle(step, error); }

const Worker::Impl& Worker::Impl::joined(const char* what) const {
  if (!cluster_kind.empty() && !cluster)
    throw ConfigError(std::string("Worker::") + what + ": the worker has not joined its cluster yet (call init() first)");
  return *this;
}

int Worker::num_hosts() const {
  const Impl& m = impl_->joined("num_hosts");
  return m.cluster ? m.cluster->size() : 1;
}

int Worker::host_rank() const {
  const Impl& m = impl_->joined("host_rank");
  return m.cluster ? m.cluster->rank() : 0;
}

size_t Worker::num_global_chips() const { return num_chips() * static_cast<size_t>(num_hosts()); }

int Worker::global_chip(int local_chip) const {
  if (local_chip < 0 || static_cast<size_t>(local_chip) >= num_chips())
    throw ConfigError("Worker::global_chip: chip " + std::to_string(local_chip) + " is not one of this host's " +
                      std::to_string(num_chips()) + " chips");
  return host_rank() * static_cast<int>(num_chips()) + local_chip;
}

void Worker::host_allreduce(void* data, size_t count, DataType dtype, ReduceOp op) {
  const Impl& m = impl_->joined("host_allreduce");
  if (!m.cluster) return;
  m.cluster->allreduce(data, count, dtype, op);
}

}  // namespace chipmesh

// A chipmesh built without MPI: clusters cannot be joined.
#include "chipmesh/errors.h"
#include "cluster/cluster.h"

namespace chipmesh::cluster {

bool available() { return false; }

std::unique_ptr<Cluster> join(const std::string& kind) {
  if (kind != "mpi") throw ConfigError("WorkerConfig::cluster: unknown cluster '" + kind + "' (\"\" or \"mpi\")");
  throw ConfigError(
      "WorkerConfig::cluster \"mpi\": chipmesh was built without MPI (install libopenmpi-dev and rebuild)");
}

void check_allreduce(DataType, ReduceOp) {
  throw ConfigError("allreduce across hosts: chipmesh was built without MPI");
}

}  // namespace chipmesh::cluster

// A chipmesh built without MPI: clusters cannot be joined.
#include <string>

#include "chipmesh/errors.h"
#include "cluster/cluster.h"

namespace chipmesh::cluster {

bool available() { return false; }

std::unique_ptr<Cluster> join(const std::string& kind) {
  if (kind != "mpi") throw ConfigError("WorkerConfig::cluster: unknown cluster '" + kind + "' (\"\" or \"mpi\")");
  throw ConfigError(
      "WorkerConfig::cluster \"mpi\": chipmesh was built without MPI (install libopenmpi-dev and rebuild)");
}

void check_reducible(const char* what, DataType, ReduceOp) {
  throw ConfigError(std::string(what) + " across hosts: chipmesh was built without MPI");
}

void reduce_local(const void*, void*, size_t, DataType, ReduceOp) {
  throw ConfigError("a reduction across hosts: chipmesh was built without MPI");
}

}  // namespace chipmesh::cluster

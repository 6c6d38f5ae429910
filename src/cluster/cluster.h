// The inter-host layer of a Worker in a cluster (WorkerConfig::cluster =
// "mpi"): one process per host, joined through MPI. The Worker and the
// Orchestrator see only this interface; mpi_cluster.cpp implements it when
// chipmesh is built with MPI, no_mpi.cpp otherwise (join() then fails).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chipmesh/comm_domain.h"
#include "chipmesh/types.h"

namespace chipmesh::cluster {

// What every host must agree on before it forks its chips.
struct JobShape {
  int chips = 0;              // chips on this host
  uint64_t window_size = 0;   // requested bring-up window (0: no communicator)
  std::string platform;
};

class Cluster {
 public:
  virtual ~Cluster() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "host <rank> (<hostname>)", for messages.
  virtual std::string host_name(int rank) const = 0;
  std::string me() const { return host_name(rank()); }

  // Collective: every host compares every host's shape; on a mismatch every
  // host throws the same ConfigError naming the hosts and values.
  virtual void agree(const JobShape& mine) = 0;
  // Collective: each host says whether its step succeeded (`error` empty)
  // or why not. When any failed, every host that did not throws a CommError
  // naming the first failed host and its message; a host that failed gets
  // false back and rethrows its own error.
  virtual bool settle(const char* step, const std::string& error) = 0;
  // Collective: in-place allreduce of `count` elements across hosts.
  // ConfigError for a dtype or op not supported across hosts.
  virtual void allreduce(void* data, size_t count, DataType dtype, ReduceOp op) = 0;
  virtual void barrier() = 0;
};

// Whether this build can join clusters (built with MPI).
bool available();
// ConfigError when `kind` is neither "" nor "mpi", or when chipmesh was
// built without MPI. Joins the MPI job this process belongs to (MPI_Init
// unless the program already did it; then MPI is finalized at exit only if
// chipmesh initialized it).
std::unique_ptr<Cluster> join(const std::string& kind);
// "host <rank> (<hostname>)" once this process joined a cluster, else "".
std::string this_host();
void set_this_host(const std::string& label);
// Throws ConfigError naming the dtype/op when allreduce cannot take them.
void check_allreduce(DataType dtype, ReduceOp op);

}  // namespace chipmesh::cluster

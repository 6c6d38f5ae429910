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
  // `call` (optional) describes the call the step belongs to (a collective
  // and its counts, dtype, op, root): when every host succeeded but the
  // descriptions differ, every host throws the same ConfigError naming two
  // hosts and their calls, instead of going on into mismatched MPI calls.
  virtual bool settle(const char* step, const std::string& error, const std::string& call = "") = 0;
  // Collective: in-place allreduce of `count` elements across hosts.
  // ConfigError for a dtype or op not supported across hosts.
  virtual void allreduce(void* data, size_t count, DataType dtype, ReduceOp op) = 0;
  virtual void barrier() = 0;

  // Collective: the hosts with `member` true get a cluster of their own
  // (ranks in this cluster's order; host_name() keeps naming them by their
  // rank in the job), the others nullptr. A domain spanning hosts lives on
  // the cluster of its members' hosts.
  virtual std::shared_ptr<Cluster> split(bool member) = 0;
  // Collective: every host passes a description of the same call; on a
  // difference every host throws the same ConfigError naming `what`, the
  // first two hosts that differ and both descriptions.
  virtual void check_same(const std::string& what, const std::string& description) = 0;

  // The data steps of the collectives across hosts (docs/multi-host.md).
  // Byte counts per host; a count over INT_MAX bytes (MPI counts are int)
  // is a ConfigError naming it. Element counts follow the dtype.
  // recv (sum of counts) = every host's send (counts[h] bytes), in host order.
  virtual void allgatherv(const void* send, void* recv, const std::vector<size_t>& counts) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // In place: `data` (count elements) of `root` = every host's data reduced.
  virtual void reduce(void* data, size_t count, DataType dtype, ReduceOp op, int root) = 0;
  // recv (counts[rank()] elements) = block rank() of the reduction of every
  // host's send (sum of counts elements, block h holding counts[h]).
  virtual void reduce_scatter(const void* send, void* recv, const std::vector<size_t>& counts, DataType dtype,
                              ReduceOp op) = 0;
  // Host h gets send[sdispl[h], +scounts[h]); recv[rdispl[g], +rcounts[g]) comes
  // from host g (bytes, displacements from the counts in host order).
  virtual void alltoallv(const void* send, const std::vector<size_t>& scounts, void* recv,
                         const std::vector<size_t>& rcounts) = 0;
};

// inout[i] = in[i] op inout[i] for `count` elements (the local fold of the
// reducing collectives across hosts; the same dtypes as allreduce).
void reduce_local(const void* in, void* inout, size_t count, DataType dtype, ReduceOp op);

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
// Throws ConfigError naming `what` (a reducing collective across hosts)
// and the dtype/op when MPI cannot reduce them.
void check_reducible(const char* what, DataType dtype, ReduceOp op);

}  // namespace chipmesh::cluster

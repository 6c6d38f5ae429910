// The Open MPI peer: finds mpirun and the MPI programs of bench/mpi/,
// runs them (`mpirun -np N --oversubscribe ...`) with a deadline and reports
// "peer unavailable" with the reason instead of failing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench.h"

namespace chipmesh::bench {

struct ProcessResult {
  bool started = false;
  bool timed_out = false;
  int exit_code = -1;   // when exited normally
  int signal = 0;       // when killed by a signal
  std::string out, err;
  double wall_ms = 0;   // spawn to reaped
  bool ok() const { return started && !timed_out && signal == 0 && exit_code == 0; }
  std::string describe() const;  // "exit status 1: <stderr tail>"
};

// Runs argv (argv[0] searched in PATH) in its own process group, capturing
// stdout and stderr; kills the whole group after timeout_s.
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s);

// One size of a benchmark, chipmesh's or a peer's.
struct PeerPoint {
  std::vector<double> us;         // per call
  std::vector<double> stream_us;  // per operation, one per back-to-back run
  int64_t wrong = -1;             // -1 = not checked
};

// The lines the MPI programs print (bench/mpi/*.c):
//   "<bytes> <count> <wrong> t1 t2 ..."  and  "stream <bytes> <ops> t1 t2 ..."
// added to `into` by size.
void parse_peer_output(const std::string& out, std::map<uint64_t, PeerPoint>& into);

class MpiPeer {
 public:
  explicit MpiPeer(const BenchOptions& o);
  bool available() const { return available_; }
  const std::string& reason() const { return reason_; }  // why not available
  const std::string& version() const { return version_; }
  // mpirun -np N <flags> <program> <args...>
  std::vector<std::string> command(int np, const std::string& program, const std::vector<std::string>& args) const;
  std::string command_line(int np, const std::string& program, const std::vector<std::string>& args) const;
  // Runs one MPI program; a failure marks the peer unavailable (reason set)
  // so later points do not retry a broken installation.
  ProcessResult run(int np, const std::string& program, const std::vector<std::string>& args, double timeout_s);
  // "peer: Open MPI 4.1.4, mpirun ..." or "peer unavailable: <reason>".
  std::string note() const;

  static constexpr const char* kBringupProgram = "chipmesh_bench_mpi_bringup";
  static constexpr const char* kAllreduceProgram = "chipmesh_bench_mpi_allreduce";
  // allgather, reduce_scatter, broadcast, reduce, alltoall: the first argument.
  static constexpr const char* kCollectivesProgram = "chipmesh_bench_mpi_collectives";
  static constexpr const char* kDomainsProgram = "chipmesh_bench_mpi_domains";

 private:
  std::string program_path(const std::string& name) const;
  bool available_ = false;
  bool failed_ = false;  // available, then a run failed
  std::string reason_, version_, mpirun_, dir_;
  std::vector<std::string> flags_;
};

}  // namespace chipmesh::bench

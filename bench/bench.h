// chipmesh benchmarks: bring-up, dispatch, copies and allreduce, each run
// side by side with its peer (fork floor, raw shared-memory ping-pong,
// memcpy, Open MPI) in the same invocation. `chipmesh bench` is the command
// line; run_bench() is the whole thing as a library call.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common.h"

namespace chipmesh::bench {

struct BenchOptions {
  std::string what = "all";   // bringup | dispatch | copy | allreduce | allgather | reduce_scatter |
                              // broadcast | reduce | alltoall | all
  std::string json_path;      // write every table as JSON here ("" = no file)
  bool quick = false;         // smoke mode: tiny sizes, few iterations
  bool no_mpi = false;        // skip the Open MPI peers (marked unavailable)
  std::string platform = "sim";
  // Overrides ({} / 0 = the benchmark's defaults, which depend on quick):
  std::vector<int> chips;           // bringup, dispatch, domains: chip counts
  std::vector<uint64_t> windows;    // bringup: window sizes (bytes)
  uint64_t parent_memory = 0;       // bringup: private memory this process writes before the runs (a
                                    // user's data), and writes again after each init() (0 = none)
  bool exclude_parent_memory = false;  // bringup: ... left out of the chips (Worker::exclude_from_chips)
  std::string inputs = "shm";       // bringup: each chip's 4 KiB input: "shm" (an object of its own, which
                                    // the chip copies) or "staged" (Worker::stage_input, in the window file)
  std::vector<int> ranks;           // allreduce and the other collectives: rank counts
  std::vector<std::string> modes;   // allreduce: onephase, twophase, ring
  uint64_t min_bytes = 0;           // copy, allreduce: smallest size
  uint64_t max_bytes = 0;           // copy, allreduce: largest size
  std::string memory = "window";    // the other collectives: where the data lies: "window" (bootstrap
                                    // buffers) or "malloc" (Worker::malloc memory, staged through the window)
  uint64_t stage_bytes = 0;         // --memory malloc: the window, all of it staging area (default 4 MiB)
  int iters = 0;                    // allreduce and the other collectives: operations per run() of the
                                    // back-to-back (stream) figure (default 20, as nccl-tests)
  int tasks = 0;                    // dispatch: tasks per measurement
  int repeats = 0;                  // bringup: chipmesh repetitions per point
  std::string cluster;              // "mpi": this is one host of an MPI job (also CHIPMESH_CLUSTER=mpi)
  std::string mpi_results;          // across hosts: the MPI peers' output (DIR/flat.txt, DIR/hier.txt)
  std::FILE* out = stdout;          // tables and progress
};

BenchResult run_bringup(const BenchOptions& o);
BenchResult run_dispatch(const BenchOptions& o);
BenchResult run_copy(const BenchOptions& o);
BenchResult run_allreduce(const BenchOptions& o);
// allgather | reduce_scatter | broadcast | reduce | alltoall (bench/collectives.cpp)
BenchResult run_collective(const BenchOptions& o, const std::string& which);
// allocate_domain + release_domain over 2..16 chips (bench/domains.cpp)
BenchResult run_domains(const BenchOptions& o);

// `chipmesh bench allreduce` as one host of an MPI job (bench/allreduce_hosts.cpp):
// the hierarchical allreduce over every chip of every host; host 0 prints.
// Returns as run_bench does.
int run_bench_across_hosts(const BenchOptions& o);

// Operations per run() of the back-to-back figures (o.iters or its default).
inline int stream_ops(const BenchOptions& o) { return o.iters > 0 ? o.iters : 20; }

// Runs o.what, prints every table, the targets and the summary, writes the
// JSON file. Returns 0, or 1 when a result was wrong or chipmesh failed
// (an unavailable peer never fails), 2 for bad options.
int run_bench(const BenchOptions& o);

// Writes `j` to `path`; false (said on `out`) when it cannot.
bool write_json(const std::string& path, const nlohmann::json& j, std::FILE* out);

// The JSON document run_bench writes: {"machine", "options", "benchmarks": [...]}.
nlohmann::json results_json(const BenchOptions& o, const std::vector<BenchResult>& results);

}  // namespace chipmesh::bench

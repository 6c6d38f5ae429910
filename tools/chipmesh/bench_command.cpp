#include "bench_command.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "chipmesh/errors.h"
#include "knobs/knobs.h"
#include "logging/log.h"

namespace chipmesh::cli {

BenchCommand register_bench_command(CLI::App& app) {
  auto opts = std::make_shared<bench::BenchOptions>();
  CLI::App* sub = app.add_subcommand(
      "bench", "benchmarks side by side with their peers: bring-up, dispatch, copy, the collectives, domains (or all)");
  sub->footer(
      "Each benchmark runs its peer in the same invocation, alternating runs, and prints medians (p99 for "
      "latencies) with the ratio chipmesh / peer: bringup (fork floor, Open MPI mpirun and MPI_Init-to-window), "
      "dispatch (raw shared-memory ping-pong, spin and futex), copy (memcpy), allreduce (Open MPI "
      "MPI_Allreduce, nccl-tests style table, every result checked), allgather, reduce_scatter, broadcast, reduce, "
      "alltoall (nccl-tests busbw factors, in place and out of place, checked; Open MPI MPI_Allgather, "
      "MPI_Reduce_scatter_block, MPI_Bcast, MPI_Reduce, MPI_Alltoall), domains (allocate_domain + release_domain "
      "over 2..16 chips; Open MPI MPI_Comm_split + MPI_Win_allocate_shared + MPI_Win_free). Without Open MPI its "
      "columns are empty "
      "and marked 'peer unavailable'. Exit status: 0 done, 1 a wrong result or a chipmesh failure, 2 bad "
      "arguments. bench/report turns the JSON into docs/PERFORMANCE.md tables and plots.");
  sub->add_option("what", opts->what,
                  "bringup | dispatch | copy | allreduce | allgather | reduce_scatter | broadcast | reduce | alltoall "
                  "| domains | all")
      ->required()
      ->check(CLI::IsMember({"bringup", "dispatch", "copy", "allreduce", "allgather", "reduce_scatter", "broadcast",
                             "reduce", "alltoall", "domains", "all"}));
  sub->add_option("--json", opts->json_path, "also write every table as JSON to FILE");
  sub->add_flag("--quick", opts->quick, "smoke mode: tiny sizes, few iterations (seconds)");
  sub->add_flag("--no-mpi", opts->no_mpi, "skip the Open MPI peers (reported unavailable)");
  sub->add_option("--platform", opts->platform, "platform name or path")->capture_default_str();
  sub->add_option("--chips", opts->chips, "bringup, dispatch: chip counts (default 1 2 4 8 16); domains: 2 4 8 16")
      ->check(CLI::Range(1, 64));
  sub->add_option("--windows", opts->windows, "bringup: window sizes (default 1MiB 64MiB)")
      ->transform(CLI::AsSizeValue(true));
  CLI::Option* parent_memory =
      sub->add_option("--parent-memory", opts->parent_memory,
                      "bringup: private memory (e.g. 1GiB) this process writes before the runs, as a user's data, "
                      "and writes again after each init(): what the chips' fork costs it (default none)")
          ->transform(CLI::AsSizeValue(true));
  sub->add_flag("--exclude-parent-memory", opts->exclude_parent_memory,
                "bringup: leave the --parent-memory out of the chips' forks (Worker::exclude_from_chips)")
      ->needs(parent_memory);
  sub->add_option("--inputs", opts->inputs,
                  "bringup: where each chip's 4 KiB input lies: shm (a shared-memory object of its own, which the "
                  "chip copies; default) or staged (Worker::stage_input: in the window at bring-up, no copy)")
      ->check(CLI::IsMember({"shm", "staged"}));
  sub->add_option("--ranks", opts->ranks, "allreduce and the other collectives: rank counts (default 2 4; 2 4 8)")->check(CLI::Range(1, 64));
  sub->add_option("--modes", opts->modes, "allreduce: modes (default onephase twophase ring)")
      ->check(CLI::IsMember({"onephase", "twophase", "ring"}));
  sub->add_option("--min-bytes", opts->min_bytes, "copy and the collectives: smallest size (suffixes KiB, MiB accepted)")
      ->transform(CLI::AsSizeValue(true));
  sub->add_option("--max-bytes", opts->max_bytes, "copy and the collectives: largest size (suffixes KiB, MiB accepted)")
      ->transform(CLI::AsSizeValue(true));
  sub->add_option("--memory", opts->memory,
                  "allgather, reduce_scatter, broadcast, reduce, alltoall: where the data lies: window (the chips' "
                  "bootstrap buffers, default) or malloc (Worker::malloc memory, which the collectives stage through "
                  "the window in chunks)")
      ->check(CLI::IsMember({"window", "malloc"}));
  sub->add_option("--stage-bytes", opts->stage_bytes, "--memory malloc: window size, all of it staging area (default 4MiB)")
      ->transform(CLI::AsSizeValue(true));
  sub->add_option("--iters", opts->iters,
                  "allreduce and the other collectives: operations submitted back to back in one Worker::run() for "
                  "the stream (time per operation) column (default 20); the Open MPI peer times as many "
                  "back-to-back MPI_Allreduce")
      ->check(CLI::Range(1, 100000));
  sub->add_option("--tasks", opts->tasks, "dispatch: round trips per point (default 10000)")->check(CLI::Range(1, 10000000));
  sub->add_option("--repeats", opts->repeats, "bringup: chipmesh runs per point (default 15); domains: 30")->check(CLI::Range(1, 100000));
  sub->add_option("--cluster", opts->cluster,
                  "mpi: this is one host's bench in an MPI job (mpirun, one process per host; also "
                  "CHIPMESH_CLUSTER=mpi): allreduce over --ranks chips per host (default 2) across every host; host 0 "
                  "prints (scripts/multihost/bench_hosts.sh runs it with its MPI peers)")
      ->check(CLI::IsMember({"mpi"}));
  sub->add_option("--mpi-results", opts->mpi_results,
                  "across hosts: directory with the MPI peers' output of the same hosts (flat.txt: MPI_Allreduce with "
                  "one rank per chip; hier.txt: the same, hierarchical)");
  return BenchCommand{sub, opts};
}

int run_bench_command(const BenchCommand& cmd) {
  const bench::BenchOptions& opts = *cmd.opts;
  if (opts.min_bytes && opts.max_bytes && opts.min_bytes > opts.max_bytes) {
    std::fprintf(stderr, "chipmesh bench: --min-bytes is larger than --max-bytes\n");
    return 2;
  }
  try {
    if (!opts.cluster.empty() || knobs::is_set(knobs::Id::Cluster)) return bench::run_bench_across_hosts(opts);
    return bench::run_bench(opts);
  } catch (const ConfigError& e) {  // bad arguments, as CLI11's: exit status 2
    std::fprintf(stderr, "chipmesh bench: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    CHIPMESH_WARN(CLI, "chipmesh bench failed: %s", e.what());
    std::fprintf(stderr, "chipmesh bench: %s\n", e.what());
    return 1;
  }
}

}  // namespace chipmesh::cli

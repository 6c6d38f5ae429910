// `chipmesh bench <bringup|dispatch|copy|allreduce|all> [--json FILE] [--quick] ...`:
// the benchmarks of bench/ (library chipmesh_bench) on the command line.
#pragma once

#include <memory>

namespace CLI {
class App;
}

namespace chipmesh::bench {
struct BenchOptions;
}

namespace chipmesh::cli {

struct BenchCommand {
  CLI::App* sub;                                // chosen when *sub is true after parsing
  std::shared_ptr<bench::BenchOptions> opts;    // filled by the parser
};

// Adds the `bench` subcommand to `app`.
BenchCommand register_bench_command(CLI::App& app);

// Runs the chosen benchmarks: 0 ok, 1 a wrong result or a chipmesh failure,
// 2 bad arguments; an unavailable peer (no Open MPI) never fails.
int run_bench_command(const BenchCommand& cmd);

}  // namespace chipmesh::cli

// `chipmesh bench <bringup|dispatch|copy|allreduce|all> [--json FILE] [--quick] ...`:
// the benchmarks of bench/ (library chipmesh_bench) on the command line.
#pragma once

namespace CLI {
class App;
}

namespace chipmesh::cli {

// Adds the `bench` subcommand to `app`. When it is chosen, the benchmarks run
// while the command line is parsed and the process exits with their status
// (0 ok, 1 a wrong result or a chipmesh failure, 2 bad arguments); an
// unavailable peer (no Open MPI) never fails.
void register_bench_command(CLI::App& app);

}  // namespace chipmesh::cli

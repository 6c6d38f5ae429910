// `chipmesh demo`: the main job. Brings up N chips with per-rank inputs
// staged from host shared memory, runs the built-in allreduce, checks every
// rank's output against closed-form values and reports times and bandwidth.
#pragma once

#include <cstdint>
#include <string>

namespace chipmesh::cli {

struct DemoOptions {
  int chips = 4;
  uint64_t bytes = uint64_t{1} << 20;  // per chip, per buffer
  std::string dtype = "float32";       // float32 | float16 | bfloat16 | int32
  std::string mode = "auto";           // onephase | twophase | ring | auto (what the API defaults to)
  std::string op = "sum";              // sum | max | min
  std::string platform = "sim";
  int iters = 10;                      // timed calls after one warm-up call
  bool json = false;
  // "mpi" (or CHIPMESH_CLUSTER=mpi): one demo per host under mpirun, `chips`
  // on each, the allreduce over all of them (docs/multi-host.md).
  std::string cluster;
};

// The demo's allowed values (also used for the command line's checks).
inline constexpr int kDemoMaxChips = 64;
inline constexpr uint64_t kDemoMaxBytes = uint64_t{1} << 34;  // 16 GiB per buffer
const char* const* demo_dtypes();  // null-terminated lists
const char* const* demo_modes();
const char* const* demo_ops();

// Empty when the options are valid, otherwise what is wrong with them.
std::string validate_demo_options(const DemoOptions& opts);

// Exit status: 0 OK, 1 wrong result or a runtime error, 2 invalid options.
int run_demo(const DemoOptions& opts);

}  // namespace chipmesh::cli

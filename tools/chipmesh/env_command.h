// `chipmesh env`: every CHIPMESH_* knob with its value, default, where the
// value came from and its doc line (src/knobs/knobs.def), as text or JSON.
#pragma once

#include <CLI/CLI.hpp>

namespace chipmesh::cli {

struct EnvOptions {
  bool json = false;
  bool all = false;  // also the test-only knobs
};

CLI::App* register_env_command(CLI::App& app, EnvOptions& opts);
// 0, or 1 when a knob holds an invalid value (each is reported).
int run_env(const EnvOptions& opts);

}  // namespace chipmesh::cli

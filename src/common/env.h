// Typed accessors of the knobs the runtime reads, kept under their historic
// names. Every knob is declared in src/knobs/knobs.def and cached by the
// registry (src/knobs/knobs.h); these read the cached values (cheap). A value
// that is set but invalid throws ConfigError naming the variable and value.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace chipmesh::env {

// CHIPMESH_COMM_TIMEOUT_S: deadline of every communicator wait (default 120).
std::chrono::milliseconds comm_timeout();
// CHIPMESH_PLATFORM_PATH: ':'-separated directories searched for platforms.
std::string platform_path();
// CHIPMESH_JOB_TOKEN: when set, ranks only join a rootinfo published by the
// same job; a launcher picks one per job (knobs::ensure_job_token).
std::string job_token();
// CHIPMESH_SIM_NUM_DEVICES: device ids the sim platform accepts (default 64).
int sim_num_devices();
// CHIPMESH_SIM_WORKSPACE_BYTES: per-rank kernel scratch (CommContext
// workSpace) on sim, placed right after each window (default 64 KiB).
size_t sim_workspace_bytes();

}  // namespace chipmesh::env

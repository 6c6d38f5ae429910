// Every environment knob chipmesh reads, declared once (NCCL style). Values are
// read on each call so tests can change them between communicators.
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
// same job; a launcher (Worker) sets one random token per job.
std::string job_token();
// CHIPMESH_SIM_NUM_DEVICES: device ids the sim platform accepts (default 64).
int sim_num_devices();
// CHIPMESH_SIM_WORKSPACE_BYTES: per-rank kernel scratch (CommContext
// workSpace) on sim, placed right after each window (default 64 KiB).
size_t sim_workspace_bytes();

}  // namespace chipmesh::env

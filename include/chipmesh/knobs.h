// The environment knobs, for programs built on chipmesh. Every CHIPMESH_*
// variable is declared once inside chipmesh (src/knobs/knobs.def), read once
// per process and cached; `chipmesh env` lists them all.
#pragma once

#include <chrono>
#include <string>

namespace chipmesh {

// CHIPMESH_COMM_TIMEOUT_S: the deadline of every communicator wait. Throws
// ConfigError naming the variable and its value when it is set but invalid.
std::chrono::milliseconds comm_timeout();

// The job token that keeps this job's ranks apart from any other job's:
// CHIPMESH_JOB_TOKEN when set; otherwise a new random "<prefix>-<pid>-<hex>"
// that this process, and the chip processes it forks from now on, use as
// their CHIPMESH_JOB_TOKEN (the environment itself is not changed). A
// launcher that forks its ranks by hand calls it once before forking.
std::string ensure_job_token(const std::string& prefix);

}  // namespace chipmesh

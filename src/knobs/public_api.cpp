// include/chipmesh/knobs.h: the registry's public face, in libchipmesh.
#include "chipmesh/knobs.h"

#include "common/env.h"
#include "knobs/knobs.h"

namespace chipmesh {

std::chrono::milliseconds comm_timeout() { return env::comm_timeout(); }

std::string ensure_job_token(const std::string& prefix) { return knobs::ensure_job_token(prefix); }

}  // namespace chipmesh

#include "common/env.h"

#include "knobs/knobs.h"

namespace chipmesh::env {

using knobs::Id;

std::chrono::milliseconds comm_timeout() { return std::chrono::seconds(knobs::integer(Id::CommTimeoutS)); }

std::string platform_path() { return knobs::text(Id::PlatformPath); }

std::string job_token() { return knobs::text(Id::JobToken); }

int sim_num_devices() { return static_cast<int>(knobs::integer(Id::SimNumDevices)); }

size_t sim_workspace_bytes() { return static_cast<size_t>(knobs::integer(Id::SimWorkspaceBytes)); }

}  // namespace chipmesh::env

#include <string>

#include "chipmesh/worker.h"
#include "cluster/cluster.h"

namespace chipmesh {

ChipError::ChipError(int chip, int device_id, pid_t pid, const std::string& cause)
    : Error("ChipError", "chip " + std::to_string(chip) + " (device " + std::to_string(device_id) + ", pid " +
                             std::to_string(pid) +
                             (cluster::this_host().empty() ? "" : ", " + cluster::this_host()) + "): " + cause),
      chip_(chip),
      device_id_(device_id),
      pid_(pid),
      cause_(cause) {}

}  // namespace chipmesh

// What a chip that died by a signal (SIGKILL, a crash) could not remove
// itself: its platform's shared-memory names and rendezvous files. Chips
// stopped by the Worker (SIGTERM) clean up after themselves; a SIGKILL gives
// them no chance, so the parent sweeps once every chip is gone (issue 12).
#pragma once

#include <string>
#include <vector>

#include "chipmesh/transport_abi.h"

namespace chipmesh::worker {

// Removes every /dev/shm name of this user that starts with "chipmesh" and
// that `transport` judges stale (its owner is gone), and each of
// `rootinfo_paths` it judges stale. Only the platform's inspect_leftover
// decides (the rules of `chipmesh clean`); nothing is removed without it.
// Returns what was removed, for the log.
std::vector<std::string> remove_stale_leftovers(const chipmesh_transport_v1_t* transport,
                                                const std::vector<std::string>& rootinfo_paths);

}  // namespace chipmesh::worker

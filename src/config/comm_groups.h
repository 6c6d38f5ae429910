// The communicators a Worker's chip_bootstrap_configs describe, checked as a
// whole before anything is forked. Each chip checks its own config
// (validate_bootstrap_config); what only the set shows (two chips with the
// same rank, disagreeing sizes, ranks missing from a communicator that
// meets in the Worker's memory) would otherwise surface as a rendezvous
// error ("slot in use", a timeout) naming no config.
#pragma once

#include <vector>

#include "chipmesh/types.h"

namespace chipmesh {

// ConfigError naming the chips and values; chips whose rank lies outside
// [0, nranks) are left to their own check.
void validate_comm_groups(const std::vector<ChipBootstrapConfig>& configs);

}  // namespace chipmesh

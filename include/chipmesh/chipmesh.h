// Umbrella header: everything a chipmesh user needs.
#pragma once

#include "chipmesh/bootstrap_channel.h"
#include "chipmesh/chip_worker.h"
#include "chipmesh/collectives.h"
#include "chipmesh/comm.h"
#include "chipmesh/errors.h"
#include "chipmesh/half.h"
#include "chipmesh/knobs.h"
#include "chipmesh/platform_abi.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/status.h"
#include "chipmesh/types.h"
#include "chipmesh/version.h"
#include "chipmesh/worker.h"

// The sim platform runs the whole conformance suite (tests/platforms/conformance).
#include "platforms/conformance/conformance.h"

namespace chipmesh::testing {

INSTANTIATE_TEST_SUITE_P(Sim, DeviceConformance, ::testing::Values("sim"), PlatformName);
INSTANTIATE_TEST_SUITE_P(Sim, CommConformance, ::testing::Values("sim"), PlatformName);

}  // namespace chipmesh::testing

// The CUDA platform (planned) gets the same suite; where its plugin or a GPU
// is missing, every test is skipped with the reason.
#include "platforms/conformance/conformance.h"

namespace chipmesh::testing {

INSTANTIATE_TEST_SUITE_P(Cuda, DeviceConformance, ::testing::Values("cuda"), PlatformName);
INSTANTIATE_TEST_SUITE_P(Cuda, CommConformance, ::testing::Values("cuda"), PlatformName);

}  // namespace chipmesh::testing

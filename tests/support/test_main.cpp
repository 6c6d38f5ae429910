// main() of every chipmesh test binary: gtest plus the leftover checks.
#include <gtest/gtest.h>

#include "support/leak_check.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  chipmesh::testing::install_leak_listener();
  return RUN_ALL_TESTS();
}

// ChipWorker's device operations on the sim platform.
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"

namespace chipmesh {
namespace {

class ChipWorkerSim : public ::testing::Test {
 protected:
  ChipWorker w;
  void SetUp() override { w.init("sim"); }
  void TearDown() override { w.finalize(); }
};

TEST_F(ChipWorkerSim, DeviceIdsOutsideTheSimRangeAreRefused) {
  EXPECT_THROW(w.set_device(-1), DeviceError);
  try {
    w.set_device(64);
    FAIL() << "device 64 accepted";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("device id 64"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(w.set_device(63));
}

TEST_F(ChipWorkerSim, MemoryNeedsADevice) {
  try {
    w.malloc(16);
    FAIL() << "malloc without a device";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("set_device"), std::string::npos) << e.what();
  }
}

TEST_F(ChipWorkerSim, MallocCopyRoundTripAndFree) {
  w.set_device(3);
  for (size_t n : {size_t{1}, size_t{7}, size_t{4096}, size_t{1} << 20}) {
    uint64_t p = w.malloc(n);
    ASSERT_NE(p, 0u);
    EXPECT_EQ(p % 64, 0u);
    std::vector<uint8_t> in(n), out(n, 0);
    std::iota(in.begin(), in.end(), static_cast<uint8_t>(n));
    w.copy_to(p, in.data(), n);
    w.copy_from(out.data(), p, n);
    EXPECT_EQ(in, out) << n;
    w.free(p);
  }
  uint64_t zero = w.malloc(0);
  EXPECT_NE(zero, 0u);
  w.free(zero);
}

TEST_F(ChipWorkerSim, CopiesOutsideAnyAllocationAreDeviceErrors) {
  w.set_device(0);
  uint64_t p = w.malloc(64);
  char buf[128] = {};
  try {
    w.copy_to(p + 32, buf, 64);  // runs 32 bytes past the end
    FAIL() << "overflowing copy accepted";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("nbytes=64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(w.copy_from(buf, 0, 8), DeviceError);
  EXPECT_THROW(w.copy_from(buf, reinterpret_cast<uint64_t>(buf), 8), DeviceError);
  EXPECT_NO_THROW(w.copy_to(p, buf, 0));  // empty copies are always fine
  w.free(p);
}

TEST_F(ChipWorkerSim, FreeOfAForeignOrFreedPointerIsADeviceError) {
  w.set_device(0);
  uint64_t p = w.malloc(64);
  w.free(p);
  EXPECT_THROW(w.free(p), DeviceError);
  EXPECT_THROW(w.free(12345), DeviceError);
}

TEST_F(ChipWorkerSim, ResetDeviceReleasesAllocations) {
  w.set_device(0);
  uint64_t p = w.malloc(64);
  w.reset_device();
  EXPECT_THROW(w.free(p), DeviceError);
  EXPECT_NO_THROW(w.malloc(8));
}

int kernel_add(void* args) {
  auto* v = static_cast<int*>(args);
  v[2] = v[0] + v[1];
  return v[2] == 5 ? 0 : 7;
}

TEST_F(ChipWorkerSim, LaunchRunsTheKernelAndReturnsItsStatus) {
  int args[3] = {2, 3, 0};
  EXPECT_THROW(w.launch(kernel_add, args), DeviceError);  // no device yet
  w.set_device(0);
  EXPECT_EQ(w.launch(kernel_add, args), 0);
  EXPECT_EQ(args[2], 5);
  int other[3] = {1, 1, 0};
  EXPECT_EQ(w.launch(kernel_add, other), 7);
  EXPECT_THROW(w.launch(nullptr, args), ConfigError);
}

}  // namespace
}  // namespace chipmesh

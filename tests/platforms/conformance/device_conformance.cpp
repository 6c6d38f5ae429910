// What every platform's device table must do: memory needs a device, copies
// round-trip and stay inside allocations, frees are checked, reset releases
// everything, kernels run through the launch hook with their own status.
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "conformance.h"

namespace chipmesh::testing {
namespace {

TEST_P(DeviceConformance, ANegativeDeviceIdIsADeviceError) {
  EXPECT_THROW(w.set_device(-1), DeviceError);
  EXPECT_NO_THROW(w.set_device(0));
}

TEST_P(DeviceConformance, MemoryNeedsADevice) {
  try {
    w.malloc(16);
    FAIL() << "malloc without a device";
  } catch (const DeviceError& e) {
    EXPECT_TRUE(contains(e.what(), "set_device")) << e.what();
  }
}

TEST_P(DeviceConformance, MallocCopyRoundTripAndFree) {
  w.set_device(0);
  for (size_t n : {size_t{1}, size_t{7}, size_t{4096}, size_t{1} << 20}) {
    uint64_t p = w.malloc(n);
    ASSERT_NE(p, 0u);
    EXPECT_EQ(p % 64, 0u) << "allocations are 64-byte aligned";
    std::vector<uint8_t> in(n), out(n, 0);
    std::iota(in.begin(), in.end(), static_cast<uint8_t>(n));
    w.copy_to(p, in.data(), n);
    w.copy_from(out.data(), p, n);
    EXPECT_EQ(in, out) << n;
    w.free(p);
  }
  uint64_t zero = w.malloc(0);
  EXPECT_NE(zero, 0u) << "malloc(0) still returns a distinct address";
  w.free(zero);
}

// Sizes on both sides of the sim platform's switch to streamed device-to-host
// copies (1 MiB), at device and host addresses off any alignment: every
// byte arrives and none outside the range is written.
TEST_P(DeviceConformance, CopiesAroundTheStreamingCutRoundTripAtUnalignedAddresses) {
  w.set_device(0);
  constexpr size_t kCut = size_t{1} << 20;
  const uint64_t p = w.malloc(kCut + 8192);
  for (size_t n : {kCut - 1, kCut, kCut + 1, kCut + 63, kCut + 4095}) {
    for (size_t skew : {size_t{0}, size_t{1}, size_t{13}}) {
      std::vector<uint8_t> in(n), out(n + 2 * 64, 0xA5);
      std::iota(in.begin(), in.end(), static_cast<uint8_t>(n + skew));
      w.copy_to(p + skew, in.data(), n);
      w.copy_from(out.data() + 64 + skew, p + skew, n);
      EXPECT_EQ(0, std::memcmp(out.data() + 64 + skew, in.data(), n)) << "n=" << n << " skew=" << skew;
      for (size_t i = 0; i < 64 + skew; ++i) ASSERT_EQ(out[i], 0xA5) << "byte before the range, n=" << n;
      for (size_t i = 64 + skew + n; i < out.size(); ++i) ASSERT_EQ(out[i], 0xA5) << "byte after the range, n=" << n;
    }
  }
  w.free(p);
}

TEST_P(DeviceConformance, CopiesOutsideAnyAllocationAreDeviceErrors) {
  w.set_device(0);
  uint64_t p = w.malloc(64);
  char buf[128] = {};
  try {
    w.copy_to(p + 32, buf, 64);  // runs 32 bytes past the end
    FAIL() << "overflowing copy accepted";
  } catch (const DeviceError& e) {
    EXPECT_TRUE(contains(e.what(), "nbytes=64")) << e.what();
  }
  EXPECT_THROW(w.copy_from(buf, 0, 8), DeviceError);
  EXPECT_THROW(w.copy_from(buf, reinterpret_cast<uint64_t>(buf), 8), DeviceError);
  EXPECT_NO_THROW(w.copy_to(p, buf, 0));  // empty copies are always fine
  w.free(p);
}

TEST_P(DeviceConformance, FreeOfAForeignOrFreedPointerIsADeviceError) {
  w.set_device(0);
  uint64_t p = w.malloc(64);
  w.free(p);
  EXPECT_THROW(w.free(p), DeviceError);
  EXPECT_THROW(w.free(12345), DeviceError);
}

TEST_P(DeviceConformance, ResetDeviceReleasesAllocations) {
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

TEST_P(DeviceConformance, LaunchRunsTheKernelAndReturnsItsStatus) {
  int args[3] = {2, 3, 0};
  EXPECT_THROW(w.launch(kernel_add, args), DeviceError);  // no device yet
  w.set_device(0);
  EXPECT_EQ(w.launch(kernel_add, args), 0);
  EXPECT_EQ(args[2], 5);
  int other[3] = {1, 1, 0};
  EXPECT_EQ(w.launch(kernel_add, other), 7) << "a kernel's own status is its result, not an error";
  EXPECT_THROW(w.launch(nullptr, args), ConfigError);
}

TEST_P(DeviceConformance, TablesAreVersionedAndNamed) {
  EXPECT_EQ(w.device().abi_version, CHIPMESH_DEVICE_ABI_VERSION);
  EXPECT_GE(w.device().struct_size, sizeof(chipmesh_device_v1_t));
  EXPECT_EQ(std::string(w.device().name), platform());
  if (w.has_transport()) {
    EXPECT_EQ(w.transport().abi_version, CHIPMESH_TRANSPORT_ABI_VERSION);
    EXPECT_GE(w.transport().struct_size, sizeof(chipmesh_transport_v1_t));
    EXPECT_EQ(std::string(w.transport().name), platform());
  }
}

}  // namespace
}  // namespace chipmesh::testing

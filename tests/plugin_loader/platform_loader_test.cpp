// Loading platforms by name and by path, and the errors for plugins that
// cannot be used.
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"

namespace chipmesh {
namespace {

const std::string kLibDir = CHIPMESH_TEST_LIB_DIR;

std::string init_error(std::string_view platform) {
  ChipWorker w;
  try {
    w.init(platform);
  } catch (const DeviceError& e) {
    return e.what();
  }
  ADD_FAILURE() << "init(\"" << platform << "\") did not throw DeviceError";
  return {};
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

TEST(PlatformLoader, SimByNameExposesAVersionedTable) {
  ChipWorker w;
  w.init("sim");
  EXPECT_STREQ(w.platform().name, "sim");
  EXPECT_EQ(w.platform().abi_version, CHIPMESH_PLATFORM_ABI_VERSION);
  EXPECT_GE(w.platform().struct_size, sizeof(chipmesh_platform));
  w.init("sim");  // same platform again: a no-op
}

TEST(PlatformLoader, SimByPath) {
  ChipWorker w;
  w.init(kLibDir + "/libchipmesh_platform_sim.so");
  EXPECT_STREQ(w.platform().name, "sim");
}

TEST(PlatformLoader, UnknownNameListsEveryPlaceTried) {
  setenv("CHIPMESH_PLATFORM_PATH", "/nonexistent-a:/nonexistent-b", 1);
  std::string msg = init_error("nosuch");
  unsetenv("CHIPMESH_PLATFORM_PATH");
  EXPECT_TRUE(contains(msg, "unknown platform 'nosuch'")) << msg;
  EXPECT_TRUE(contains(msg, "/nonexistent-a/libchipmesh_platform_nosuch.so")) << msg;
  EXPECT_TRUE(contains(msg, "/nonexistent-b/libchipmesh_platform_nosuch.so")) << msg;
  EXPECT_TRUE(contains(msg, kLibDir + "/libchipmesh_platform_nosuch.so")) << msg;
}

TEST(PlatformLoader, WrongAbiVersionByPathIsRefused) {
  std::string msg = init_error(kLibDir + "/libchipmesh_platform_wrongabi.so");
  EXPECT_TRUE(contains(msg, "libchipmesh_platform_wrongabi.so")) << msg;
  EXPECT_TRUE(contains(msg, "ABI version " + std::to_string(CHIPMESH_PLATFORM_ABI_VERSION + 998))) << msg;
  EXPECT_TRUE(contains(msg, "expects " + std::to_string(CHIPMESH_PLATFORM_ABI_VERSION))) << msg;
}

TEST(PlatformLoader, WrongAbiVersionByNameIsRefused) {
  std::string msg = init_error("wrongabi");
  EXPECT_TRUE(contains(msg, "ABI version")) << msg;
}

TEST(PlatformLoader, ALibraryThatIsNoPlatformIsRefused) {
  std::string msg = init_error(kLibDir + "/libchipmesh.so");
  EXPECT_TRUE(contains(msg, "no symbol chipmesh_platform_entry")) << msg;
}

TEST(PlatformLoader, MissingPathAndBadNamesAreRefused) {
  EXPECT_TRUE(contains(init_error("/nonexistent/libx.so"), "/nonexistent/libx.so"));
  EXPECT_TRUE(contains(init_error("bad name!"), "invalid platform name"));
  EXPECT_TRUE(contains(init_error(""), "invalid platform name"));
}

TEST(PlatformLoader, RebindingToAnotherPlatformIsAConfigError) {
  ChipWorker w;
  w.init("sim");
  EXPECT_THROW(w.init(kLibDir + "/libchipmesh_platform_wrongabi.so"), ConfigError);
}

TEST(PlatformLoader, CallsBeforeInitAreDeviceErrors) {
  ChipWorker w;
  EXPECT_THROW(w.set_device(0), DeviceError);
  EXPECT_THROW(w.malloc(8), DeviceError);
  EXPECT_THROW(w.comm_init(0, 1, "/tmp/x"), DeviceError);
  EXPECT_NO_THROW(w.finalize());  // nothing to finalize
  EXPECT_NO_THROW(w.shutdown_bootstrap());
}

}  // namespace
}  // namespace chipmesh

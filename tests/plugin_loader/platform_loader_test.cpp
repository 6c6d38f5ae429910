// Loading platforms by name and by path, and the errors for plugins that
// cannot be used.
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"
#include "knobs/knobs.h"

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

TEST(PlatformLoader, SimExportsBothNewTablesAndALegacyView) {
  ChipWorker w;
  w.init("sim");
  EXPECT_EQ(w.device().abi_version, CHIPMESH_DEVICE_ABI_VERSION);
  EXPECT_EQ(w.device().struct_size, sizeof(chipmesh_device_v1_t));
  EXPECT_STREQ(w.device().name, "sim");
  ASSERT_TRUE(w.has_transport());
  EXPECT_EQ(w.transport().abi_version, CHIPMESH_TRANSPORT_ABI_VERSION);
  EXPECT_EQ(w.transport().struct_size, sizeof(chipmesh_transport_v1_t));
  EXPECT_NE(w.transport().inspect_leftover, nullptr);
  // The composed legacy view reaches the same functions.
  EXPECT_EQ(w.platform().set_device, w.device().set_device);
  EXPECT_EQ(w.platform().comm_barrier, w.transport().barrier);
  EXPECT_NE(w.platform().comm_init, nullptr);
  EXPECT_NE(w.platform().emergency_cleanup, nullptr);
}

// faulty_destroy_plugin exports only the legacy combined table: the loader
// adapts it to the two new tables, and ChipWorker runs through the adapter.
TEST(PlatformLoader, ALegacyOnlyPluginWorksThroughTheAdapter) {
  ChipWorker w;
  w.init(kLibDir + "/libchipmesh_platform_faulty.so");
  EXPECT_STREQ(w.platform().name, "faulty");
  EXPECT_EQ(w.device().abi_version, CHIPMESH_DEVICE_ABI_VERSION);
  EXPECT_EQ(w.device().set_device, w.platform().set_device);
  ASSERT_TRUE(w.has_transport());
  EXPECT_EQ(w.transport().inspect_leftover, nullptr) << "a v1 combined table has no leftover hook";
  w.set_device(0);
  uint64_t p = w.malloc(16);
  const char in[4] = {1, 2, 3, 4};
  char out[4] = {};
  w.copy_to(p, in, 4);
  w.copy_from(out, p, 4);
  EXPECT_EQ(std::string(out, 4), std::string(in, 4));
  w.set_job_token("adapter-token");  // reaches a legacy plugin through its environment
  uint64_t comm = w.comm_init(0, 1, "/tmp/unused-by-faulty");
  EXPECT_NE(comm, 0u);
  EXPECT_EQ(w.comm_get_window_size(comm), 4096u);
  w.comm_barrier(comm);
  try {
    w.comm_destroy(comm);
    FAIL() << "faulty comm_destroy succeeded";
  } catch (const CommError& e) {
    EXPECT_TRUE(contains(e.what(), "failed on purpose")) << e.what();
  }
  unsetenv("CHIPMESH_JOB_TOKEN");
}

struct BadTable {
  const char* lib;     // chipmesh_platform_bad_<lib>
  const char* expect;  // substring of the error
};

class PlatformLoaderBadTable : public ::testing::TestWithParam<BadTable> {};

TEST_P(PlatformLoaderBadTable, IsRefusedNamingWhatWasFoundAndExpected) {
  const std::string path = kLibDir + "/libchipmesh_platform_bad_" + GetParam().lib + ".so";
  std::string msg = init_error(path);
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, GetParam().expect)) << msg;
}

INSTANTIATE_TEST_SUITE_P(
    Tables, PlatformLoaderBadTable,
    ::testing::Values(
        BadTable{"device_version", "device ABI version 42, this chipmesh expects 1"},
        BadTable{"transport_version", "transport ABI version 78, this chipmesh expects 1"},
        BadTable{"device_size", "device table is 80 bytes, expected at least 104 (struct_size too small)"},
        BadTable{"transport_size", "transport table is 88 bytes, expected at least 96 (struct_size too small)"}),
    [](const auto& info) { return std::string(info.param.lib); });

TEST(PlatformLoader, SimByPath) {
  ChipWorker w;
  w.init(kLibDir + "/libchipmesh_platform_sim.so");
  EXPECT_STREQ(w.platform().name, "sim");
}

TEST(PlatformLoader, UnknownNameListsEveryPlaceTried) {
  setenv("CHIPMESH_PLATFORM_PATH", "/nonexistent-a:/nonexistent-b", 1);
  knobs::reload();  // knobs are read once: see the new value
  std::string msg = init_error("nosuch");
  unsetenv("CHIPMESH_PLATFORM_PATH");
  knobs::reload();
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

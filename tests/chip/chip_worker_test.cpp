// ChipWorker on the sim platform: what is sim's own (its device range) and
// what ChipWorker adds over the tables. The device operations every platform
// must support are in the conformance suite (tests/platforms/conformance).
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"
#include "chipmesh/transport_abi.h"

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

// Through comm_init's options: the token and the timeout a ChipWorker sets
// reach the platform (a timeout of 1 s fails a lonely rank 1 in about that).
TEST_F(ChipWorkerSim, TimeoutAndJobTokenReachTheTransport) {
  w.set_device(0);
  w.set_job_token("chip-worker-test");
  w.set_comm_timeout(std::chrono::seconds(1));
  const std::string path = std::filesystem::temp_directory_path() /
                           ("chipmesh_chip_worker_test_" + std::to_string(getpid()));
  try {
    w.comm_init(1, 2, path);
    FAIL() << "rank 1 joined without a rank 0";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("1000 ms"), std::string::npos) << e.what();
  }
}

// A window file (set_window_file, the transport's adopt_window) becomes the
// window: what it held is there without a copy, the rest is zero, and the
// file lent for the parent's view is that same file; one larger than the
// window is refused, naming it, and the communicator still comes down.
TEST_F(ChipWorkerSim, AWindowFileBecomesTheWindow) {
  w.set_device(0);
  ASSERT_NE(w.transport().adopt_window, nullptr);
  const std::string path = std::filesystem::temp_directory_path() /
                           ("chipmesh_chip_worker_adopt_" + std::to_string(getpid()));
  const int file = memfd_create("chipmesh:test-window", MFD_CLOEXEC);
  ASSERT_GE(file, 0);
  ASSERT_EQ(ftruncate(file, 8000), 0);
  ASSERT_EQ(pwrite(file, "staged", 6, 4099), 6);
  w.set_window_file(file);
  ChipBootstrapConfig cfg;
  cfg.comm = ChipCommBootstrapConfig{0, 1, path, 8000};
  const ChipBootstrapResult r = w.bootstrap_context(0, cfg);
  EXPECT_EQ(std::memcmp(reinterpret_cast<const char*>(r.local_window_base) + 4099, "staged", 6), 0);
  EXPECT_EQ(reinterpret_cast<const char*>(r.local_window_base)[4098], 0);
  EXPECT_EQ(reinterpret_cast<const char*>(r.local_window_base)[7999], 0);
  int lent = -1;
  ASSERT_EQ(w.transport().window_fd(reinterpret_cast<CommHandle>(w.bootstrap_comm()), &lent), CHIPMESH_SUCCESS);
  struct stat a{}, b{};
  ASSERT_EQ(fstat(lent, &a), 0);
  ASSERT_EQ(fstat(file, &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  w.shutdown_bootstrap();

  ASSERT_EQ(ftruncate(file, 3 * 4096), 0);  // more than a window of 4096
  const uint64_t comm = w.comm_init(0, 1, path);
  ASSERT_EQ(w.transport().adopt_window(reinterpret_cast<CommHandle>(comm), file), CHIPMESH_SUCCESS);
  try {
    w.comm_alloc_windows(comm, 4096);
    FAIL() << "a file larger than the window was adopted";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("adopted window file"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("12288 bytes"), std::string::npos) << e.what();
  }
  w.comm_destroy(comm);
  ::close(file);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace chipmesh

// ChipWorker on the sim platform: what is sim's own (its device range) and
// what ChipWorker adds over the tables. The device operations every platform
// must support are in the conformance suite (tests/platforms/conformance).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

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

}  // namespace
}  // namespace chipmesh

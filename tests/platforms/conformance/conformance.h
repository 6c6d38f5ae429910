// The conformance suites every platform must pass (tensorpipe's
// TransportTest is the model): value-parameterized by the platform name, so
// a new platform gets the whole suite with one line,
//     INSTANTIATE_TEST_SUITE_P(Name, DeviceConformance, ::testing::Values("name"), PlatformName);
//     INSTANTIATE_TEST_SUITE_P(Name, CommConformance, ::testing::Values("name"), PlatformName);
// (see tests/platforms/sim/sim_conformance.cpp). A platform that cannot run
// here (no plugin, no driver, no device) is skipped with the reason.
//
// Everything goes through the ABI tables (ChipWorker, or the transport table
// itself for the C-level checks): nothing here knows a platform's layout.
// Memory is read and written with the platform's copies, never by pointer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"

namespace chipmesh::testing {

// Why `platform` cannot run here ("" when it can): its plugin does not load,
// or it has no device 0.
std::string platform_unavailable(const std::string& platform);

// Test names: the platform's name.
inline std::string PlatformName(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

class PlatformConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why = platform_unavailable(GetParam());
    if (!why.empty()) GTEST_SKIP() << "platform '" << GetParam() << "' cannot run here: " << why;
  }
  const std::string& platform() const { return GetParam(); }
};

// One chip's device, bound and set (device 0).
class DeviceConformance : public PlatformConformance {
 protected:
  ChipWorker w;
  void SetUp() override {
    PlatformConformance::SetUp();
    if (IsSkipped()) return;
    w.init(platform());
  }
  void TearDown() override {
    if (w.initialized()) w.finalize();
  }
};

// Communicators over forked ranks; each test gets a scratch directory for
// its rootinfo, which must be empty again at the end.
class CommConformance : public PlatformConformance {
 protected:
  ScratchDir scratch;
  std::string path = scratch.file("rootinfo");
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rendezvous files left behind"; }
};

// One rank inside a forked child: a ChipWorker on `platform`, device 0 set,
// and (after join()) a communicator. Failures throw (CM_REQUIRE style).
struct Rank {
  ChipWorker w;
  uint64_t comm = 0;
  const CommContext* ctx = nullptr;
  int rank;

  Rank(const std::string& platform, int rank_id) : rank(rank_id) {
    w.init(platform);
    w.set_device(0);
  }
  ~Rank() {
    try {
      if (comm) w.comm_destroy(comm);
    } catch (...) {
    }
  }
  Rank& join(int nranks, const std::string& path) {
    comm = w.comm_init(rank, nranks, path);
    return *this;
  }
  Rank& alloc(size_t window) {
    ctx = reinterpret_cast<const CommContext*>(w.comm_alloc_windows(comm, window));
    return *this;
  }
  void destroy() {
    uint64_t c = comm;
    comm = 0;
    w.comm_destroy(c);
  }
  // The context copied to the host (it is device memory on some platforms).
  CommContext context() {
    CommContext c{};
    w.copy_from(&c, reinterpret_cast<uint64_t>(ctx), sizeof(c));
    return c;
  }
};

inline bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace chipmesh::testing

// A Worker's configs checked as a set (config/comm_groups.h): what only the
// set shows is a ConfigError naming the chips before anything is forked.
#include "config/comm_groups.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/worker.h"

namespace chipmesh::testing {
namespace {

ChipBootstrapConfig with_comm(int rank, int nranks, const std::string& rootinfo = "") {
  ChipBootstrapConfig c;
  c.comm = ChipCommBootstrapConfig{rank, nranks, rootinfo, 4096};
  return c;
}

std::string error_of(const std::vector<ChipBootstrapConfig>& configs) {
  try {
    validate_comm_groups(configs);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

TEST(CommGroups, ValidSetsPass) {
  EXPECT_EQ(error_of({}), "");
  EXPECT_EQ(error_of({ChipBootstrapConfig{}, ChipBootstrapConfig{}}), "");  // no communicator
  EXPECT_EQ(error_of({with_comm(1, 2), with_comm(0, 2)}), "");             // any order
  // Two communicators side by side; one at a rootinfo may have ranks elsewhere.
  EXPECT_EQ(error_of({with_comm(0, 1), with_comm(0, 3, "/tmp/x"), with_comm(2, 3, "/tmp/x")}), "");
  // A rank outside [0, nranks) is left to the chip's own check.
  EXPECT_EQ(error_of({with_comm(0, 1), with_comm(5, 1, "/tmp/y")}), "");
}

TEST(CommGroups, TheSameRankTwiceNamesBothChips) {
  const std::string e = error_of({with_comm(0, 2), with_comm(0, 2)});
  EXPECT_TRUE(contains(e, "chips 0 and 1 both have rank 0 of the communicator that meets in the Worker's memory"))
      << e;
  const std::string f = error_of({with_comm(0, 3, "/r"), with_comm(1, 3, "/r"), with_comm(1, 3, "/r")});
  EXPECT_TRUE(contains(f, "chips 1 and 2 both have rank 1 of the communicator at rootinfo '/r' (nranks=3)")) << f;
}

TEST(CommGroups, DisagreeingSizesAreNamed) {
  const std::string e = error_of({with_comm(0, 2, "/r"), with_comm(1, 3, "/r")});
  EXPECT_TRUE(contains(e, "chips 0 and 1 join the communicator at rootinfo '/r' with nranks=2 and nranks=3")) << e;
}

TEST(CommGroups, TheWorkersMemoryNeedsEveryRank) {
  const std::string e = error_of({with_comm(0, 3), with_comm(2, 3)});
  EXPECT_TRUE(contains(e, "has nranks=3 but 2 chips of this Worker join it (rank 1 is none of them)")) << e;
}

TEST(CommGroups, TheWorkerChecksBeforeForking) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1};
  cfg.chip_bootstrap_configs = {with_comm(0, 2), with_comm(0, 2)};
  try {
    Worker w(cfg);
    ADD_FAILURE() << "a Worker with two rank 0 was made";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "Worker: chips 0 and 1 both have rank 0")) << e.what();
  }
}

}  // namespace
}  // namespace chipmesh::testing

// The sim communicator on 2..64 ranks: context fields, visibility of writes
// through peers' windows, prefaulting, barrier reuse, argument checks.
#include <sys/inotify.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "comm_support.h"
#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

// Resident size of the mapping that starts at addr, from /proc/self/smaps:
// a prefaulted mapping has every page resident in this process.
size_t resident_bytes(uint64_t addr) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_mapping = false;
  while (std::getline(smaps, line)) {
    // Mapping headers start with a lowercase hex address; fields ("Rss:") do not.
    unsigned long long lo = 0, hi = 0;
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && !std::isupper(line[0]) &&
        std::sscanf(line.c_str(), "%llx-%llx", &lo, &hi) == 2) {
      in_mapping = (lo == addr);
      continue;
    }
    if (in_mapping && line.rfind("Rss:", 0) == 0) {
      size_t kb = 0;
      std::sscanf(line.c_str(), "Rss: %zu kB", &kb);
      return kb * 1024;
    }
  }
  return 0;
}

class SimCommRanks : public ::testing::TestWithParam<int> {
 protected:
  ScratchDir scratch;
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo file left behind"; }
};

TEST_P(SimCommRanks, ContextFieldsAndPeerVisibility) {
  const int n = GetParam();
  const std::string path = scratch.file("rootinfo");
  const size_t requested = 10000;  // not a page multiple: must round up
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    const CommContext* ctx = must_alloc(h, requested);
    uint64_t base = 0;
    size_t size = 0;
    CM_REQUIRE(comm_get_local_window_base(h, &base) == 0) << comm_last_error();
    CM_REQUIRE(comm_get_window_size(h, &size) == 0) << comm_last_error();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    CM_REQUIRE(ctx->rankId == static_cast<uint32_t>(rank));
    CM_REQUIRE(ctx->rankNum == static_cast<uint32_t>(n));
    CM_REQUIRE(size >= requested && size % page == 0 && size < requested + page) << "size " << size;
    CM_REQUIRE(ctx->winSize == size);
    CM_REQUIRE(ctx->windowsIn[rank] == base && base != 0);
    CM_REQUIRE(ctx->workSpace == base + size && ctx->workSpaceSize > 0) << "scratch follows the window";
    for (int r = 0; r < n; ++r) {
      CM_REQUIRE(ctx->windowsIn[r] != 0) << "peer slot " << r;
      CM_REQUIRE(ctx->windowsOut[r] == ctx->windowsIn[r]) << "peer slot " << r;
      CM_REQUIRE(resident_bytes(ctx->windowsIn[r]) == size + ctx->workSpaceSize)
          << "window of rank " << r << " is not prefaulted";
    }
    for (int r = n; r < CHIPMESH_MAX_RANKS; ++r) CM_REQUIRE(ctx->windowsIn[r] == 0);
    // Zeroed before anyone could write.
    auto* mine = reinterpret_cast<uint32_t*>(base);
    for (size_t i = 0; i < size / 4; ++i) CM_REQUIRE(mine[i] == 0) << "word " << i;
    for (size_t i = 0; i < size / 4; ++i) mine[i] = static_cast<uint32_t>(rank * 1000003u + i);
    must_barrier(h);
    for (int r = 0; r < n; ++r) {
      auto* theirs = reinterpret_cast<const uint32_t*>(ctx->windowsIn[r]);
      for (size_t i = 0; i < size / 4; ++i)
        CM_REQUIRE(theirs[i] == static_cast<uint32_t>(r * 1000003u + i)) << "rank " << r << " word " << i;
    }
    must_barrier(h);  // nobody unmaps while a peer still reads
    must_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_P(SimCommRanks, TenThousandBarriersNeverLoseOrDoubleAGeneration) {
  const int n = GetParam();
  const std::string path = scratch.file("rootinfo");
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    const CommContext* ctx = must_alloc(h, 4096);
    auto* mine = reinterpret_cast<volatile uint64_t*>(ctx->windowsIn[rank]);
    // Two barriers per round: a lost generation lets a rank read a stale
    // round number, a doubled one lets it read the next.
    for (uint64_t round = 1; round <= 5000; ++round) {
      *mine = round;
      must_barrier(h);
      for (int r = 0; r < n; ++r) {
        uint64_t seen = *reinterpret_cast<volatile uint64_t*>(ctx->windowsIn[r]);
        CM_REQUIRE(seen == round) << "round " << round << " saw " << seen << " from rank " << r;
      }
      must_barrier(h);
    }
    must_destroy(h);
  }, std::chrono::seconds(120));
  EXPECT_TRUE(all_ok(outcomes));
}

INSTANTIATE_TEST_SUITE_P(Ranks, SimCommRanks, ::testing::Values(2, 4, 8),
                         [](const auto& info) { return std::to_string(info.param) + "ranks"; });

TEST(SimComm, SixtyFourRanksUseShortChipmeshNames) {
  ScratchDir scratch;
  const std::string path = scratch.file("rootinfo");
  // Record every object created in /dev/shm during the bring-up.
  int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  ASSERT_GE(in, 0);
  ASSERT_GE(inotify_add_watch(in, "/dev/shm", IN_CREATE), 0);
  const int n = CHIPMESH_MAX_RANKS;
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    must_alloc(h, 4096);
    must_barrier(h);
    must_destroy(h);
  }, std::chrono::seconds(120));
  EXPECT_TRUE(all_ok(outcomes));
  std::set<std::string> created;
  alignas(inotify_event) char buf[65536];
  for (ssize_t len; (len = read(in, buf, sizeof(buf))) > 0;) {
    for (char* p = buf; p < buf + len;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      if (ev->len) created.insert(std::string("/") + ev->name);
      p += sizeof(inotify_event) + ev->len;
    }
  }
  close(in);
  std::set<std::string> ours;
  for (const auto& name : created)
    if (name.rfind("/chipmesh", 0) == 0) ours.insert(name);
  // One control segment and one window per rank.
  EXPECT_EQ(ours.size(), static_cast<size_t>(n + 1));
  for (const auto& name : ours) EXPECT_LE(name.size(), 31u) << name;
  EXPECT_TRUE(scratch.entries().empty());
}

TEST(SimComm, SingleRankCommunicator) {
  ScratchDir scratch;
  CommHandle h = comm_init(0, 1, nullptr, scratch.file("rootinfo").c_str());
  ASSERT_NE(h, nullptr) << comm_last_error();
  uint64_t ctx = 0;
  ASSERT_EQ(comm_alloc_windows(h, 1, &ctx), 0) << comm_last_error();
  size_t size = 0;
  ASSERT_EQ(comm_get_window_size(h, &size), 0);
  EXPECT_EQ(size, static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(comm_barrier(h), 0) << comm_last_error();
  EXPECT_EQ(comm_destroy(h), 0) << comm_last_error();
  EXPECT_TRUE(scratch.entries().empty());
}

struct BadArgs {
  int rank;
  int nranks;
  const char* path;
  const char* expect;  // substring of the error
};

class SimCommInvalidArgs : public ::testing::TestWithParam<BadArgs> {};

TEST_P(SimCommInvalidArgs, RejectedWithAConfigError) {
  const BadArgs& a = GetParam();
  CommHandle h = comm_init(a.rank, a.nranks, nullptr, a.path);
  EXPECT_EQ(h, nullptr);
  EXPECT_EQ(comm_last_error_code(), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(comm_last_error()).find(a.expect), std::string::npos) << comm_last_error();
}

INSTANTIATE_TEST_SUITE_P(
    Args, SimCommInvalidArgs,
    ::testing::Values(BadArgs{2, 2, "/tmp/x", "rank=2"}, BadArgs{5, 2, "/tmp/x", "rank=5"},
                      BadArgs{-1, 2, "/tmp/x", "rank=-1"}, BadArgs{0, 65, "/tmp/x", "nranks=65"},
                      BadArgs{0, 0, "/tmp/x", "nranks=0"}, BadArgs{0, 2, "", "rootinfo_path is empty"},
                      BadArgs{0, 2, nullptr, "rootinfo_path is empty"}));

TEST(SimComm, NullHandlesAndOutputsAreErrors) {
  uint64_t v = 0;
  size_t s = 0;
  EXPECT_EQ(comm_alloc_windows(nullptr, 4096, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(comm_last_error()).find("null communicator handle"), std::string::npos);
  EXPECT_EQ(comm_get_local_window_base(nullptr, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(comm_get_window_size(nullptr, &s), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(comm_barrier(nullptr), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(comm_destroy(nullptr), CHIPMESH_ERR_CONFIG);
}

TEST(SimComm, WindowQueriesBeforeAllocAndDoubleAllocFail) {
  ScratchDir scratch;
  CommHandle h = comm_init(0, 1, nullptr, scratch.file("rootinfo").c_str());
  ASSERT_NE(h, nullptr) << comm_last_error();
  size_t s = 0;
  uint64_t v = 0;
  EXPECT_EQ(comm_get_window_size(h, &s), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(comm_last_error()).find("comm_alloc_windows first"), std::string::npos);
  EXPECT_EQ(comm_get_local_window_base(h, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(comm_alloc_windows(h, 0, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(comm_alloc_windows(h, 4096, nullptr), CHIPMESH_ERR_CONFIG);
  ASSERT_EQ(comm_alloc_windows(h, 4096, &v), 0) << comm_last_error();
  EXPECT_EQ(comm_alloc_windows(h, 4096, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(comm_last_error()).find("already allocated"), std::string::npos);
  EXPECT_EQ(comm_destroy(h), 0);
}

TEST(SimComm, MissingRootinfoDirectoryIsAClearError) {
  CommHandle h = comm_init(0, 2, nullptr, "/nonexistent-chipmesh-dir/rootinfo");
  EXPECT_EQ(h, nullptr);
  EXPECT_NE(std::string(comm_last_error()).find("/nonexistent-chipmesh-dir/rootinfo"), std::string::npos)
      << comm_last_error();
}

}  // namespace
}  // namespace chipmesh::testing

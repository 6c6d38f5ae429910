// The sim communicator's failure paths: disagreements fail on every rank,
// dead and missing peers are reported by rank and pid, untrusted rootinfo
// files and segments are never attached, and nothing is left behind.
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "comm_layout.h"
#include "comm_support.h"
#include "common/process.h"
#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

class SimCommFailure : public ::testing::Test {
 protected:
  ScratchDir scratch;
  std::string path = scratch.file("rootinfo");
  void TearDown() override {
    EXPECT_TRUE(scratch.entries().empty()) << "rootinfo (or its temp file) left behind";
    unsetenv("CHIPMESH_COMM_TIMEOUT_S");
    unsetenv("CHIPMESH_JOB_TOKEN");
  }
};

// A rank that expects comm_init to fail notes the error for the parent.
void expect_init_failure(int rank, int nranks, const std::string& path) {
  CommHandle h = comm_init(rank, nranks, nullptr, path.c_str());
  CM_REQUIRE(h == nullptr) << "rank " << rank << " joined a communicator that should have failed";
  rank_note(comm_last_error());
}

TEST_F(SimCommFailure, NranksMismatchFailsOnEveryRankNamingBothValues) {
  auto outcomes = fork_ranks(3, [&](int rank) { expect_init_failure(rank, rank == 2 ? 4 : 3, path); }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes) {
    EXPECT_TRUE(contains(o.message, "nranks=3") && contains(o.message, "nranks=4")) << o.describe();
  }
}

TEST_F(SimCommFailure, WindowSizeMismatchFailsOnEveryRankNamingBothValues) {
  auto outcomes = fork_ranks(3, [&](int rank) {
    CommHandle h = must_init(rank, 3, path);
    uint64_t ctx = 0;
    int rc = comm_alloc_windows(h, rank == 1 ? 8192 : 4096, &ctx);
    CM_REQUIRE(rc == CHIPMESH_ERR_COMM) << "rc " << rc;
    rank_note(comm_last_error());
    CM_REQUIRE(comm_barrier(h) != 0) << "a failed communicator must stay failed";
    comm_destroy(h);
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes)
    EXPECT_TRUE(contains(o.message, "4096") && contains(o.message, "8192")) << o.describe();
}

TEST_F(SimCommFailure, TwoProcessesClaimingOneRankFailEveryRank) {
  // Ranks 0, 1, 1 of a 3-rank communicator: the second claim of rank 1 aborts.
  auto outcomes = fork_ranks(3, [&](int who) { expect_init_failure(who == 2 ? 1 : who, 3, path); }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes) EXPECT_TRUE(contains(o.message, "rank 1 claimed twice")) << o.describe();
}

TEST_F(SimCommFailure, PeerKilledBeforeBarrierIsNamedWithinTwoSeconds) {
  setenv("CHIPMESH_COMM_TIMEOUT_S", "60", 1);  // detection must not be the deadline
  auto outcomes = fork_ranks(4, [&](int rank) {
    CommHandle h = must_init(rank, 4, path);
    must_alloc(h, 4096);
    if (rank == 2) raise(SIGKILL);
    auto start = std::chrono::steady_clock::now();
    int rc = comm_barrier(h);
    auto waited = std::chrono::steady_clock::now() - start;
    CM_REQUIRE(rc == CHIPMESH_ERR_COMM) << "rc " << rc << ": " << comm_last_error();
    CM_REQUIRE(waited < 2s) << "detection took "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms";
    rank_note(comm_last_error());
    comm_destroy(h);
  }, 60s);
  ASSERT_EQ(outcomes[2].signal, SIGKILL);
  const std::string victim = "rank 2 (pid " + std::to_string(outcomes[2].pid) + ")";
  for (int r : {0, 1, 3}) {
    EXPECT_TRUE(outcomes[r].ok()) << outcomes[r].describe();
    EXPECT_TRUE(contains(outcomes[r].message, victim)) << outcomes[r].describe();
  }
}

TEST_F(SimCommFailure, MissingRankTimesOutNamingItAndLeavesNothing) {
  setenv("CHIPMESH_COMM_TIMEOUT_S", "1", 1);
  // Ranks 0 and 1 of 3 come; rank 2 never does.
  auto outcomes = fork_ranks(2, [&](int rank) {
    CommHandle h = comm_init(rank, 3, nullptr, path.c_str());
    CM_REQUIRE(h == nullptr);
    CM_REQUIRE(comm_last_error_code() == CHIPMESH_ERR_TIMEOUT) << comm_last_error();
    rank_note(comm_last_error());
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes) EXPECT_TRUE(contains(o.message, "ranks not arrived: 2")) << o.describe();
}

TEST_F(SimCommFailure, RankZeroNeverPublishingTimesOutNamingThePath) {
  setenv("CHIPMESH_COMM_TIMEOUT_S", "1", 1);
  CommHandle h = comm_init(1, 2, nullptr, path.c_str());
  EXPECT_EQ(h, nullptr);
  EXPECT_EQ(comm_last_error_code(), CHIPMESH_ERR_TIMEOUT);
  EXPECT_TRUE(contains(comm_last_error(), path)) << comm_last_error();
}

TEST_F(SimCommFailure, RankKilledDuringWindowAllocationLeavesNothing) {
  setenv("CHIPMESH_COMM_TIMEOUT_S", "60", 1);
  auto outcomes = fork_ranks(3, [&](int rank) {
    CommHandle h = must_init(rank, 3, path);
    if (rank == 1) raise(SIGKILL);  // dies before creating its window
    uint64_t ctx = 0;
    CM_REQUIRE(comm_alloc_windows(h, 1 << 20, &ctx) == CHIPMESH_ERR_COMM) << comm_last_error();
    rank_note(comm_last_error());
    comm_destroy(h);
  }, 60s);
  ASSERT_EQ(outcomes[1].signal, SIGKILL);
  for (int r : {0, 2}) {
    EXPECT_TRUE(outcomes[r].ok()) << outcomes[r].describe();
    EXPECT_TRUE(contains(outcomes[r].message, "rank 1 (pid " + std::to_string(outcomes[1].pid) + ")"))
        << outcomes[r].describe();
  }
}

// ---------------------------------------------------------------------------
// Untrusted rootinfo files: each variant plants a rootinfo file and a valid
// looking control segment, then runs a 2-rank communicator whose rank 0 only
// starts once rank 1 has read the planted file. Rank 1 must skip it and join
// rank 0's real communicator; the planted segment stays untouched.
// ---------------------------------------------------------------------------
enum class Planted { CrashedRun, OtherJob, OtherUser, Truncated };

class SimCommUntrustedRootinfo : public SimCommFailure, public ::testing::WithParamInterface<Planted> {};

pid_t dead_pid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

TEST_P(SimCommUntrustedRootinfo, IsNeverAttached) {
  const Planted kind = GetParam();
  if (kind == Planted::OtherUser && geteuid() != 0) GTEST_SKIP() << "needs root to chown the planted file";

  const uint64_t token = 0x5eed0000c0ffeeULL;
  const pid_t owner = kind == Planted::CrashedRun ? dead_pid() : getpid();
  char ctrl_name[32];
  std::snprintf(ctrl_name, sizeof(ctrl_name), "/chipmesh_%08x_%08x_c", static_cast<unsigned>(owner),
                static_cast<unsigned>(token & 0xffffffffu));

  int fd = shm_open(ctrl_name, O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0) << ctrl_name;
  ASSERT_EQ(ftruncate(fd, sizeof(sim::CtrlBlock)), 0);
  auto* ctrl = static_cast<sim::CtrlBlock*>(
      mmap(nullptr, sizeof(sim::CtrlBlock), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  close(fd);
  ASSERT_NE(ctrl, MAP_FAILED);
  ctrl->magic = sim::kCtrlMagic;
  ctrl->version = sim::kLayoutVersion;
  ctrl->nranks = 2;
  ctrl->token = token;
  ctrl->uid = geteuid();
  ctrl->root_pid = owner;

  sim::RootInfo ri{};
  ri.magic = sim::kRootInfoMagic;
  ri.version = sim::kLayoutVersion;
  ri.size = sizeof(ri);
  ri.token = token;
  ri.uid = geteuid();
  ri.root_pid = owner;
  ri.root_start = kind == Planted::CrashedRun ? 12345 : process::start_time(owner);
  ri.nranks = 2;
  ri.ctrl_size = sizeof(sim::CtrlBlock);
  std::snprintf(ri.ctrl_name, sizeof(ri.ctrl_name), "%s", ctrl_name);
  std::snprintf(ri.job, sizeof(ri.job), "%s", kind == Planted::OtherJob ? "other-job" : "");
  {
    int f = open(path.c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(f, 0);
    size_t bytes = kind == Planted::Truncated ? sizeof(ri) - 8 : sizeof(ri);
    ASSERT_EQ(write(f, &ri, bytes), static_cast<ssize_t>(bytes));
    if (kind == Planted::OtherUser) {
      ASSERT_EQ(fchown(f, 4242, 4242), 0);
    }
    close(f);
  }
  if (kind == Planted::OtherJob) setenv("CHIPMESH_JOB_TOKEN", "this-job", 1);

  // Rank 0 waits for rank 1's read of the planted file (the watch is made
  // here, before the fork, so no event can be missed).
  int in = inotify_init1(IN_CLOEXEC);
  ASSERT_GE(in, 0);
  ASSERT_GE(inotify_add_watch(in, path.c_str(), IN_CLOSE_NOWRITE), 0);
  auto outcomes = fork_ranks(2, [&](int rank) {
    if (rank == 0) {
      struct pollfd pfd{in, POLLIN, 0};
      CM_REQUIRE(poll(&pfd, 1, 30000) == 1) << "rank 1 never read the planted rootinfo";
    }
    CommHandle h = must_init(rank, 2, path);
    const CommContext* ctx = must_alloc(h, 4096);
    CM_REQUIRE(ctx->rankNum == 2);
    must_barrier(h);
    must_destroy(h);
  }, 60s);
  close(in);
  EXPECT_TRUE(all_ok(outcomes));
  EXPECT_EQ(ctrl->slots[0].pid.load(), 0) << "planted segment was attached";
  EXPECT_EQ(ctrl->slots[1].pid.load(), 0) << "planted segment was attached";
  EXPECT_EQ(ctrl->bar_arrived.load(), 0u);
  munmap(ctrl, sizeof(sim::CtrlBlock));
  shm_unlink(ctrl_name);
}

INSTANTIATE_TEST_SUITE_P(Kinds, SimCommUntrustedRootinfo,
                         ::testing::Values(Planted::CrashedRun, Planted::OtherJob, Planted::OtherUser,
                                           Planted::Truncated),
                         [](const auto& info) {
                           switch (info.param) {
                             case Planted::CrashedRun: return std::string("CrashedRun");
                             case Planted::OtherJob: return std::string("OtherJob");
                             case Planted::OtherUser: return std::string("OtherUser");
                             default: return std::string("Truncated");
                           }
                         });

}  // namespace
}  // namespace chipmesh::testing

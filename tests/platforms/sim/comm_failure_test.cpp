// The sim communicator's own failure paths: untrusted rootinfo files and
// segments (a crashed run's, another job's, another user's, a truncated
// one) are never attached, and nothing is left behind. The failures every
// platform shares (disagreements, dead and missing peers) are in the
// conformance suite (tests/platforms/conformance/comm_conformance.cpp).
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
#include "knobs/knobs.h"
#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

using namespace std::chrono_literals;

class SimCommFailure : public ::testing::Test {
 protected:
  ScratchDir scratch;
  std::string path = scratch.file("rootinfo");
  void TearDown() override {
    EXPECT_TRUE(scratch.entries().empty()) << "rootinfo (or its temp file) left behind";
    unsetenv("CHIPMESH_COMM_TIMEOUT_S");
    unsetenv("CHIPMESH_JOB_TOKEN");
    knobs::reload();
  }
};

// ---------------------------------------------------------------------------
// Untrusted rootinfo files: each variant plants a rootinfo file and a valid
// looking control segment, then runs a 2-rank communicator whose rank 0 only
// starts once rank 1 has read the planted file. Rank 1 must skip it and join
// rank 0's real communicator; the planted segment stays untouched. A live
// other job's file (OtherJob: the owner is this test) is never skipped nor
// replaced: both ranks fail at once with a CommError naming that job.
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
  // Rank 0 learns of rank 1's read of the planted file from inotify.
  if (const std::string why = no_inotify_reason(); !why.empty()) GTEST_SKIP() << why;

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
  if (kind == Planted::OtherJob) {
    setenv("CHIPMESH_COMM_TIMEOUT_S", "30", 1);
    setenv("CHIPMESH_JOB_TOKEN", "this-job", 1);
    knobs::reload();
  }

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
    if (kind == Planted::OtherJob) {
      // A live job (this test's parent) owns the path: neither rank waits
      // (a 30 s timeout would make that a TIMEOUT) nor replaces it.
      CommHandle h = comm_init(rank, 2, nullptr, path.c_str());
      CM_REQUIRE(h == nullptr) << "rank " << rank << " joined another job's path";
      CM_REQUIRE(comm_last_error_code() == CHIPMESH_ERR_COMM) << comm_last_error();
      rank_note(comm_last_error());
      return;
    }
    CommHandle h = must_init(rank, 2, path);
    const CommContext* ctx = must_alloc(h, 4096);
    CM_REQUIRE(ctx->rankNum == 2);
    must_barrier(h);
    must_destroy(h);
  }, 60s);
  close(in);
  EXPECT_TRUE(all_ok(outcomes));
  if (kind == Planted::OtherJob) {
    const std::string named = "in use by job 'other-job' (rank 0 pid " + std::to_string(getpid()) + ", alive)";
    for (const auto& o : outcomes) EXPECT_NE(o.message.find(named), std::string::npos) << o.describe();
    EXPECT_EQ(unlink(path.c_str()), 0) << "the live job's rootinfo must stay where it was";
  }
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

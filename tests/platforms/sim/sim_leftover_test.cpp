// The sim transport's leftover hook (inspect_leftover), which `chipmesh
// clean` asks: the sim's /dev/shm names, rootinfo files and rendezvous temp
// files are recognised and judged by their owner; anything else is not ours.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "common/process.h"
#include "comm_layout.h"
#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

struct Answer {
  int rc;
  int verdict;
  std::string reason;
};

Answer ask(int kind, const std::string& name) {
  static ChipWorker w;
  if (!w.initialized()) w.init("sim");
  Answer a{0, -1, ""};
  char reason[256] = "";
  a.rc = w.transport().inspect_leftover(kind, name.c_str(), &a.verdict, reason, sizeof(reason));
  a.reason = reason;
  return a;
}

pid_t reaped_pid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

std::string sim_name(pid_t pid, const char* suffix) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "chipmesh_%08x_a1b2c3d4_%s", static_cast<unsigned>(pid), suffix);
  return buf;
}

TEST(SimLeftovers, SharedMemoryNamesAreJudgedByTheirCreator) {
  Answer live = ask(CHIPMESH_LEFTOVER_SHM, sim_name(getpid(), "c"));
  EXPECT_EQ(live.rc, 0);
  EXPECT_EQ(live.verdict, CHIPMESH_LEFTOVER_LIVE);
  EXPECT_EQ(live.reason, "owner pid " + std::to_string(getpid()) + " is alive");
  const pid_t dead = reaped_pid();
  Answer stale = ask(CHIPMESH_LEFTOVER_SHM, sim_name(dead, "w12"));
  EXPECT_EQ(stale.verdict, CHIPMESH_LEFTOVER_STALE);
  EXPECT_EQ(stale.reason, "owner pid " + std::to_string(dead) + " is gone");
  // The pid is read in hex: 0x307b.
  EXPECT_NE(ask(CHIPMESH_LEFTOVER_SHM, "chipmesh_0000307b_a1b2c3d4_c").reason.find("pid 12411"), std::string::npos);
}

TEST(SimLeftovers, OtherNamesAreNotOurs) {
  for (const char* other : {"chipmesh", "chipmesh_", "chipmesh_0000307b_a1b2c3d4_", "chipmesh_0000307b_a1b2c3d4",
                            "chipmesh_0000307x_a1b2c3d4_c", "chipmesh_307b_a1b2c3d4_c", "chipmesh_demo_12345_in0",
                            "chipmesh_00000000_a1b2c3d4_c", "chipmesh_test_123_x", "chipmeshfoo"}) {
    Answer a = ask(CHIPMESH_LEFTOVER_SHM, other);
    EXPECT_EQ(a.rc, 0) << other;
    EXPECT_EQ(a.verdict, CHIPMESH_LEFTOVER_NOT_OURS) << other;
  }
}

TEST(SimLeftovers, RootinfoFilesAreJudgedByRankZero) {
  ScratchDir dir;
  auto plant = [&](const std::string& name, pid_t pid, uint64_t start) {
    sim::RootInfo ri{};
    ri.magic = sim::kRootInfoMagic;
    ri.version = sim::kLayoutVersion;
    ri.size = sizeof(ri);
    ri.uid = geteuid();
    ri.root_pid = pid;
    ri.root_start = start;
    ri.nranks = 2;
    ri.ctrl_size = sizeof(sim::CtrlBlock);
    std::ofstream(dir.file(name), std::ios::binary).write(reinterpret_cast<const char*>(&ri), sizeof(ri));
    return dir.file(name);
  };
  const pid_t dead = reaped_pid();
  const uint64_t my_start = process::start_time(getpid());
  Answer live = ask(CHIPMESH_LEFTOVER_FILE, plant("live", getpid(), my_start));
  EXPECT_EQ(live.verdict, CHIPMESH_LEFTOVER_LIVE);
  EXPECT_EQ(live.reason, "rank 0 pid " + std::to_string(getpid()) + " is alive");
  Answer gone = ask(CHIPMESH_LEFTOVER_FILE, plant("gone", dead, 12345));
  EXPECT_EQ(gone.verdict, CHIPMESH_LEFTOVER_STALE);
  EXPECT_EQ(gone.reason, "rank 0 pid " + std::to_string(dead) + " is gone");
  Answer reused = ask(CHIPMESH_LEFTOVER_FILE, plant("reused", getpid(), my_start + 1));
  EXPECT_EQ(reused.verdict, CHIPMESH_LEFTOVER_STALE);
  EXPECT_NE(reused.reason.find("now names another process"), std::string::npos) << reused.reason;

  { std::ofstream(dir.file("foreign")) << "hello"; }
  Answer foreign = ask(CHIPMESH_LEFTOVER_FILE, dir.file("foreign"));
  EXPECT_EQ(foreign.verdict, CHIPMESH_LEFTOVER_NOT_OURS);
  EXPECT_NE(foreign.reason.find("not a chipmesh rootinfo"), std::string::npos) << foreign.reason;
  EXPECT_EQ(ask(CHIPMESH_LEFTOVER_FILE, dir.file("absent")).verdict, CHIPMESH_LEFTOVER_NOT_OURS);

  // A rendezvous temp file: judged by the pid in its name.
  const std::string temp = dir.file("live.tmp." + std::to_string(dead) + ".000000000000002a");
  { std::ofstream(temp) << "x"; }
  Answer t = ask(CHIPMESH_LEFTOVER_FILE, temp);
  EXPECT_EQ(t.verdict, CHIPMESH_LEFTOVER_STALE);
  EXPECT_EQ(t.reason, "owner pid " + std::to_string(dead) + " is gone");
  for (const auto& e : dir.entries()) std::remove(dir.file(e).c_str());
}

TEST(SimLeftovers, AnUnknownKindIsAConfigError) {
  Answer a = ask(7, "x");
  EXPECT_EQ(a.rc, CHIPMESH_ERR_CONFIG);
}

}  // namespace
}  // namespace chipmesh::testing

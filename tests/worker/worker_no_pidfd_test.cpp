// A Worker where pidfd_open and pidfd_getfd do not exist: a kernel before
// 5.3 / 5.6, valgrind (which does not know them), or a sandbox whose
// seccomp policy refuses them. The test's child installs such a policy
// (ENOSYS for both; the chips inherit it) and then uses the Worker as a job
// would: bring-up, copies into the windows (the parent cannot map them
// without pidfd_getfd, so they take the ring), a collective, and a chip
// killed during a run, which must fail that run naming the chip (the
// watcher polls waitpid instead of blocking on pidfds) and leave the other
// chips usable and nothing behind.
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/worker.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// From now on pidfd_open and pidfd_getfd fail with ENOSYS in this process
// and every process it forks.
void deny_pidfd_syscalls() {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_getfd, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
  };
  struct sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  CM_REQUIRE(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) << std::strerror(errno);
  CM_REQUIRE(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0) << std::strerror(errno);
  CM_REQUIRE(syscall(SYS_pidfd_open, getpid(), 0) == -1 && errno == ENOSYS) << "the filter does not hold";
}

TEST(WorkerWithoutPidfds, BringUpCopiesACollectiveAndAKilledChipWork) {
  ScratchDir dir;
  auto outcomes = fork_ranks(1, [&](int) {
    deny_pidfd_syscalls();
    constexpr size_t kCount = 1000;
    ChipBufferSpec x;
    x.name = "x";
    x.dtype = DataType::INT32;
    x.count = kCount;
    x.nbytes = kCount * sizeof(int32_t);
    ChipBufferSpec y = x;
    y.name = "y";
    int fds[2];  // before init: the chips inherit the write end
    CM_REQUIRE(pipe(fds) == 0);
    Worker w(comm_config(3, dir.file("rootinfo"), 2 * x.nbytes, {x, y}));
    w.init();
    const auto contexts = w.chip_contexts();
    for (int c = 0; c < 3; ++c) {
      std::vector<int32_t> in(kCount);
      for (size_t i = 0; i < kCount; ++i) in[i] = static_cast<int32_t>(i) * (c + 1);
      w.copy_to(c, contexts[static_cast<size_t>(c)].buffer_ptrs.at("x"), in.data(), x.nbytes);
    }
    const CommDomain& world = w.world();
    w.run([&](Orchestrator& o) { o.allreduce(world, "x", "y", kCount, DataType::INT32, ReduceOp::SUM); });
    for (int c = 0; c < 3; ++c) {
      std::vector<int32_t> out(kCount, -1);
      w.copy_from(c, out.data(), contexts[static_cast<size_t>(c)].buffer_ptrs.at("y"), y.nbytes);
      for (size_t i = 0; i < kCount; ++i)
        CM_REQUIRE(out[i] == static_cast<int32_t>(i) * 6) << "chip " << c << " element " << i << ": " << out[i];
    }

    // Chip 1 killed once every kernel of the group has started (the others
    // block on it in theirs).
    const pid_t victim = w.chip_pid(1);
    std::thread killer([&] {
      char c;
      for (int entered = 0; entered < 3 && read(fds[0], &c, 1) == 1;) entered += c == 'r';
      kill(victim, SIGKILL);
    });
    std::string msg = chip_error_of([&] {
      w.run([&](Orchestrator& o) {
        o.submit_group({0, 1, 2}, task("test_block", {}, {static_cast<uint64_t>(fds[1])}));
      });
    });
    killer.join();
    close(fds[0]);
    close(fds[1]);
    CM_REQUIRE(contains(msg, "chip 1 (device 1, pid " + std::to_string(victim) + ")")) << msg;
    CM_REQUIRE(contains(msg, "killed by signal 9")) << msg;
    CM_REQUIRE(kill(victim, 0) == -1 && errno == ESRCH) << "chip 1 was not reaped";
    w.run([&](Orchestrator& o) { o.submit_group({0, 2}, task("test_noop")); });
    w.close();
    CM_REQUIRE(children_of(getpid()).empty()) << "a chip survived close() (or is a zombie)";
    CM_REQUIRE(shm_objects_of(victim) == 0) << "chip 1 left shared memory";
    rank_note(msg);
  }, std::chrono::seconds(60));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace chipmesh::testing

// Worker failure paths: bring-up errors and crashes, kernel failures, and a
// parent killed during bring-up or during a run. Each must name the chip,
// reap every child and leave nothing behind.
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/knobs.h"
#include "common/oom_kills.h"
#include "knobs/knobs.h"
#include "chipmesh/worker.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

using namespace std::chrono_literals;

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

class WorkerFailure : public ::testing::Test {
 protected:
  ScratchDir scratch;
  std::string rootinfo = scratch.file("rootinfo");
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo left behind"; }

  // Init must fail with a ChipError; returns its message and checks that no
  // chip process (or zombie) of this worker survives.
  std::string failed_init(WorkerConfig cfg) {
    Worker w(std::move(cfg));
    std::string msg = chip_error_of([&] { w.init(); });
    for (size_t i = 0; i < w.num_chips(); ++i) {
      pid_t p = w.chip_pid(static_cast<int>(i));
      EXPECT_TRUE(kill(p, 0) == -1 && errno == ESRCH) << "chip " << i << " (pid " << p << ") survived";
    }
    EXPECT_THROW(w.chip_contexts(), ConfigError);
    w.close();
    return msg;
  }
};

TEST_F(WorkerFailure, ConfigCountMismatchAndUseBeforeInit) {
  WorkerConfig cfg = comm_config(3, rootinfo, 4096);
  cfg.chip_bootstrap_configs.pop_back();
  EXPECT_THROW(Worker{cfg}, ConfigError);
  Worker w(comm_config(2, rootinfo, 4096));
  EXPECT_THROW(w.chip_contexts(), ConfigError);
  EXPECT_THROW(w.run([](Orchestrator&) {}), ConfigError);
  w.close();
  EXPECT_THROW(w.init(), ConfigError);  // closed
}

TEST_F(WorkerFailure, BogusConfigOnChipOneOfFourNamesItAndLeavesNothing) {
  WorkerConfig cfg = comm_config(4, rootinfo, 4096, {{"x", DataType::FLOAT32, 4, 16}});
  cfg.chip_bootstrap_configs[1].buffers[0].placement = "bogus";
  std::string msg = failed_init(cfg);
  EXPECT_TRUE(contains(msg, "chip 1 (device 1, pid ")) << msg;
  EXPECT_TRUE(contains(msg, "ConfigError: ")) << msg;
  EXPECT_TRUE(contains(msg, "bogus")) << msg;
}

TEST_F(WorkerFailure, ChipThatAbortsDuringBootstrap) {
  WorkerConfig cfg = comm_config(3, rootinfo, 4096);
  cfg.platform = kLibDir + "/libchipmesh_platform_crashy.so";
  cfg.device_ids[2] = 13;  // the crashy platform aborts in set_device(13)
  std::string msg = failed_init(cfg);
  EXPECT_TRUE(contains(msg, "chip 2 (device 13, pid ")) << msg;
  EXPECT_TRUE(contains(msg, "signal 6")) << msg;
}

// Rank 1 or rank 0 (then nobody publishes the rootinfo) never comes: with a
// rootinfo file and in the Worker's shared memory (an empty rootinfo_path).
// The error names the chip that hangs and its step, not its peer waiting
// for it in comm_init.
TEST_F(WorkerFailure, ChipThatNeverPublishesHitsTheDeadline) {
  for (const std::string& where : {rootinfo, std::string()}) {
    for (size_t hung : {1u, 0u}) {
      SCOPED_TRACE((where.empty() ? std::string("in memory") : where) + ", chip " + std::to_string(hung) + " hangs");
      WorkerConfig cfg = comm_config(2, where, 4096);
      cfg.platform = kLibDir + "/libchipmesh_platform_crashy.so";
      cfg.device_ids[hung] = 14;  // hangs in set_device(14)
      cfg.bootstrap_timeout = 1000ms;
      std::string msg = failed_init(cfg);
      EXPECT_TRUE(contains(msg, "chip " + std::to_string(hung) + " (device 14, pid ")) << msg;
      EXPECT_TRUE(contains(msg, "TimeoutError")) << msg;
      EXPECT_TRUE(contains(msg, "1000 ms")) << msg;
      EXPECT_TRUE(contains(msg, "still setting its device")) << msg;
      EXPECT_TRUE(contains(msg, "1 chip joining the communicator")) << msg;
    }
  }
}

TEST_F(WorkerFailure, UnknownPlatformFailsBeforeForking) {
  WorkerConfig cfg;
  cfg.device_ids = {0};
  cfg.platform = "nosuch";
  Worker w(cfg);
  EXPECT_THROW(w.init(), DeviceError);
  EXPECT_EQ(w.chip_pid(0), -1);
}

class WorkerKernelFailure : public WorkerFailure {
 protected:
  void SetUp() override {
    w = std::make_unique<Worker>(comm_config(4, rootinfo, 4096));
    w->init();
  }
  void TearDown() override {
    EXPECT_NO_THROW(w->close());  // usable for close() after any failure
    WorkerFailure::TearDown();
  }
  std::string run_failing(int chip, const std::string& kernel) {
    return chip_error_of([&] { w->run([&](Orchestrator& o) { o.submit(chip, task(kernel)); }); });
  }
  std::string prefix(int chip) {
    return "chip " + std::to_string(chip) + " (device " + std::to_string(chip) + ", pid " +
           std::to_string(w->chip_pid(chip)) + "): ";
  }
  std::unique_ptr<Worker> w;
};

TEST_F(WorkerKernelFailure, KernelReturningAnError) {
  std::string msg = run_failing(2, "test_fail");
  EXPECT_TRUE(contains(msg, prefix(2) + "ConfigError: kernel 'test_fail': bad input 42")) << msg;
  // The worker stays usable.
  w->run([&](Orchestrator& o) { o.submit_group({0, 1, 2, 3}, task("test_noop")); });
  msg = run_failing(1, "test_odd_status");
  EXPECT_TRUE(contains(msg, prefix(1) + "KernelError: kernel 'test_odd_status': returned status 77")) << msg;
}

TEST_F(WorkerKernelFailure, KernelThrowing) {
  std::string msg = run_failing(1, "test_throw");
  EXPECT_TRUE(contains(msg, prefix(1))) << msg;
  EXPECT_TRUE(contains(msg, "boom from a kernel")) << msg;
}

TEST_F(WorkerKernelFailure, KernelSegfaulting) {
  std::string msg = run_failing(3, "test_segv");
  EXPECT_TRUE(contains(msg, prefix(3))) << msg;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  EXPECT_TRUE(contains(msg, "killed by signal")) << msg;  // the sanitizer turns the SEGV into an abort
#else
  // With its last words: the signal was raise()d, not a fault.
  EXPECT_TRUE(contains(msg, "killed by signal 11 (Segmentation fault) while running kernel 'test_segv': SIGSEGV "
                            "raised by the chip itself"))
      << msg;
#endif
  // The dead chip is reported, the others still work.
  EXPECT_THROW(w->malloc(3, 8), ChipError);
  uint64_t p = w->malloc(0, 8);
  w->free(0, p);
  w->run([&](Orchestrator& o) { o.submit_group({0, 1, 2}, task("test_noop")); });
  EXPECT_THROW(w->run([&](Orchestrator& o) { o.submit(3, task("test_noop")); }), ChipError);
}

// A fault's ChipError says what it hit (chip/fault_report.h): a page no
// file backs, in which file, and which library's code touched it.
TEST_F(WorkerKernelFailure, KernelMeetingABusError) {
  std::string msg = run_failing(2, "test_sigbus");
  EXPECT_TRUE(contains(msg, prefix(2))) << msg;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  EXPECT_TRUE(contains(msg, "killed by signal")) << msg;  // the sanitizer's handler ends the chip its own way
#else
  EXPECT_TRUE(contains(msg, "killed by signal 7 (Bus error) while running kernel 'test_sigbus': SIGBUS (no page can "
                            "back the address) at 0x"))
      << msg;
  EXPECT_TRUE(contains(msg, " in /memfd:chipmesh_test_sigbus (deleted) at offset 0x8")) << msg;
  EXPECT_TRUE(contains(msg, "; instruction at 0x")) << msg;
  EXPECT_TRUE(contains(msg, "libchipmesh_test_kernels.so+0x")) << msg;
#endif
  w->run([&](Orchestrator& o) { o.submit_group({0, 1, 3}, task("test_noop")); });
}

TEST_F(WorkerKernelFailure, KernelFailingAnAssertionOrTerminatingSaysWhy) {
  // A failed assert() or an exception std::terminate met aborts the chip;
  // what it printed went to its stderr (a terminal a notebook user does not
  // see), so the error carries it.
  std::string msg = run_failing(1, "test_assert");
  EXPECT_TRUE(contains(msg, prefix(1) + "killed by signal 6 (Aborted)")) << msg;
#if !defined(__SANITIZE_THREAD__)  // TSan keeps its own handlers: none is installed
  EXPECT_TRUE(contains(msg, "SIGABRT raised by the chip itself")) << msg;
  if (dlsym(RTLD_DEFAULT, "__abort_msg")) {  // glibc's, where it keeps assert()'s message
    EXPECT_TRUE(contains(msg, "libc's message: ") && contains(msg, "test_kernels.cpp:") &&
                contains(msg, "Assertion `args->num_scalars == 12345 && \"a kernel's own check\"' failed."))
        << msg;
  }
#endif
  msg = run_failing(3, "test_terminate");
  EXPECT_TRUE(contains(msg, prefix(3) + "killed by signal 6 (Aborted)")) << msg;
#if !defined(__SANITIZE_THREAD__)
  EXPECT_TRUE(contains(msg, "SIGABRT raised by the chip itself: terminate called after throwing an instance of "
                            "'std::logic_error': what(): the kernel's invariant broke"))
      << msg;
#endif
  w->run([&](Orchestrator& o) { o.submit_group({0, 2}, task("test_noop")); });
}

TEST_F(WorkerKernelFailure, KernelExitingItsChipSaysWhichKernelAndWhy) {
  for (uint64_t status : {0, 3}) {
    const pid_t pid = w->chip_pid(static_cast<int>(1 + status % 2));
    const int chip = static_cast<int>(1 + status % 2);
    const std::string msg =
        chip_error_of([&] { w->run([&](Orchestrator& o) { o.submit(chip, task("test_exit", {}, {status})); }); });
    EXPECT_TRUE(contains(msg, "chip " + std::to_string(chip) + " (device " + std::to_string(chip) + ", pid " +
                                  std::to_string(pid) + "): exited with status " + std::to_string(status) +
                                  " while running kernel 'test_exit' (a kernel returns its status; exit() in a "
                                  "kernel ends the chip process)"))
        << msg;
  }
  w->run([&](Orchestrator& o) { o.submit_group({0, 3}, task("test_noop")); });
}

TEST_F(WorkerKernelFailure, UnknownKernelAndLibrary) {
  std::string msg = run_failing(0, "no_such_kernel");
  EXPECT_TRUE(contains(msg, "kernel 'no_such_kernel' not found")) << msg;
  msg = chip_error_of([&] { w->run([&](Orchestrator& o) { o.submit(0, task("k", {}, {}, "/nonexistent/lib.so")); }); });
  EXPECT_TRUE(contains(msg, "/nonexistent/lib.so")) << msg;
}

TEST_F(WorkerKernelFailure, TasksOfTheKernelBeforeRunItOrFailAlikeAndFailedEntriesAreReusedCleanly) {
  // A task of the kernel queued before carries no names (TaskDesc::same_kernel):
  // an unknown kernel named twice fails twice, a kernel that follows it runs,
  // and runs of one kernel with other kernels between run the kernel named.
  for (int k = 0; k < 2; ++k) {
    std::string msg = run_failing(0, "no_such_kernel");
    EXPECT_TRUE(contains(msg, "kernel 'no_such_kernel' not found")) << k << ": " << msg;
  }
  const uint64_t buf = w->malloc(0, 64);
  auto fill = [&](uint64_t byte) { return task("test_fill", {{buf, DataType::UINT8, {64}}}, {byte}); };
  auto byte_at_chip = [&] {
    unsigned char host[64];
    w->copy_from(0, host, buf, sizeof host);
    for (unsigned char b : host) EXPECT_EQ(b, host[0]);
    return static_cast<int>(host[0]);
  };
  w->run([&](Orchestrator& o) { o.submit(0, fill(3)); });
  EXPECT_EQ(byte_at_chip(), 3);
  w->run([&](Orchestrator& o) {
    o.submit(0, fill(4));
    o.submit(0, task("test_noop"));
    o.submit(0, fill(5));
    o.submit(0, fill(6));
  });
  EXPECT_EQ(byte_at_chip(), 6);
  // The chip writes an entry's status only when its request fails; the
  // parent clears it for every request. The failed entry's slot comes round
  // again within 2 * kRingDepth requests, which must all succeed.
  std::string msg = run_failing(0, "test_fail");
  EXPECT_TRUE(contains(msg, "bad input 42")) << msg;
  w->run([&](Orchestrator& o) {
    for (int i = 0; i < 300; ++i) o.submit(0, i % 3 == 0 ? fill(static_cast<uint64_t>(i % 200)) : task("test_noop"));
  });
  EXPECT_EQ(byte_at_chip(), 297 % 200);
  w->free(0, buf);
}

TEST_F(WorkerKernelFailure, FirstErrorWinsAndBlockedPeersAreReleased) {
  // Chips 0..2 wait on a flag nobody sets; chip 3 fails. run() must report
  // chip 3 and return promptly: the blocked kernels are aborted.
  auto start = std::chrono::steady_clock::now();
  std::string msg = chip_error_of([&] {
    w->run([&](Orchestrator& o) {
      o.submit_group({0, 1, 2, 3}, std::vector<Task>{task("test_block"), task("test_block"), task("test_block"),
                                                      task("test_fail")});
    });
  });
  EXPECT_TRUE(contains(msg, prefix(3))) << msg;
  // Released by the abort, not by their own deadline (CHIPMESH_COMM_TIMEOUT_S).
  EXPECT_LT(std::chrono::steady_clock::now() - start, comm_timeout()) << "blocked kernels were not released";
}

// ---------------------------------------------------------------------------
// A parent killed with SIGKILL: its chips must go within 2 s and leave
// nothing in /dev/shm or on disk.
// ---------------------------------------------------------------------------

// Runs `body` in a forked process (the Worker's parent); returns its pid.
template <typename F>
pid_t spawn(F&& body) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    try {
      body();
    } catch (...) {
    }
    _exit(0);
  }
  return pid;
}

TEST_F(WorkerFailure, ParentKilledDuringBringUp) {
  // 4 chips of a 5-rank communicator: they block in comm_init until killed.
  if (const std::string why = no_inotify_reason(); !why.empty()) GTEST_SKIP() << why;
  int in = inotify_init1(IN_CLOEXEC);
  ASSERT_GE(in, 0);
  ASSERT_GE(inotify_add_watch(in, scratch.path().c_str(), IN_MOVED_TO), 0);
  WorkerConfig cfg = comm_config(4, rootinfo, 4096);
  for (auto& c : cfg.chip_bootstrap_configs) c.comm->nranks = 5;
  pid_t parent = spawn([&] {
    Worker w(cfg);
    w.init();
  });
  // Rank 0 published the rootinfo: the bring-up is under way and names exist.
  struct pollfd p{in, POLLIN, 0};
  const bool started = poll(&p, 1, 30000) == 1;
  close(in);
  // Every chip that exists now is every chip there will be: the parent dies
  // next, and a chip forked that late exits at its own parent check.
  std::vector<pid_t> chips = children_of(parent);
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  ASSERT_TRUE(started) << "bring-up never started";
  EXPECT_GE(chips.size(), 1u);
  EXPECT_TRUE(wait_gone(chips, 30s)) << "chip processes outlived their parent (30 s deadline)";
}

TEST_F(WorkerFailure, ParentKilledDuringARun) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t parent = spawn([&] {
    close(fds[0]);
    Worker w(comm_config(3, rootinfo, 4096));
    w.init();
    std::string pids;
    for (int i = 0; i < 3; ++i) pids += std::to_string(w.chip_pid(i)) + " ";
    pids += "\n";
    if (write(fds[1], pids.data(), pids.size()) < 0) _exit(1);
    w.run([&](Orchestrator& o) {
      o.submit_group({0, 1, 2}, task("test_block", {}, {static_cast<uint64_t>(fds[1])}));
    });
  });
  close(fds[1]);
  // The pid line, then one byte per chip that entered its kernel.
  std::string got;
  char buf[256];
  size_t blocked = 0;
  while (blocked < 3) {
    struct pollfd p{fds[0], POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 30000), 1) << "kernels never started";
    ssize_t n = read(fds[0], buf, sizeof(buf));
    ASSERT_GT(n, 0);
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == 'r') ++blocked;
      else got.push_back(buf[i]);
    }
  }
  close(fds[0]);
  std::vector<pid_t> chips;
  std::istringstream is(got);
  for (pid_t c; is >> c;) chips.push_back(c);
  ASSERT_EQ(chips.size(), 3u);
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  EXPECT_TRUE(wait_gone(chips, 30s)) << "chip processes outlived their parent (30 s deadline)";
}

// A host program that ignores SIGCHLD (the kernel reaps the chips) or runs
// its own waitpid(-1) reaper: the Worker learns of every exit through pidfds
// all the same, so init, run and close return and a dead chip is named,
// only its exit status is unknown. Each variant runs in a child of its own.
void worker_survives_foreign_reaping(bool ignore_sigchld) {
  ScratchDir dir;
  auto outcomes = fork_ranks(1, [&](int) {
    std::thread reaper;
    if (ignore_sigchld) signal(SIGCHLD, SIG_IGN);
    Worker w(comm_config(3, dir.file("rootinfo"), 4096));
    w.init();
    if (!ignore_sigchld) {
      reaper = std::thread([] {  // ends once every child is reaped (ECHILD)
        while (waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
        }
      });
    }
    w.run([&](Orchestrator& o) { o.submit_group({0, 1, 2}, task("test_noop")); });
    std::string msg = chip_error_of([&] { w.run([&](Orchestrator& o) { o.submit(2, task("test_segv")); }); });
    CM_REQUIRE(contains(msg, "chip 2 (device 2, pid " + std::to_string(w.chip_pid(2)) + ")")) << msg;
    w.run([&](Orchestrator& o) { o.submit_group({0, 1}, task("test_noop")); });
    w.close();
    if (reaper.joinable()) reaper.join();
    rank_note(msg);
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  EXPECT_TRUE(dir.entries().empty());
}

TEST(WorkerForeignReaping, SigchldIgnored) { worker_survives_foreign_reaping(true); }
TEST(WorkerForeignReaping, AnotherThreadReapsEveryChild) { worker_survives_foreign_reaping(false); }

// A chip stopped by SIGSTOP in a task, its peers blocked on it in theirs:
// run() fails after CHIPMESH_STOPPED_CHIP_TIMEOUT_S naming the stopped chip
// (not endless), the peers' kernels are aborted, the stopped chip is killed
// and the others stay usable. In a child: the knob is set there only.
TEST(WorkerStoppedChip, RunFailsNamingItAndThePeersStayUsable) {
  ScratchDir dir;
  auto outcomes = fork_ranks(1, [&](int) {
    setenv("CHIPMESH_STOPPED_CHIP_TIMEOUT_S", "1", 1);
    knobs::reload();
    Worker w(comm_config(3, dir.file("rootinfo"), 4096));
    w.init();
    const pid_t stopped = w.chip_pid(2);
    std::string msg = chip_error_of([&] {
      w.run([&](Orchestrator& o) {
        o.submit_group({0, 1}, task("test_block"));
        o.submit(2, task("test_stop_self"));
      });
    });
    CM_REQUIRE(contains(msg, "chip 2 (device 2, pid " + std::to_string(stopped) + "): stopped by a signal")) << msg;
    CM_REQUIRE(kill(stopped, 0) == -1 && errno == ESRCH) << "the stopped chip was not killed and reaped";
    w.run([&](Orchestrator& o) { o.submit_group({0, 1}, task("test_noop")); });
    w.close();
    rank_note(msg);
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  EXPECT_TRUE(dir.entries().empty());
}

// A chip ended by SIGTERM or SIGINT (a kill, a Ctrl-C that reached it)
// while its group runs, the others blocked on it in their kernels: run()
// fails naming that chip, the others' kernels are aborted, they stay
// usable, and nothing of the job is left (issue 12's faults, during a run).
class WorkerChipSignalled : public ::testing::TestWithParam<int> {};

TEST_P(WorkerChipSignalled, DuringARunFailsNamingItAndThePeersStayUsable) {
  const int sig = GetParam();
  ScratchDir dir;
  auto outcomes = fork_ranks(1, [&](int) {
    int fds[2];
    CM_REQUIRE(pipe(fds) == 0);
    Worker w(comm_config(3, dir.file("rootinfo"), 4096));
    w.init();
    const pid_t victim = w.chip_pid(1);
    std::thread killer([&] {
      char c;
      for (int entered = 0; entered < 3 && read(fds[0], &c, 1) == 1;) entered += c == 'r';
      kill(victim, sig);  // every kernel of the group has started
    });
    std::string msg = chip_error_of([&] {
      w.run([&](Orchestrator& o) {
        o.submit_group({0, 1, 2}, task("test_block", {}, {static_cast<uint64_t>(fds[1])}));
      });
    });
    killer.join();
    CM_REQUIRE(contains(msg, "chip 1 (device 1, pid " + std::to_string(victim) + ")")) << msg;
    // Its handler cleaned up and exited with 128 + the signal: said so, and
    // not taken for a kernel's exit().
    CM_REQUIRE(contains(msg, "exited with status " + std::to_string(128 + sig) +
                                 " while running kernel 'test_block' (after " + strsignal(sig) +
                                 ": the chip removed what it owned and exited)"))
        << msg;
    CM_REQUIRE(!contains(msg, "exit() in a kernel")) << msg;
    CM_REQUIRE(kill(victim, 0) == -1 && errno == ESRCH) << "chip 1 outlived its signal";
    w.run([&](Orchestrator& o) { o.submit_group({0, 2}, task("test_noop")); });
    w.close();
    close(fds[0]);
    close(fds[1]);
    CM_REQUIRE(shm_objects_of(victim) == 0) << "chip 1 left shared memory";
    rank_note(msg);
  }, std::chrono::seconds(60));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  EXPECT_TRUE(dir.entries().empty());
}

INSTANTIATE_TEST_SUITE_P(Signals, WorkerChipSignalled, ::testing::Values(SIGTERM, SIGINT),
                         [](const auto& info) { return info.param == SIGTERM ? "SIGTERM" : "SIGINT"; });

// Out of file descriptors right after the forks (no pidfd for every chip):
// init fails naming the operation and RLIMIT_NOFILE, and every chip already
// forked is killed and reaped (it used to be left running, then a zombie).
TEST(WorkerResourceLimits, NoPidfdsForTheChipsNamesTheLimitAndReapsThem) {
  auto outcomes = fork_ranks(1, [&](int) {
    WorkerConfig cfg;
    cfg.device_ids = {0, 1, 2, 3};
    Worker w(cfg);
    // The limit bounds fd numbers, and new fds take the lowest free ones:
    // room below it for the watcher's eventfd and one pidfd, not four.
    std::vector<int> free_fds;
    for (int fd = 0; free_fds.size() < 3; ++fd)
      if (fcntl(fd, F_GETFD) == -1) free_fds.push_back(fd);
    const rlim_t limit = static_cast<rlim_t>(free_fds[2]);
    struct rlimit saved{};
    CM_REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0) << std::strerror(errno);
    struct rlimit rl{limit, saved.rlim_max};
    CM_REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0) << std::strerror(errno);
    std::string msg;
    try {
      w.init();
    } catch (const DeviceError& e) {
      msg = e.what();
    }
    CM_REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0) << std::strerror(errno);  // room to look at /proc again
    CM_REQUIRE(contains(msg, "cannot watch the 4 chips")) << "init: " << msg;
    CM_REQUIRE(contains(msg, "RLIMIT_NOFILE (open files) = " + std::to_string(limit))) << msg;
    CM_REQUIRE(children_of(getpid()).empty()) << "a chip survived (or is a zombie): " << msg;
    rank_note(msg);
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
}

// Tasks (processes and threads) the user nobody already runs on this
// machine: they count against nobody's RLIMIT_NPROC too.
rlim_t tasks_of_nobody() {
  rlim_t n = 0;
  for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(proc.path() / "task", ec)) {
      std::ifstream status(task.path() / "status");
      for (std::string line; std::getline(status, line);)
        if (line.rfind("Uid:", 0) == 0) {
          n += std::stoul(line.substr(4)) == 65534;
          break;
        }
    }
  }
  return n;
}

// Why an RLIMIT_NPROC test cannot run here ("" when it can): the limit
// binds only a non-root user, so the rank becomes nobody, which needs root.
std::string nproc_skip_reason() {
  if (geteuid() != 0) return "needs root to become a user whose process count is known";
#if defined(__SANITIZE_THREAD__)
  return "ThreadSanitizer's own threads count against RLIMIT_NPROC";
#endif
  return "";
}

// In a forked rank, as nobody with RLIMIT_NPROC = `limit`: the message of
// the DeviceError from init() of `chips` chips (error_of: another error's
// message, "" when none), called on a thread of its own when
// `off_main_thread` (the limit set once that thread exists).
std::string init_error_as_nobody(rlim_t limit, int chips, bool off_main_thread) {
  CM_REQUIRE(setgid(65534) == 0 && setuid(65534) == 0) << "cannot become nobody: " << std::strerror(errno);
  WorkerConfig cfg;
  for (int c = 0; c < chips; ++c) cfg.device_ids.push_back(c);
  Worker w(cfg);
  std::string msg;
  auto init = [&] {
    struct rlimit rl{limit, limit};
    if (setrlimit(RLIMIT_NPROC, &rl) != 0)
      msg = std::string("setrlimit: ") + std::strerror(errno);
    else
      msg = error_of<DeviceError>([&] { w.init(); });
  };
  if (off_main_thread)
    std::thread(init).join();
  else
    init();
  return msg;
}

// Out of processes (RLIMIT_NPROC) in the middle of the forks: init fails
// naming the fork, the chip, the limit, and every chip already forked is
// killed and reaped. The limit binds only a non-root user, so the child
// drops to nobody first (skipped when the test does not run as root).
TEST(WorkerResourceLimits, ForkFailingAtRlimitNprocNamesItAndReapsTheChipsForked) {
  if (const std::string why = nproc_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const rlim_t limit = tasks_of_nobody() + 3;  // this process and two chips; the third fork fails
  auto outcomes = fork_ranks(1, [&](int) {
    const std::string msg = init_error_as_nobody(limit, 4, false);
    CM_REQUIRE(contains(msg, "fork of chip 2 of 4 failed")) << "init: " << msg;
    CM_REQUIRE(contains(msg, "RLIMIT_NPROC (processes) = " + std::to_string(limit))) << msg;
    CM_REQUIRE(contains(msg, "the 2 chips already forked were killed and reaped")) << msg;
    CM_REQUIRE(children_of(getpid()).empty()) << "a chip survived (or is a zombie): " << msg;
    rank_note(msg);
  }, std::chrono::seconds(60));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
}

// Out of tasks right after the forks: the chips' watcher thread cannot
// start. init fails naming it and the limit, and every chip is reaped.
TEST(WorkerResourceLimits, WatcherThreadFailingAtRlimitNprocNamesItAndReapsTheChips) {
  if (const std::string why = nproc_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const rlim_t limit = tasks_of_nobody() + 1 + 4;  // this process and its four chips: no room for a thread
  auto outcomes = fork_ranks(1, [&](int) {
    const std::string msg = init_error_as_nobody(limit, 4, false);
    CM_REQUIRE(contains(msg, "cannot watch the 4 chips")) << "init: " << msg;
    CM_REQUIRE(contains(msg, "RLIMIT_NPROC (processes and threads) = " + std::to_string(limit))) << msg;
    CM_REQUIRE(children_of(getpid()).empty()) << "a chip survived (or is a zombie): " << msg;
    rank_note(msg);
  }, std::chrono::seconds(60));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
}

// init() off the main thread with no task to spare: the thread the chips
// are forked from cannot start. init fails naming it and the limit, having
// forked nothing.
TEST(WorkerResourceLimits, ChipParentThreadFailingAtRlimitNprocNamesIt) {
  if (const std::string why = nproc_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const rlim_t limit = tasks_of_nobody() + 2;  // this process's two threads
  auto outcomes = fork_ranks(1, [&](int) {
    const std::string msg = init_error_as_nobody(limit, 2, true);
    CM_REQUIRE(contains(msg, "cannot start the thread the chips are forked from")) << "init: " << msg;
    CM_REQUIRE(contains(msg, "RLIMIT_NPROC (processes and threads) = " + std::to_string(limit))) << msg;
    CM_REQUIRE(children_of(getpid()).empty()) << "a chip was forked: " << msg;
    rank_note(msg);
  }, std::chrono::seconds(60));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
}

// Two Worker jobs of 2 chips started at once on one rootinfo path, with one
// CHIPMESH_JOB_TOKEN, 100 times: ranks of the two never meet (each job's
// allreduce sums only its own chips' values, or the job fails), a job that
// fails does so at once with an error naming the path (never at a
// deadline), and at least one of the two always completes (issue 12 item 1).
TEST(WorkerTwoJobs, OnOneRootinfoPathNeverMixAndTheLoserFailsAtOnce) {
  int both_ran = 0, one_failed = 0;
  for (int run = 0; run < 100; ++run) {
    ScratchDir dir;
    const std::string path = dir.file("rootinfo");
    auto outcomes = fork_ranks(2, [&](int job) {
      setenv("CHIPMESH_JOB_TOKEN", "shared-token", 1);
      knobs::reload();
      const auto t0 = std::chrono::steady_clock::now();
      try {
        Worker w(comm_config(2, path, 4096, {{"x", DataType::INT32, 4, 16}}));
        w.init();
        const CommDomain& world = w.world();
        const int32_t mine[4] = {job + 1, job + 1, job + 1, job + 1};
        for (int c = 0; c < 2; ++c) w.copy_to(c, world.context(c).buffer_ptrs.at("x"), mine, sizeof mine);
        w.run([&](Orchestrator& o) { o.allreduce(world, "x", "x", 4, DataType::INT32, ReduceOp::SUM); });
        for (int c = 0; c < 2; ++c) {
          int32_t got[4] = {};
          w.copy_from(c, got, world.context(c).buffer_ptrs.at("x"), sizeof got);
          for (int32_t v : got) CM_REQUIRE(v == 2 * (job + 1)) << "job " << job << " chip " << c << " summed " << v;
        }
        w.close();
        rank_note("ran");
      } catch (const ChipError& e) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::string msg = e.what();
        CM_REQUIRE(s < 10) << "the failure took " << s << " s: " << msg;
        CM_REQUIRE(msg.find(path) != std::string::npos && msg.find("TimeoutError") == std::string::npos) << msg;
        rank_note("failed after " + std::to_string(s) + " s: " + msg);
      }
    }, std::chrono::seconds(60));
    ASSERT_TRUE(all_ok(outcomes)) << "run " << run << ": " << outcomes[0].describe() << outcomes[1].describe();
    const bool ran0 = outcomes[0].message == "ran", ran1 = outcomes[1].message == "ran";
    ASSERT_TRUE(ran0 || ran1) << "run " << run << ": both failed: " << outcomes[0].message << " / "
                              << outcomes[1].message;
    (ran0 && ran1 ? both_ran : one_failed) += 1;
    EXPECT_TRUE(dir.entries().empty()) << "run " << run << " left " << dir.entries().front();
  }
  std::printf("  100 runs: both jobs ran in %d, one failed at once in %d\n", both_ran, one_failed);
}

// The killer thread of WorkerKilledChip runs while the Worker forks the
// chips, so it must not allocate: a chip forked while another thread holds
// an allocator lock (ASan's, which GCC 12's libasan does not take around a
// fork) deadlocks in its first malloc and never gets to its window (seen
// once in CI under ASan: 60 s, then "died before publishing its bootstrap
// mailbox"). Hence system calls into stack buffers below (snprintf and
// strtol allocate nothing).

// This process's children in the order they were forked (the order the
// kernel lists them in), at most `cap`.
size_t children_in_fork_order(pid_t* out, size_t cap) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", getpid(), getpid());
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[512];
  const ssize_t got = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  buf[std::max<ssize_t>(got, 0)] = '\0';
  size_t n = 0;
  for (char *p = buf, *end = nullptr; n < cap; p = end) {
    const long v = std::strtol(p, &end, 10);
    if (end == p) break;
    out[n++] = static_cast<pid_t>(v);
  }
  return n;
}

// Whether `pid` maps a /dev/shm object "chipmesh_..._s" (the windows' object
// of a communicator for which no rank adopted a file).
bool maps_windows_object(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/maps", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  constexpr std::string_view kName = "/dev/shm/chipmesh_";
  char buf[8192];
  size_t have = 0;
  bool found = false;
  for (ssize_t got; !found && (got = ::read(fd, buf + have, sizeof buf - have)) > 0;) {
    have += static_cast<size_t>(got);
    size_t start = 0;  // of the first line not yet looked at
    for (size_t k = 0; k < have; ++k) {
      if (buf[k] != '\n') continue;
      const std::string_view line(buf + start, k - start);
      if (const size_t at = line.find(kName); at != std::string_view::npos) {
        std::string_view name = line.substr(at);
        name = name.substr(0, name.find(' '));  // " (deleted)" once unlinked
        found = found || (name.size() >= 2 && name.substr(name.size() - 2) == "_s");
      }
      start = k + 1;
    }
    if (start == 0 && have == sizeof buf) start = have;  // a line longer than the buffer: not a name of ours
    std::memmove(buf, buf + start, have - start);
    have -= start;
  }
  ::close(fd);
  return found;
}

// A chip SIGKILLed right after the windows' object exists and it maps it
// (a chip killed so gets no chance to remove anything): init fails naming
// it, and the Worker sweeps what it left (as rank 0 the windows' object,
// the control segment and the rootinfo file), so nothing of the job stays
// (issue 12, item 3). Both rendezvous: a rootinfo file, and the Worker's
// shared memory (an empty rootinfo_path). In a child: the pause knob is set
// there only.
class WorkerKilledChip : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(WorkerKilledChip, SigkilledOnceItsWindowExistsLeavesNothing) {
  const auto [victim_rank, in_memory] = GetParam();
  ScratchDir dir;
  auto outcomes = fork_ranks(1, [&](int) {
    setenv("CHIPMESH_TEST_PAUSE_AT", "window_made", 1);
    unsetenv("CHIPMESH_RENDEZVOUS_DIR");
    knobs::reload();
    Worker w(comm_config(3, in_memory ? std::string() : dir.file("rootinfo"), 1 << 20));
    pid_t chips[4] = {};  // chip i is rank i; a 4th child would be a bug
    size_t nchips = 0;
    pid_t victim = -1;
    std::thread killer([&] {  // allocates nothing (see children_in_fork_order)
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while ((nchips = children_in_fork_order(chips, 4)) < 3 && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      // Every chip pauses once it maps the windows' object (rank 0 made it,
      // "_s"): wait for all three.
      bool all = nchips == 3;
      for (size_t i = 0; i < nchips; ++i) {
        while (!maps_windows_object(chips[i]) && std::chrono::steady_clock::now() < until) std::this_thread::yield();
        all = all && maps_windows_object(chips[i]);
      }
      if (all) victim = chips[victim_rank];
      if (victim > 0) kill(victim, SIGKILL);
      else for (size_t i = 0; i < nchips; ++i) kill(chips[i], SIGKILL);  // never got there: end init, fail below
    });
    std::string msg = chip_error_of([&] { w.init(); });
    killer.join();
    CM_REQUIRE(victim > 0) << "the chips never mapped the windows' object; init said: " << msg;
    CM_REQUIRE(contains(msg, "pid " + std::to_string(victim)) && contains(msg, "signal 9")) << msg;
    if (oom_kills::count()) {  // a kill -9, not the OOM killer's (worker_oom_test.cpp has that one)
      CM_REQUIRE(contains(msg, "(not by the kernel's OOM killer: /proc/vmstat oom_kill stayed at ")) << msg;
    }
    for (size_t i = 0; i < nchips; ++i)
      CM_REQUIRE(shm_objects_of(chips[i]) == 0) << "chip pid " << chips[i] << " left shared memory";
  }, 90s);
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  EXPECT_TRUE(dir.entries().empty()) << "the rootinfo file was left";
}

INSTANTIATE_TEST_SUITE_P(Ranks, WorkerKilledChip, ::testing::Combine(::testing::Values(0, 2), ::testing::Bool()),
                         [](const auto& info) {
                           return "rank" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_memory" : "_file");
                         });

}  // namespace
}  // namespace chipmesh::testing

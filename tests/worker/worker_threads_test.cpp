// Workers in threaded programs.
//
// A chip forked while another thread of the parent holds a process-wide lock
// the chip takes would start with it held for good and hang on it: the
// forks hold those locks (src/worker/fork_locks.h). Shown with the log's
// lock: this thread holds it while another thread runs init(), and lets go
// once a thread of init() waits for it (the fix) or once a chip exists
// (without the fix the chips, started with it held, hang at their first log
// line and init() fails at its deadline).
//
// Workers of their own in several threads are independent: each brings up,
// reduces on a domain and closes while the others do (run whole under TSan
// in CI, which also checks that they share nothing unsynchronized).
//
// A chip's parent-death signal follows the thread that forked it: when
// init() runs off the main thread, the chips are forked by a thread of the
// Worker's own (src/worker/chip_parent_thread.h), so they outlive the thread
// that called init().
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/worker.h"
#include "knobs/knobs.h"
#include "logging/log.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

std::vector<pid_t> threads_of_this_process() {
  std::vector<pid_t> tids;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task"))
    tids.push_back(static_cast<pid_t>(std::stol(e.path().filename().string())));
  return tids;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(WorkerThreads, ChipsForkedWhileAnotherThreadHoldsTheLogLockDoNotInheritIt) {
  struct Restore {
    ~Restore() { knobs::reload(); }
  } restore;
  ScratchDir scratch;
  const std::string log_file = scratch.file("log");
  // INIT lines only: each chip writes one as its bring-up ends, the parent
  // none before it forks (so the thread in init() waits for the lock in
  // the forks and nowhere else).
  knobs::set_for_process(knobs::Id::Debug, "INFO");
  knobs::set_for_process(knobs::Id::DebugSubsys, "INIT");
  knobs::set_for_process(knobs::Id::DebugFile, log_file);
  ASSERT_TRUE(log::enabled(log::INFO, log::INIT));  // reads the gate (and writes the version line) now

  WorkerConfig cfg = comm_config(2, scratch.file("rootinfo"), 64 * 1024);
  cfg.bootstrap_timeout = std::chrono::seconds(30);
  Worker w(cfg);
  std::mutex& lock = log::detail::output_mutex();
  lock.lock();
  std::string error;
  std::thread init_thread([&] {
    try {
      w.init();
      w.run([](Orchestrator& o) { o.submit_group({0, 1}, task("test_noop")); });
      w.close();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool waits = false, forked = false;
  while (!waits && !forked && std::chrono::steady_clock::now() < deadline) {
    for (pid_t t : threads_of_this_process()) {
      if (t == self) continue;
      waits = waits || futex_word_waited_on(t) == reinterpret_cast<uintptr_t>(&lock);
      forked = forked || !children_of(t).empty();
    }
    std::this_thread::yield();
  }
  lock.unlock();
  init_thread.join();
  EXPECT_TRUE(waits) << "init() forked chips while this thread held the log's lock"
                     << (forked ? "" : " (or neither happened within 60 s)");
  ASSERT_EQ(error, "");
  std::ifstream f(log_file);
  const std::string lines((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(count_of(lines, "init timings: device"), 2u) << "each chip logs its bring-up:\n" << lines;
  std::remove(log_file.c_str());
}

TEST(WorkerThreads, ChipsOutliveTheThreadThatCalledInit) {
  ScratchDir scratch;
  const size_t count = 1024;
  Worker w(comm_config(2, scratch.file("rootinfo"), 64 * 1024,
                       {ChipBufferSpec{"x", DataType::INT32, count, count * sizeof(int32_t)}}));
  pid_t tid = 0;
  std::thread([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    w.init();
  }).join();
  // join() returns before the thread's exit is through (the parent-death
  // signals go out later in it); once its /proc entry is gone it is.
  const std::string entry = "/proc/self/task/" + std::to_string(tid);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::filesystem::exists(entry) && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_FALSE(std::filesystem::exists(entry)) << "the thread that called init() did not end within 30 s";
  std::vector<int32_t> ones(count, 1), out(count, 0);
  for (int c = 0; c < 2; ++c) w.copy_to(c, w.chip_contexts()[c].buffer_ptrs.at("x"), ones.data(), count * 4);
  w.run([&](Orchestrator& o) {
    o.allreduce(w.world(), "x", "x", count, DataType::INT32, ReduceOp::SUM);
  });
  w.copy_from(1, out.data(), w.chip_contexts()[1].buffer_ptrs.at("x"), count * 4);
  EXPECT_EQ(out, std::vector<int32_t>(count, 2));
  w.close();
}

TEST(WorkerThreads, WorkersInSeveralThreadsAreIndependent) {
#if defined(__SANITIZE_ADDRESS__)
  // g++ 12's ASan does not hold its allocator's locks across fork(): a chip
  // forked while another thread allocates starts with one held and hangs at
  // its first malloc (seen in CI: both chips in SizeClassAllocator64's
  // GetFromAllocator). glibc's malloc is locked across fork by glibc itself.
  GTEST_SKIP() << "ASan's allocator is not fork-safe in a threaded process (g++ 12)";
#endif
  constexpr int kThreads = 3, kRounds = 5;
  constexpr size_t kCount = 1000;
  std::atomic<int> done{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int round = 0; round < kRounds; ++round) {
          WorkerConfig cfg;
          cfg.device_ids = {0, 1};
          Worker w(cfg);
          w.init();
          w.run([&](Orchestrator& o) {
            CommDomain d = o.allocate_domain("d", {0, 1}, 64 * 1024,
                                             {ChipBufferSpec{"x", DataType::INT32, kCount, kCount * 4}});
            for (int c = 0; c < 2; ++c) {
              std::vector<int32_t> mine(kCount, (t + 1) * 100 + round * 10 + c);
              w.copy_to(c, d.context(c).buffer_ptrs.at("x"), mine.data(), kCount * 4);
            }
            o.allreduce(d, "x", "x", kCount, DataType::INT32, ReduceOp::SUM);
            o.wait();
            std::vector<int32_t> out(kCount, 0);
            w.copy_from(1, out.data(), d.context(1).buffer_ptrs.at("x"), kCount * 4);
            const int32_t want = 2 * ((t + 1) * 100 + round * 10) + 1;
            CM_REQUIRE(out == std::vector<int32_t>(kCount, want));
            o.release_domain(d);
          });
          w.close();
          ++done;
        }
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;
  EXPECT_EQ(done.load(), kThreads * kRounds);
}

}  // namespace
}  // namespace chipmesh::testing

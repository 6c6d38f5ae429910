// Workers in threaded programs.
//
// A chip forked while another thread of the parent holds a process-wide lock
// the chip takes would start with it held for good and hang on it: init()
// holds those locks across its forks (src/worker/fork_locks.h). Shown with
// the log's lock: this thread holds it while another thread runs init(),
// and lets go once that thread waits for it (the fix) or once a chip exists
// (without the fix the chips, started with it held, hang at their first log
// line and init() fails at its deadline).
//
// The chips' parent-death signal follows the thread that forked them: when
// the thread that called init() exits, the chips end, and the error says so.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
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
  std::atomic<pid_t> tid{0};
  std::string error;
  // The whole life of the chips on that thread: their parent-death signal
  // follows the thread that forked them.
  std::thread init_thread([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    try {
      w.init();
      w.run([](Orchestrator& o) { o.submit_group({0, 1}, task("test_noop")); });
      w.close();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool waits = false, forked = false;
  while (!waits && !forked && std::chrono::steady_clock::now() < deadline) {
    const pid_t t = tid.load();
    waits = t != 0 && futex_word_waited_on(t) == reinterpret_cast<uintptr_t>(&lock);
    forked = t != 0 && !children_of(t).empty();  // the children of that thread
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

TEST(WorkerThreads, ChipsEndedByTheExitOfTheThreadThatCalledInitSaySo) {
  ScratchDir scratch;
  Worker w(comm_config(2, scratch.file("rootinfo"), 64 * 1024));
  std::vector<pid_t> chips;
  std::thread([&] {
    w.init();
    chips = children_of(static_cast<pid_t>(syscall(SYS_gettid)));
  }).join();
  ASSERT_EQ(chips.size(), 2u);
  ASSERT_TRUE(wait_gone(chips, std::chrono::seconds(30))) << "the chips outlived the thread that forked them";
  const std::string msg =
      chip_error_of([&] { w.run([](Orchestrator& o) { o.submit_group({0, 1}, task("test_noop")); }); });
  EXPECT_NE(msg.find("the thread that called init() (tid "), std::string::npos) << msg;
  EXPECT_NE(msg.find("has exited"), std::string::npos) << msg;
  w.close();
}

}  // namespace
}  // namespace chipmesh::testing

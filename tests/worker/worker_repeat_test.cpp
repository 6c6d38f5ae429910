// The same collective called again while its entries have not finished is
// run as a repeat of each member's entry (grant_repeat, chip_shared.h), or
// as an entry of its own where the chip has finished it. Whichever way,
// every call must run exactly once on every member: an in-place SUM
// allreduce of ones on n ranks gives n^k after k calls, so a call lost or
// run twice on any member shows in the result.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "common/process.h"
#include "request_ring/chip_shared.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

constexpr size_t kCount = 16;
constexpr size_t kBytes = kCount * 8;

Worker make_worker(int n, const ScratchDir& scratch) {
  return Worker(comm_config(n, scratch.file("rootinfo"), 4096, {{"a", DataType::UINT8, kBytes, kBytes}}));
}

template <typename T>
void load(Worker& w, T value) {
  const std::vector<T> v(kCount, value);
  for (int c = 0; c < static_cast<int>(w.world().size()); ++c)
    w.copy_to(c, w.world().context(c).buffer_ptrs.at("a"), v.data(), kBytes);
}

template <typename T>
void expect_all(Worker& w, T want, const std::string& what) {
  for (int c = 0; c < static_cast<int>(w.world().size()); ++c) {
    std::vector<T> got(kCount);
    w.copy_from(c, got.data(), w.world().context(c).buffer_ptrs.at("a"), kBytes);
    for (size_t i = 0; i < kCount; ++i) ASSERT_EQ(got[i], want) << what << ": chip " << c << " [" << i << "]";
  }
}

// Stops `pid` and returns once it is stopped (state T), or fails the test.
void stop(pid_t pid) {
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!process::info(pid).stopped) ASSERT_LT(std::chrono::steady_clock::now(), end) << "pid " << pid << " not stopped";
}

// The chips are stopped before the first call, so none can finish its entry:
// every later call is a repeat of it. More calls than the ring holds (128):
// queued as entries, they would wait for room on stopped chips until the
// stopped-chip timeout killed them.
TEST(WorkerRepeats, AStreamOnStoppedChipsRunsEveryCallOnce) {
  ScratchDir scratch;
  Worker w = make_worker(2, scratch);
  w.init();
  const CommDomain& d = w.world();
  const int calls = 300;
  load(w, 1.0);
  for (int c = 0; c < 2; ++c) stop(w.chip_pid(c));
  w.run([&](Orchestrator& o) {
    for (int k = 0; k < calls; ++k) o.allreduce(d, "a", "a", kCount, DataType::FLOAT64, ReduceOp::SUM);
    for (int c = 0; c < 2; ++c) ASSERT_EQ(kill(w.chip_pid(c), SIGCONT), 0);
  });
  expect_all(w, std::ldexp(1.0, calls), "2^300 after 300 calls");  // exact in float64
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// Calls racing the chips as they finish their entries, with an explicit
// wait or another task on one member now and then between calls (after
// which the call is an entry again): every run gives 3^k for its k calls.
TEST(WorkerRepeats, CallsRacingTheChipsRunEachOnce) {
  ScratchDir scratch;
  const int n = 3;
  Worker w = make_worker(n, scratch);
  w.init();
  const CommDomain& d = w.world();
  std::mt19937 rng(7);
  Task noop = task("test_noop");
  for (int round = 0; round < 150; ++round) {
    const int calls = 1 + static_cast<int>(rng() % 39);  // 3^39 < 2^63
    const int interrupt_at = static_cast<int>(rng() % (2 * calls));  // past the end: none
    const bool by_wait = rng() % 2 == 0;
    load<int64_t>(w, 1);
    w.run([&](Orchestrator& o) {
      for (int k = 0; k < calls; ++k) {
        if (k == interrupt_at) {
          if (by_wait)
            o.wait();
          else
            o.submit(1, noop);
        }
        o.allreduce(d, "a", "a", kCount, DataType::INT64, ReduceOp::SUM);
      }
    });
    int64_t want = 1;
    for (int k = 0; k < calls; ++k) want *= n;
    expect_all<int64_t>(w, want, "round " + std::to_string(round) + ", " + std::to_string(calls) + " calls");
    if (::testing::Test::HasFatalFailure()) return;
  }
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// A member killed while the others hold repeats they cannot finish without
// it: run() fails naming it (the others' kernels are aborted, not left to
// their deadline), and the survivors stay usable.
TEST(WorkerRepeats, AMemberKilledInAStreamFailsTheRunNamingIt) {
  ScratchDir scratch;
  Worker w = make_worker(3, scratch);
  w.init();
  const CommDomain& d = w.world();
  load<int64_t>(w, 1);
  const pid_t victim = w.chip_pid(1);
  for (int c = 0; c < 3; ++c) stop(w.chip_pid(c));
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = chip_error_of([&] {
    w.run([&](Orchestrator& o) {
      for (int k = 0; k < 20; ++k) o.allreduce(d, "a", "a", kCount, DataType::INT64, ReduceOp::SUM);
      ASSERT_EQ(kill(victim, SIGKILL), 0);
      for (int c : {0, 2}) ASSERT_EQ(kill(w.chip_pid(c), SIGCONT), 0);
    });
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(msg.find("chip 1 (device 1, pid " + std::to_string(victim) + ")"), std::string::npos) << msg;
  EXPECT_LT(s, 20.0) << "the survivors waited for the dead member until their deadline";
  Task noop = task("test_noop");
  w.run([&](Orchestrator& o) { o.submit_group({0, 2}, noop); });
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// The word's protocol, one side after the other (the tests above race it).
TEST(RepeatWord, GrantsReachTheChipOrAreRefused) {
  std::atomic<uint64_t> w{worker::repeat_word(3, worker::kRepeatClosed)};  // entry 3 finished
  EXPECT_FALSE(worker::grant_repeat(w, 3)) << "granted a run of an entry the chip finished";
  ASSERT_TRUE(worker::grant_repeat(w, 5)) << "entry 5 not finished: the chip closes it only after running grants";
  ASSERT_TRUE(worker::grant_repeat(w, 5));
  EXPECT_FALSE(worker::next_repeat(w, 4, 0, false)) << "entry 4 ran a grant of entry 5";
  EXPECT_EQ(worker::repeat_seq(w.load()), 5u) << "the chip closed over a later entry's grants";
  EXPECT_FALSE(worker::grant_repeat(w, 6)) << "re-tagged while entry 5 may still run its grants";
  EXPECT_TRUE(worker::next_repeat(w, 5, 0, false));
  EXPECT_TRUE(worker::next_repeat(w, 5, 1, false));
  EXPECT_FALSE(worker::next_repeat(w, 5, 2, false)) << "two grants, three runs: closes";
  EXPECT_FALSE(worker::grant_repeat(w, 5));
  ASSERT_TRUE(worker::grant_repeat(w, 6));
  EXPECT_FALSE(worker::next_repeat(w, 6, 0, true)) << "a failed run stops its repeats";
  EXPECT_FALSE(worker::grant_repeat(w, 6));
}

}  // namespace
}  // namespace chipmesh::testing

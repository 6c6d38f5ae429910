// A chip killed while its peers are deep in a long collective: the peers
// stop within one slice of their bulk work (kernels/sliced.h) instead of
// finishing it, and run() fails naming the dead chip (issue 12, item 5).
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

double cpu_ms(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return -1;
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

class WorkerAbort : public ::testing::TestWithParam<AllreduceAlgo> {};

TEST_P(WorkerAbort, AChipKilledMidAllreduceStopsItsPeersBeforeTheyFinish) {
  const int n = 4, victim = 2;
  const size_t bytes = size_t{128} << 20;  // a fold of several hundred ms per chip on 2 cores
  const size_t count = bytes / sizeof(float);
  ScratchDir scratch;
  Worker w(comm_config(n, scratch.file("rootinfo"), 2 * bytes,
                       {{"in", DataType::FLOAT32, count, bytes}, {"out", DataType::FLOAT32, count, bytes}}));
  w.init();
  // Inputs of 1.0: every output element a finished allreduce writes is 4.0;
  // out starts as zeros (a fresh window).
  const std::vector<float> ones(count, 1.0f);
  for (int c = 0; c < n; ++c) w.copy_to(c, w.chip_contexts()[c].buffer_ptrs.at("in"), ones.data(), bytes);

  // Kill the victim once it has spent 20 ms of CPU in this run: waits burn
  // at most ~1 ms before they sleep, so by then it is in the bulk work.
  const pid_t vpid = w.chip_pid(victim);
  clockid_t clock{};
  ASSERT_EQ(clock_getcpuclockid(vpid, &clock), 0);
  const double cpu0 = cpu_ms(clock);
  std::chrono::steady_clock::time_point killed_at{};
  std::thread killer([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (cpu_ms(clock) - cpu0 < 20 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    killed_at = std::chrono::steady_clock::now();
    kill(vpid, SIGKILL);
  });
  int failed_chip = -1;
  const std::string msg = chip_error_of([&] {
    try {
      w.run([&](Orchestrator& o) { o.allreduce(w.world(), "in", "out", count, DataType::FLOAT32, ReduceOp::SUM, GetParam()); });
    } catch (const ChipError& e) {
      failed_chip = e.chip();
      throw;
    }
  });
  const auto failed_at = std::chrono::steady_clock::now();
  killer.join();
  EXPECT_EQ(failed_chip, victim) << msg;
  RecordProperty("ms_from_kill_to_error",
                 static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(failed_at - killed_at).count()));

  // Every survivor that still needed the victim was stopped with part of
  // its output never written. In a ring only the victim's right neighbour
  // reads it at every step; the others may legitimately finish their units
  // (and then fail at the closing wait).
  std::vector<float> out(count);
  for (int c = 0; c < n; ++c) {
    if (c == victim || (GetParam() == AllreduceAlgo::RING && c != (victim + 1) % n)) continue;
    w.copy_from(c, out.data(), w.chip_contexts()[c].buffer_ptrs.at("out"), bytes);
    const auto unwritten = std::count(out.begin(), out.end(), 0.0f);
    EXPECT_GT(unwritten, 0) << "chip " << c << " finished the whole allreduce after chip " << victim << " died";
  }
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

INSTANTIATE_TEST_SUITE_P(Modes, WorkerAbort,
                         ::testing::Values(AllreduceAlgo::ONEPHASE, AllreduceAlgo::TWOPHASE, AllreduceAlgo::RING),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace chipmesh::testing

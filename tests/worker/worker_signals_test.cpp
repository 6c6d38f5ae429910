// A host program that takes signals all the time: a sampling profiler's
// SIGPROF, an interval timer, a job controller's SIGCHLD of its own
// children. A handler installed without SA_RESTART makes every blocking
// call the parent is in return EINTR (waitpid, poll, futex waits, reads):
// bring-up, runs, copies, domains, a failure and close must all go on as
// without the signals. (Children do not inherit interval timers, so the
// chips see none: the parent's and its threads' waits are what this tests.)
#include <signal.h>
#include <sys/time.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/collectives.h"
#include "chipmesh/errors.h"
#include "chipmesh/worker.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

std::atomic<uint64_t> g_signals{0};
void count_signal(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }

TEST(WorkerInterruptedCalls, SignalsEvery100usWithoutSaRestartChangeNothing) {
  ScratchDir scratch;
  auto outcomes = fork_ranks(1, [&](int) {
    struct sigaction sa{};
    sa.sa_handler = count_signal;  // no SA_RESTART: blocked calls return EINTR
    sigemptyset(&sa.sa_mask);
    CM_REQUIRE(sigaction(SIGALRM, &sa, nullptr) == 0) << std::strerror(errno);
    CM_REQUIRE(sigaction(SIGPROF, &sa, nullptr) == 0) << std::strerror(errno);
    // Real time (SIGALRM: also while the parent sleeps) and CPU time (SIGPROF).
    const struct itimerval every_100us{{0, 100}, {0, 100}};
    CM_REQUIRE(setitimer(ITIMER_REAL, &every_100us, nullptr) == 0) << std::strerror(errno);
    CM_REQUIRE(setitimer(ITIMER_PROF, &every_100us, nullptr) == 0) << std::strerror(errno);

    constexpr int kChips = 4;
    constexpr size_t kCount = 1 << 16;  // int32: 256 KiB per chip
    for (int round = 0; round < 3; ++round) {
      // The communicator meets in the Worker's memory, then in a rootinfo file.
      const std::string rootinfo = round == 1 ? scratch.file("rootinfo") : "";
      Worker w(comm_config(kChips, rootinfo, 2 * kCount * 4,
                           {{"x", DataType::INT32, kCount, kCount * 4, "window", true, false},
                            {"y", DataType::INT32, kCount, kCount * 4, "window", false, true}}));
      std::vector<const int32_t*> outputs;
      for (int c = 0; c < kChips; ++c) {
        auto* in = static_cast<int32_t*>(w.stage_input(c, "x", kCount * 4).data());
        for (size_t i = 0; i < kCount; ++i) in[i] = static_cast<int32_t>(i) * (c + 1);
        outputs.push_back(static_cast<const int32_t*>(w.stage_output(c, "y", kCount * 4).data()));
      }
      w.init();
      // Collectives into the staged outputs, flushed, many times over.
      for (int k = 0; k < 20; ++k)
        w.run([&](Orchestrator& o) {
          o.allreduce(w.world(), "x", "y", kCount, DataType::INT32, ReduceOp::SUM);
          o.flush_outputs({0, 1, 2, 3});
        });
      for (int c = 0; c < kChips; ++c) {
        const int32_t* out = outputs[static_cast<size_t>(c)];
        for (size_t i = 0; i < kCount; i += 997)
          CM_REQUIRE(out[i] == static_cast<int32_t>(i) * 10) << "chip " << c << " y[" << i << "] = " << out[i];
      }
      // Copies both ways and device memory.
      std::vector<int32_t> host(kCount), back(kCount);
      for (size_t i = 0; i < kCount; ++i) host[i] = static_cast<int32_t>(i ^ 0x5a5a);
      const uint64_t dev = w.malloc(2, kCount * 4);
      w.copy_to(2, dev, host.data(), kCount * 4);
      w.copy_from(2, back.data(), dev, kCount * 4);
      CM_REQUIRE(back == host) << "the copy through chip 2's memory differs";
      w.free(2, dev);
      // A domain allocated, used and released.
      w.run([&](Orchestrator& o) {
        CommDomain d = o.allocate_domain("pair", {3, 1}, 1 << 16, {{"b", DataType::INT32, 16, 64}});
        o.barrier(d);
        o.allreduce(d, "b", "b", 16, DataType::INT32, ReduceOp::MAX);
        o.release_domain(d);
      });
      // A failing kernel, then the Worker goes on.
      const std::string msg = chip_error_of([&] { w.run([&](Orchestrator& o) { o.submit(1, task("test_fail")); }); });
      CM_REQUIRE(msg.find("bad input 42") != std::string::npos) << msg;
      w.run([&](Orchestrator& o) { o.submit_group({0, 1, 2, 3}, task("test_noop")); });
      w.close();
    }
    const struct itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    setitimer(ITIMER_PROF, &off, nullptr);
    rank_note(std::to_string(g_signals.load()) + " signals");
    CM_REQUIRE(g_signals.load() > 0) << "no signal arrived";
  }, std::chrono::seconds(120));
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].ok()) << outcomes[0].describe();
  RecordProperty("signals", outcomes[0].message);
  EXPECT_TRUE(scratch.entries().empty()) << "the rootinfo file was left";
}

}  // namespace
}  // namespace chipmesh::testing

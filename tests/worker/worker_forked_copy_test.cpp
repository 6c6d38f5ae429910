// A Worker belongs to the process that created it: in a fork of that
// process (a user's fork(), os.fork() in Python) its calls are ConfigErrors,
// and its interrupt(), close() and destructor (a child exiting through its
// destructors) leave the owner's chips alone. Without that, the child's close() sent the
// chips their shutdown and then waited forever for a watcher thread that a
// fork does not copy.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/worker.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

constexpr size_t kCount = 1024;

TEST(WorkerForkedCopy, AForkOfTheOwnerNeitherUsesNorClosesItsChips) {
  ScratchDir scratch;
  auto w = std::make_unique<Worker>(comm_config(
      2, scratch.file("rootinfo"), 64 * 1024, {ChipBufferSpec{"x", DataType::INT32, kCount, kCount * 4}}));
  w->init();
  const uint64_t x1 = w->chip_contexts()[1].buffer_ptrs.at("x");
  // In the rank, gtest's failures do not reach this process: the
  // CM_REQUIREs on the messages (empty when nothing was thrown) decide.
  const auto outcome = fork_ranks(1, [&](int) {
    const std::string fork_of = "is a fork of the one that created the Worker";
    std::vector<int32_t> data(kCount, 7);
    const std::string run = config_error_of([&] { w->run([](Orchestrator&) {}); });
    CM_REQUIRE(run.find("Worker::run: this process") != std::string::npos && run.find(fork_of) != std::string::npos)
        << run;
    const std::string copy = config_error_of([&] { w->copy_to(1, x1, data.data(), kCount * 4); });
    CM_REQUIRE(copy.find("Worker::copy_to") != std::string::npos && copy.find(fork_of) != std::string::npos) << copy;
    w->interrupt();
    w->close();
    w.reset();  // as a child exiting through its destructors
  });
  ASSERT_TRUE(all_ok(outcome));
  // The owner's chips took no shutdown and no signal: they reduce.
  std::vector<int32_t> ones(kCount, 1), out(kCount, 0);
  for (int c = 0; c < 2; ++c) w->copy_to(c, w->chip_contexts()[c].buffer_ptrs.at("x"), ones.data(), kCount * 4);
  w->run([&](Orchestrator& o) { o.allreduce(w->world(), "x", "x", kCount, DataType::INT32, ReduceOp::SUM); });
  w->copy_from(1, out.data(), x1, kCount * 4);
  EXPECT_EQ(out, std::vector<int32_t>(kCount, 2));
  w->close();
}

}  // namespace
}  // namespace chipmesh::testing

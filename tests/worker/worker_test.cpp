// Worker happy paths: bring-up on 1..16 chips, control operations, tasks,
// group dispatch, store_to_host.
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/worker.h"
#include "request_ring/chip_shared.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

class WorkerChips : public ::testing::TestWithParam<int> {
 protected:
  ScratchDir scratch;
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo left behind"; }
};

TEST_P(WorkerChips, BringsUpContextsAndLeavesNothingAfterClose) {
  const int n = GetParam();
  const size_t window = 10000;
  Worker w(comm_config(n, scratch.file("rootinfo"), window,
                       {{"a", DataType::FLOAT32, 16, 64}, {"b", DataType::INT32, 8, 32}}));
  w.init();
  const auto& ctxs = w.chip_contexts();
  ASSERT_EQ(ctxs.size(), static_cast<size_t>(n));
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    const ChipContext& c = ctxs[i];
    EXPECT_EQ(c.device_id, i);
    EXPECT_EQ(c.rank, i);
    EXPECT_EQ(c.nranks, n);
    EXPECT_NE(c.device_ctx, 0u);
    EXPECT_NE(c.local_window_base, 0u);
    EXPECT_GE(c.actual_window_size, window);
    ASSERT_EQ(c.buffer_ptrs.size(), 2u);
    EXPECT_EQ(c.buffer_ptrs.at("a"), c.local_window_base);
    EXPECT_EQ(c.buffer_ptrs.at("b"), c.local_window_base + 64);
    pids.push_back(w.chip_pid(i));
  }
  auto phases = w.bringup_phases_ms();
  for (const char* k : {"fork", "comm_init", "windows", "staging", "handshake", "total"}) EXPECT_TRUE(phases.count(k)) << k;
  w.close();
  w.close();  // idempotent
  // close() has reaped every chip: no process, not even a zombie, remains.
  for (pid_t p : pids) EXPECT_TRUE(kill(p, 0) == -1 && errno == ESRCH) << "chip pid " << p << " still exists";
  EXPECT_THROW(w.chip_contexts(), ConfigError);
}

INSTANTIATE_TEST_SUITE_P(Chips, WorkerChips, ::testing::Values(1, 2, 4, 8, 16),
                         [](const auto& info) { return std::to_string(info.param) + "chips"; });

// Each chip names itself (ps, top, perf): chipmesh.chip<index>, chip 63
// included (15 characters, the most a name holds).
TEST(Worker, ChipsAreNamedByTheirIndex) {
  WorkerConfig cfg;
  for (int i = 0; i < 64; ++i) cfg.device_ids.push_back(i);
  Worker w(cfg);
  w.init();
  for (int chip = 0; chip < 64; ++chip) {
    std::ifstream comm("/proc/" + std::to_string(w.chip_pid(chip)) + "/comm");
    std::string name;
    std::getline(comm, name);
    EXPECT_EQ(name, "chipmesh.chip" + std::to_string(chip));
  }
}

TEST(Worker, ChipsWithoutACommunicator) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1, 2};
  Worker w(cfg);
  w.init();
  for (const auto& c : w.chip_contexts()) {
    EXPECT_EQ(c.rank, -1);
    EXPECT_EQ(c.device_ctx, 0u);
    EXPECT_TRUE(c.buffer_ptrs.empty());
  }
  w.run([](Orchestrator& o) { o.submit_group({0, 1, 2}, task("test_noop")); });
}

TEST(Worker, ControlOpsRoundTripFromOneByteTo64MiBOnEveryChip) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1, 2};
  Worker w(cfg);
  w.init();
  std::mt19937 gen(7);
  for (size_t n : {size_t{1}, size_t{4097}, (size_t{1} << 20) + 3, size_t{64} << 20}) {
    std::vector<unsigned char> in(n), out(n);
    for (auto& b : in) b = static_cast<unsigned char>(gen());
    for (int chip = 0; chip < 3; ++chip) {
      uint64_t p = w.malloc(chip, n);
      ASSERT_NE(p, 0u);
      w.copy_to(chip, p, in.data(), n);
      std::fill(out.begin(), out.end(), 0);
      w.copy_from(chip, out.data(), p, n);
      EXPECT_TRUE(in == out) << n << " bytes on chip " << chip;
      w.free(chip, p);
    }
  }
  w.close();
}

TEST(Worker, ControlOpErrorsNameTheChip) {
  WorkerConfig cfg;
  cfg.device_ids = {4, 5};
  Worker w(cfg);
  EXPECT_THROW(w.malloc(0, 8), ConfigError);  // before init
  w.init();
  std::string msg = chip_error_of([&] { w.free(1, 12345); });
  EXPECT_NE(msg.find("chip 1 (device 5, pid " + std::to_string(w.chip_pid(1)) + "): DeviceError: "), std::string::npos) << msg;
  char buf[8] = {};
  msg = chip_error_of([&] { w.copy_from(0, buf, 0xdead0000, sizeof(buf)); });
  EXPECT_NE(msg.find("chip 0 (device 4"), std::string::npos) << msg;
  EXPECT_THROW(w.malloc(2, 8), ConfigError);  // no chip 2
  uint64_t p = w.malloc(1, 8);  // still usable after errors
  w.free(1, p);
}

TEST(Worker, StoreToHostAfterSuccessOnlyAndUntouchedAfterFailure) {
  ScratchDir scratch;
  const int n = 2;
  const size_t bytes = 3000;
  std::vector<std::string> names;
  std::vector<SharedMemory> outs;
  WorkerConfig cfg = comm_config(n, scratch.file("rootinfo"), 8192,
                                 {{"out", DataType::UINT8, bytes, bytes, "window", false, true}});
  for (int i = 0; i < n; ++i) {
    names.push_back("/chipmesh_test_out_" + std::to_string(getpid()) + "_" + std::to_string(i));
    outs.push_back(SharedMemory::create(names.back(), bytes));
    cfg.chip_bootstrap_configs[i].host_outputs.push_back({"out", names.back(), bytes});
  }
  Worker w(cfg);
  w.init();
  for (auto& o : outs) o.unlink();  // chips keep their mappings: the names can go now
  auto fill = [&](int chip, int value, const char* kernel) {
    return task(kernel, {{w.chip_contexts()[chip].buffer_ptrs.at("out"), DataType::UINT8, {bytes}}},
                {static_cast<uint64_t>(value)});
  };
  w.run([&](Orchestrator& o) {
    for (int i = 0; i < n; ++i) o.submit(i, fill(i, 0x40 + i, "test_fill"));
  });
  for (int i = 0; i < n; ++i) {
    auto* p = static_cast<unsigned char*>(outs[i].data());
    EXPECT_EQ(p[0], 0x40 + i);
    EXPECT_EQ(p[bytes - 1], 0x40 + i);
  }
  std::string msg = chip_error_of([&] { w.run([&](Orchestrator& o) { o.submit(1, fill(1, 0x77, "test_fill_then_fail")); }); });
  EXPECT_NE(msg.find("filled, then failed on purpose"), std::string::npos) << msg;
  EXPECT_EQ(static_cast<unsigned char*>(outs[1].data())[0], 0x41) << "output flushed after a failed task";
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// Tasks with flush_outputs = false leave the staging alone; flush_outputs()
// then copies what the last of them wrote. A flush queued behind a failed
// task (in the same run, before the parent saw the failure) is refused and
// flushes nothing; after a successful task it works again.
TEST(Worker, DeferredFlushCopiesOnlyWhenAskedAndNeverAfterAFailure) {
  ScratchDir scratch;
  const int n = 2;
  const size_t bytes = 300000;  // more than one ring chunk: not that it matters for a flush
  std::vector<SharedMemory> outs;
  WorkerConfig cfg = comm_config(n, scratch.file("rootinfo"), 2 * bytes,
                                 {{"out", DataType::UINT8, bytes, bytes, "window", false, true}});
  for (int i = 0; i < n; ++i) {
    outs.push_back(SharedMemory::create("/chipmesh_test_dflush_" + std::to_string(getpid()) + "_" + std::to_string(i),
                                        bytes));
    cfg.chip_bootstrap_configs[i].host_outputs.push_back({"out", outs.back().name(), bytes});
  }
  Worker w(cfg);
  w.init();
  for (auto& o : outs) o.unlink();
  auto fill = [&](int chip, int value, const char* kernel) {
    Task t = task(kernel, {{w.chip_contexts()[chip].buffer_ptrs.at("out"), DataType::UINT8, {bytes}}},
                  {static_cast<uint64_t>(value)});
    t.flush_outputs = false;
    return t;
  };
  auto at = [&](int chip, size_t i) { return static_cast<unsigned char*>(outs[chip].data())[i]; };
  // Back to back without a flush: the staging still holds its zeros.
  w.run([&](Orchestrator& o) {
    for (int k = 0; k < 40; ++k)
      for (int i = 0; i < n; ++i) o.submit(i, fill(i, 0x10 + k, "test_fill"));
  });
  for (int i = 0; i < n; ++i) EXPECT_EQ(at(i, 0), 0) << "chip " << i << " flushed a task with flush_outputs = false";
  // One flush: the last task's values, every byte.
  w.run([&](Orchestrator& o) { o.flush_outputs({0, 1}); });
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(at(i, 0), 0x10 + 39);
    EXPECT_EQ(at(i, bytes - 1), 0x10 + 39);
  }
  // Queued behind a failing task in the same run: refused on that chip only.
  std::string msg = chip_error_of([&] {
    w.run([&](Orchestrator& o) {
      o.submit(1, fill(1, 0x77, "test_fill_then_fail"));
      o.submit(0, fill(0, 0x55, "test_fill"));
      o.flush_outputs({0, 1});
    });
  });
  EXPECT_NE(msg.find("filled, then failed on purpose"), std::string::npos) << msg;
  EXPECT_EQ(at(1, 0), 0x10 + 39) << "outputs of a failed task were flushed";
  // A later explicit flush is refused too, naming why; the staging stays.
  msg = chip_error_of([&] { w.run([&](Orchestrator& o) { o.flush_outputs({1}); }); });
  EXPECT_NE(msg.find("chip 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("last task on this chip failed"), std::string::npos) << msg;
  EXPECT_EQ(at(1, 0), 0x10 + 39);
  // A successful task makes the outputs flushable again.
  w.run([&](Orchestrator& o) {
    o.submit(1, fill(1, 0x66, "test_fill"));
    o.flush_outputs({1});
  });
  EXPECT_EQ(at(1, bytes - 1), 0x66);
  EXPECT_THROW(w.run([&](Orchestrator& o) { o.flush_outputs({0, 0}); }), ConfigError);
  EXPECT_THROW(w.run([&](Orchestrator& o) { o.flush_outputs({2}); }), ConfigError);
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// A chip without store_to_host buffers flushes nothing, without error: it
// is not even asked (not after a failed task either, whose rule protects
// outputs it does not have).
TEST(Worker, FlushWithoutOutputsIsANoOp) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1};
  Worker w(cfg);
  w.init();
  w.run([&](Orchestrator& o) { o.flush_outputs({1}); });  // before any task
  w.run([&](Orchestrator& o) {
    o.submit_group({0, 1}, task("test_noop"));
    o.flush_outputs({0, 1});
  });
  chip_error_of([&] { w.run([&](Orchestrator& o) { o.submit(1, task("test_fail")); }); });
  w.run([&](Orchestrator& o) { o.flush_outputs({0, 1}); });
  w.close();
}

// Worker-owned staging: inputs the chips load at bring-up, outputs they
// flush after a task, all unnamed (nothing of the job in /dev/shm at any
// point, so nothing a kill could leave); misuse is a ConfigError.
TEST(Worker, StageInputAndOutputAreUnnamedAndRoundTrip) {
  ScratchDir scratch;
  const int n = 2;
  const size_t bytes = 5000;  // not a page multiple
  WorkerConfig cfg = comm_config(n, scratch.file("rootinfo"), 16384,
                                 {{"in", DataType::UINT8, bytes, bytes, "window", true, false},
                                  {"out", DataType::UINT8, bytes, bytes, "window", false, true}});
  Worker w(cfg);
  std::vector<SharedMemory*> outs;
  for (int c = 0; c < n; ++c) {
    std::memset(w.stage_input(c, "in", bytes).data(), 0x10 + c, bytes);
    outs.push_back(&w.stage_output(c, "out", bytes));
  }
  EXPECT_THROW(w.stage_input(0, "in", bytes), ConfigError);   // staged twice
  EXPECT_THROW(w.stage_output(2, "out", bytes), ConfigError);  // no chip 2
  w.init();
  EXPECT_THROW(w.stage_input(0, "other", 1), ConfigError);  // after init
  // Only this job's names (another suite may run on this machine meanwhile).
  EXPECT_EQ(shm_objects_of(getpid()), 0u) << "staging named in /dev/shm after bring-up";
  for (int c = 0; c < n; ++c)
    EXPECT_EQ(shm_objects_of(w.chip_pid(c)), 0u) << "chip " << c << " left a name in /dev/shm after bring-up";
  std::vector<unsigned char> got(bytes);
  for (int c = 0; c < n; ++c) {
    w.copy_from(c, got.data(), w.chip_contexts()[c].buffer_ptrs.at("in"), bytes);
    EXPECT_EQ(got[0], 0x10 + c);
    EXPECT_EQ(got[bytes - 1], 0x10 + c);
  }
  w.run([&](Orchestrator& o) {
    for (int c = 0; c < n; ++c)
      o.submit(c, task("test_fill", {{w.chip_contexts()[c].buffer_ptrs.at("out"), DataType::UINT8, {bytes}}},
                       {static_cast<uint64_t>(0x60 + c)}));
  });
  for (int c = 0; c < n; ++c) {
    EXPECT_EQ(static_cast<unsigned char*>(outs[c]->data())[0], 0x60 + c);
    EXPECT_EQ(static_cast<unsigned char*>(outs[c]->data())[bytes - 1], 0x60 + c);
  }
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// A failure that completes while run() is judging whether the chips have
// settled must still be reported: CI once saw run() return cleanly after a
// failed task (the completion moved between two reads of done_seq).
TEST(Worker, EveryFailedTaskFailsItsRunEvenWhenItCompletesDuringTheWait) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1};
  Worker w(cfg);
  w.init();
  for (int round = 0; round < 400; ++round) {
    const int chip = round % 2;
    std::string msg = chip_error_of([&] {
      w.run([&](Orchestrator& o) {
        o.submit(1 - chip, task("test_noop", {}, {}));
        o.submit(chip, task("test_fail", {}, {}));
      });
    });
    ASSERT_NE(msg.find("bad input 42"), std::string::npos) << "round " << round << ": " << msg;
  }
  w.close();
}

// A run waits on the chips it gave work (and only looks at those): work
// given after an explicit wait, on chips the run had not used yet, is still
// waited for and its failure still fails the run; a run on one chip of
// eight then completes.
TEST(Worker, ARunWaitsForEveryChipItGaveWorkAfterAnExplicitWait) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1, 2, 3, 4, 5, 6, 7};
  Worker w(cfg);
  w.init();
  for (int round = 0; round < 50; ++round) {
    const int late = 1 + round % 7;
    const std::string msg = chip_error_of([&] {
      w.run([&](Orchestrator& o) {
        o.submit(0, task("test_noop", {}, {}));
        o.wait();
        o.submit(late, task("test_fail", {}, {}));
      });
    });
    ASSERT_NE(msg.find("chip " + std::to_string(late) + " "), std::string::npos) << "round " << round << ": " << msg;
  }
  w.run([&](Orchestrator& o) { o.submit(5, task("test_noop", {}, {})); });  // one chip of eight
  w.close();
}

// A run() or close() from inside a run()'s orchestration function would
// release that run's domains and unmap what it uses (close() there crashed
// the caller): both are ConfigErrors, and the run goes on unharmed.
TEST(Worker, RunAndCloseInsideARunAreRefusedAndTheRunGoesOn) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1};
  Worker w(cfg);
  w.init();
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("pair", {0, 1}, 4096);
    o.submit_group({0, 1}, task("test_noop"));
    const std::string nested = config_error_of([&] { w.run([](Orchestrator&) {}); });
    EXPECT_NE(nested.find("Worker::run: called from the orchestration function of a run()"), std::string::npos)
        << nested;
    const std::string closing = config_error_of([&] { w.close(); });
    EXPECT_NE(closing.find("Worker::close: called from the orchestration function of run()"), std::string::npos)
        << closing;
    EXPECT_FALSE(d.released());
    o.barrier(d);
    o.submit_group({0, 1}, task("test_noop"));
  });
  // Refused by a run() that threw as well; fine once it has returned.
  EXPECT_THROW(w.run([&](Orchestrator&) { throw std::runtime_error("the user's"); }), std::runtime_error);
  w.run([&](Orchestrator& o) {
    EXPECT_THROW(w.close(), ConfigError);
    o.submit(1, task("test_noop"));
  });
  w.run([&](Orchestrator& o) { o.submit(0, task("test_noop")); });
  w.close();
}

TEST(Worker, GroupKernelsMayWaitOnEachOther) {
  ScratchDir scratch;
  Worker w(comm_config(2, scratch.file("rootinfo"), 4096));
  w.init();
  for (uint64_t round = 1; round <= 200; ++round)
    w.run([&](Orchestrator& o) { o.submit_group({0, 1}, task("test_ping", {}, {round})); });
  w.close();
}

// Runs of several times the ring's depth: the parent waits for room (and
// sleeps until part of the ring has drained), each chip runs its tasks in
// submission order, and a failure deep in a stream fails its run.
TEST(Worker, StreamsLongerThanTheRingRunInOrderAndAFailureDeepInOneFailsItsRun) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1};
  Worker w(cfg);
  w.init();
  const size_t bytes = 100;
  const uint64_t ptr[2] = {w.malloc(0, bytes), w.malloc(1, bytes)};
  const int tasks = 3 * static_cast<int>(worker::kRingDepth) + 5;
  auto value = [](int chip, int k) { return static_cast<uint64_t>((k * (chip ? 7 : 1)) % 251); };
  w.run([&](Orchestrator& o) {
    for (int k = 0; k < tasks; ++k)
      for (int chip = 0; chip < 2; ++chip)
        o.submit(chip, task("test_fill", {{ptr[chip], DataType::UINT8, {bytes}}}, {value(chip, k)}));
  });
  for (int chip = 0; chip < 2; ++chip) {
    std::vector<unsigned char> out(bytes);
    w.copy_from(chip, out.data(), ptr[chip], bytes);
    EXPECT_EQ(out, std::vector<unsigned char>(bytes, static_cast<unsigned char>(value(chip, tasks - 1))))
        << "chip " << chip;
  }
  const int failing = 2 * static_cast<int>(worker::kRingDepth) + 1;
  const std::string msg = chip_error_of([&] {
    w.run([&](Orchestrator& o) {
      for (int k = 0; k < tasks; ++k) o.submit(k % 2, task(k == failing ? "test_fail" : "test_noop"));
    });
  });
  EXPECT_NE(msg.find("chip 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad input 42"), std::string::npos) << msg;
  // The worker goes on after the failed run.
  w.run([&](Orchestrator& o) {
    for (int k = 0; k < tasks; ++k) o.submit(k % 2, task("test_noop"));
  });
  w.close();
}

// A ring entry holds up to worker::kInlineTensors tensors and
// kInlineScalars scalars; a task with more carries them all beside the ring.
// Counts on both sides of those limits, up to the maxima, back to back in
// one run (the kernel alternating with test_noop, so that names travel
// too), each echoed by the kernel and checked.
TEST(Worker, TasksOfEveryArgumentCountReachTheKernelWhole) {
  WorkerConfig cfg;
  cfg.device_ids = {0};
  Worker w(cfg);
  w.init();
  const size_t words = 2 + worker::kMaxTaskScalars + worker::kMaxTaskTensors * (3 + CHIPMESH_KERNEL_MAX_DIMS);
  const std::vector<std::pair<size_t, size_t>> counts = {
      {1, 0},
      {worker::kInlineTensors, worker::kInlineScalars},
      {worker::kInlineTensors + 1, worker::kInlineScalars},
      {worker::kInlineTensors, worker::kInlineScalars + 1},
      {1, worker::kMaxTaskScalars},
      {worker::kMaxTaskTensors, worker::kMaxTaskScalars},
      {2, 3}};
  std::vector<uint64_t> outs;
  std::vector<Task> tasks;
  std::vector<std::vector<uint64_t>> expected;
  for (size_t c = 0; c < counts.size(); ++c) {
    const auto [nt, ns] = counts[c];
    outs.push_back(w.malloc(0, words * 8));
    std::vector<TensorArg> tensors{{outs.back(), DataType::UINT64, {words}}};
    for (size_t i = 1; i < nt; ++i) {
      std::vector<uint64_t> shape;
      for (size_t d = 0; d <= i % CHIPMESH_KERNEL_MAX_DIMS; ++d) shape.push_back(1000 * c + 10 * i + d);
      tensors.push_back({0x1000 * (c + 1) + 8 * i, i % 2 ? DataType::FLOAT32 : DataType::INT64, shape});
    }
    std::vector<uint64_t> scalars;
    for (size_t i = 0; i < ns; ++i) scalars.push_back((c << 32) + i * 3 + 1);
    std::vector<uint64_t> want{nt, ns};
    want.insert(want.end(), scalars.begin(), scalars.end());
    for (const TensorArg& t : tensors) {
      want.push_back(t.addr);
      want.push_back(static_cast<uint64_t>(t.dtype));
      want.push_back(t.shape.size());
      want.insert(want.end(), t.shape.begin(), t.shape.end());
    }
    expected.push_back(want);
    tasks.push_back(task("test_echo_args", tensors, scalars));
  }
  w.run([&](Orchestrator& o) {
    for (const Task& t : tasks) {
      o.submit(0, t);
      o.submit(0, task("test_noop"));
    }
  });
  for (size_t c = 0; c < counts.size(); ++c) {
    std::vector<uint64_t> got(expected[c].size());
    w.copy_from(0, got.data(), outs[c], got.size() * 8);
    EXPECT_EQ(got, expected[c]) << counts[c].first << " tensors, " << counts[c].second << " scalars";
  }
  w.close();
}

TEST(Worker, SixteenChipsOnTwoCoresDispatchWithoutLivelock) {
  WorkerConfig cfg;
  for (int i = 0; i < 16; ++i) cfg.device_ids.push_back(i);
  Worker w(cfg);
  w.init();
  std::vector<int> all;
  for (int i = 0; i < 16; ++i) all.push_back(i);
  for (int round = 0; round < 300; ++round) w.run([&](Orchestrator& o) { o.submit_group(all, task("test_noop")); });
  // A stream of single-chip tasks, several in flight per chip.
  w.run([&](Orchestrator& o) {
    for (int k = 0; k < 2000; ++k) o.submit(k % 16, task("test_noop"));
  });
  w.close();
}

// A chip and the parent that took turns on one core while another stayed
// free kept doing so for seconds (round trips of 6 us instead of 0.4 us on
// the AMD EPYC VM): the chip must move itself off the parent's core.
TEST(Worker, AChipStackedOnTheParentsCoreMovesOffIt) {
  cpu_set_t allowed, one;
  if (!two_cpus_or_more(allowed, one)) GTEST_SKIP() << "needs two CPUs";
  // Fork the chip onto the parent's CPU, then set both free.
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  struct Restore {
    cpu_set_t mask;
    ~Restore() { sched_setaffinity(0, sizeof mask, &mask); }
  } restore{allowed};
  WorkerConfig cfg;
  cfg.device_ids = {0};
  Worker w(cfg);
  w.init();
  const pid_t chip = w.chip_pid(0);
  ASSERT_EQ(sched_setaffinity(chip, sizeof allowed, &allowed), 0);
  ASSERT_EQ(sched_setaffinity(0, sizeof allowed, &allowed), 0);
  auto stacked = [&] { return last_cpu(chip) == sched_getcpu(); };
  // The chip moves after 64 stacked round trips. Left alone (the move
  // disabled), the scheduler parted the two only after 10-40 ms here,
  // thousands of round trips, and stacked them again after sleeps.
  int round_trips = 0;
  for (; stacked() && round_trips < 1000; round_trips += 10)
    for (int i = 0; i < 10; ++i) w.run([](Orchestrator& o) { o.submit(0, task("test_noop")); });
  EXPECT_FALSE(stacked()) << "the chip still shares CPU " << last_cpu(chip) << " with the parent after " << round_trips
                          << " round trips";
  RecordProperty("round_trips", round_trips);
  w.close();
}

// `n` ranks whose windows hold two floats "in" and "out", and a stream of
// `ops` allreduces of them in one run(): the barriers of the placement tests.
WorkerConfig two_float_ranks(int n, ScratchDir& scratch) {
  return comm_config(n, scratch.file("rootinfo"), 4096,
                     {{"in", DataType::FLOAT32, 2, 8, "window", false, false},
                      {"out", DataType::FLOAT32, 2, 8, "window", false, false}});
}

void allreduce_stream(Worker& w, int ops) {
  w.run([&](Orchestrator& o) {
    for (int k = 0; k < ops; ++k) o.allreduce(w.world(), "in", "out", 2, DataType::FLOAT32, ReduceOp::SUM);
  });
}

// Two ranks that took turns on one core while the other stayed free kept
// doing so for 20000 allreduces (2.4 us each instead of 0.4 us apart, on the
// AMD EPYC VM): the kernel barrier moves the higher rank off the core.
TEST(Worker, TwoRanksStackedOnOneCoreMoveApartInTheirBarriers) {
  cpu_set_t allowed, one;
  if (!two_cpus_or_more(allowed, one)) GTEST_SKIP() << "needs two CPUs";
  ScratchDir scratch;
  Worker w(two_float_ranks(2, scratch));
  w.init();
  auto stream = [&](int ops) { allreduce_stream(w, ops); };
  const pid_t chips[2] = {w.chip_pid(0), w.chip_pid(1)};
  // Stacked, each barrier finds the other rank on its CPU. The move comes
  // after 64 stacked barriers; the scheduler alone took more than 20000 here.
  expect_apart_after_work(chips, allowed, one, 200, 100, 5000, stream, "allreduces");
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// More ranks than cores share them, but a collective runs at the pace of
// the most crowded core, and the scheduler leaves ranks that wait by
// yielding where they are (6 of 8 ranks on one of 2 vCPUs for a whole run
// of broadcasts, 1.3-1.7x slower than 4 and 4): a rank past its CPU's share
// moves to a CPU under its share.
TEST(Worker, CrowdedRanksSpreadEvenlyOverTheCores) {
  cpu_set_t allowed, one;
  if (!two_cpus_or_more(allowed, one)) GTEST_SKIP() << "needs two CPUs";
  const int cpus = CPU_COUNT(&allowed);
  if (cpus != static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) || cpus > 16)
    GTEST_SKIP() << "needs every online CPU (at most 16) in this process's mask";
  const int n = 2 * cpus;  // share: 2 ranks per CPU
  ScratchDir scratch;
  Worker w(two_float_ranks(n, scratch));
  w.init();
  auto stream = [&](int ops) { allreduce_stream(w, ops); };
  // cpus + 1 ranks on the first CPU, one on each other CPU: no CPU idles,
  // so the scheduler's idle balancing has nothing to even out.
  std::vector<int> home;
  for (int c = 0, k = 0; k < cpus; ++c)
    if (CPU_ISSET(c, &allowed)) home.push_back(c), ++k;
  for (int r = 0; r < n; ++r) {
    cpu_set_t pin;
    CPU_ZERO(&pin);
    CPU_SET(home[static_cast<size_t>(std::max(0, r - cpus))], &pin);
    ASSERT_EQ(sched_setaffinity(w.chip_pid(r), sizeof pin, &pin), 0);
  }
  stream(50);
  for (int r = 0; r < n; ++r) ASSERT_EQ(sched_setaffinity(w.chip_pid(r), sizeof allowed, &allowed), 0);
  auto most_on_one_cpu = [&] {
    std::vector<int> count(CPU_SETSIZE, 0);
    int most = 0;
    for (int r = 0; r < n; ++r) {
      const int c = last_cpu(w.chip_pid(r));
      if (c >= 0 && c < CPU_SETSIZE) most = std::max(most, ++count[static_cast<size_t>(c)]);
    }
    return most;
  };
  // The move comes after 8 waits in a row past the share; the crowded CPU
  // holds cpus + 1 ranks, one more than the share of 2 on two CPUs.
  int ops = 0;
  for (; most_on_one_cpu() > 2 && ops < 2000; ops += 20) stream(20);
  EXPECT_LE(most_on_one_cpu(), 2) << n << " ranks on " << cpus << " CPUs still crowd one of them after " << ops
                                  << " allreduces";
  RecordProperty("allreduces", ops);
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

}  // namespace
}  // namespace chipmesh::testing

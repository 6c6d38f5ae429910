// Allreduce end to end through the Worker: inputs copied in with copy_to,
// the built-in kernel dispatched as a group, outputs read back with copy_from
// and checked against closed-form values on every chip.
#include <sched.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/worker.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

// Small integers: exact in float32, float16, bfloat16 and int32, and so are
// their sums over up to 8 ranks.
int value(int rank, size_t i) { return static_cast<int>((rank + 1) * (i % 5 + 1) % 17) - 8; }

void encode(DataType dt, int v, unsigned char* out) {
  switch (dt) {
    case DataType::FLOAT32: {
      float f = static_cast<float>(v);
      std::memcpy(out, &f, 4);
      break;
    }
    case DataType::INT32: {
      int32_t x = v;
      std::memcpy(out, &x, 4);
      break;
    }
    case DataType::FLOAT16: {
      _Float16 h = static_cast<_Float16>(v);
      std::memcpy(out, &h, 2);
      break;
    }
    default: {  // BFLOAT16: the high half of the float32 (exact for these values)
      float f = static_cast<float>(v);
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      uint16_t b = static_cast<uint16_t>(bits >> 16);
      std::memcpy(out, &b, 2);
    }
  }
}

int reduce(int op, int nranks, size_t i) {
  int acc = value(0, i);
  for (int r = 1; r < nranks; ++r) {
    int v = value(r, i);
    acc = op == 0 ? acc + v : op == 1 ? std::max(acc, v) : std::min(acc, v);
  }
  return acc;
}

struct Case {
  int mode;
  DataType dtype;
  int op;
  size_t count;
};

void run_cases(Worker& w, int n, const std::vector<Case>& cases) {
  std::vector<int> all;
  for (int i = 0; i < n; ++i) all.push_back(i);
  for (const Case& c : cases) {
    const size_t es = dtype_size(c.dtype), bytes = c.count * es;
    std::vector<unsigned char> buf(bytes), expected(bytes);
    for (int r = 0; r < n; ++r) {
      for (size_t i = 0; i < c.count; ++i) encode(c.dtype, value(r, i), &buf[i * es]);
      w.copy_to(r, w.chip_contexts()[r].buffer_ptrs.at("in"), buf.data(), bytes);
    }
    for (size_t i = 0; i < c.count; ++i) encode(c.dtype, reduce(c.op, n, i), &expected[i * es]);
    std::vector<Task> tasks;
    for (int r = 0; r < n; ++r) {
      const auto& ptrs = w.chip_contexts()[r].buffer_ptrs;
      tasks.push_back(task("chipmesh_allreduce",
                           {{ptrs.at("in"), c.dtype, {c.count}}, {ptrs.at("out"), c.dtype, {c.count}}},
                           {static_cast<uint64_t>(c.mode), static_cast<uint64_t>(c.op)}, ""));
    }
    w.run([&](Orchestrator& o) { o.submit_group(all, tasks); });
    for (int r = 0; r < n; ++r) {
      std::fill(buf.begin(), buf.end(), 0xAB);
      w.copy_from(r, buf.data(), w.chip_contexts()[r].buffer_ptrs.at("out"), bytes);
      ASSERT_TRUE(buf == expected) << n << " chips, mode " << c.mode << ", " << dtype_name(c.dtype) << ", op "
                                   << c.op << ", count " << c.count << ": chip " << r << " differs";
    }
  }
}

class WorkerAllreduce : public ::testing::TestWithParam<int> {};

TEST_P(WorkerAllreduce, EveryModeDtypeOpAndOddCounts) {
  const int n = GetParam();
  ScratchDir scratch;
  const size_t max_bytes = 4 * 4096;
  Worker w(comm_config(n, scratch.file("rootinfo"), 2 * max_bytes,
                       {{"in", DataType::UINT8, max_bytes, max_bytes}, {"out", DataType::UINT8, max_bytes, max_bytes}}));
  w.init();
  std::vector<Case> cases;
  for (int mode : {0, 1, 2})
    for (DataType dt : {DataType::FLOAT32, DataType::FLOAT16, DataType::BFLOAT16, DataType::INT32})
      for (int op : {0, 1, 2})
        for (size_t count : {size_t{1}, size_t{7}, size_t{1001}, size_t{37} * n + 1}) cases.push_back({mode, dt, op, count});
  run_cases(w, n, cases);
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

INSTANTIATE_TEST_SUITE_P(Chips, WorkerAllreduce, ::testing::Values(1, 2, 3, 4, 8),
                         [](const auto& info) { return std::to_string(info.param) + "chips"; });

// twophase pushes plain stores, not streamed ones, to peers last seen on
// the pushing rank's CPU: with every rank on one CPU, every push of an
// out-of-place call takes that path.
TEST(WorkerAllreduce, TwophaseOutOfPlaceWithEveryRankOnOneCpu) {
  const int n = 4;
  ScratchDir scratch;
  const size_t max_bytes = 4 * 4096;
  Worker w(comm_config(n, scratch.file("rootinfo"), 2 * max_bytes,
                       {{"in", DataType::UINT8, max_bytes, max_bytes}, {"out", DataType::UINT8, max_bytes, max_bytes}}));
  w.init();
  cpu_set_t allowed, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  first_cpu_of(allowed, one);
  for (int r = 0; r < n; ++r) ASSERT_EQ(sched_setaffinity(w.chip_pid(r), sizeof one, &one), 0);
  std::vector<Case> cases;
  for (DataType dt : {DataType::FLOAT32, DataType::FLOAT16, DataType::INT32})
    for (int op : {0, 1, 2})
      for (size_t count : {size_t{7}, size_t{1001}, max_bytes / dtype_size(dt)}) cases.push_back({1, dt, op, count});
  run_cases(w, n, cases);
  for (int r = 0; r < n; ++r) EXPECT_EQ(sched_setaffinity(w.chip_pid(r), sizeof allowed, &allowed), 0);
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

TEST(WorkerAllreduceLarge, SixtyFourMiBFloat32EveryMode) {
  ScratchDir scratch;
  const size_t bytes = size_t{64} << 20;
  Worker w(comm_config(2, scratch.file("rootinfo"), 2 * bytes,
                       {{"in", DataType::UINT8, bytes, bytes}, {"out", DataType::UINT8, bytes, bytes}}));
  w.init();
  run_cases(w, 2, {{0, DataType::FLOAT32, 0, bytes / 4}, {1, DataType::FLOAT32, 0, bytes / 4},
                   {2, DataType::FLOAT32, 0, bytes / 4}});
  w.close();
}

}  // namespace
}  // namespace chipmesh::testing

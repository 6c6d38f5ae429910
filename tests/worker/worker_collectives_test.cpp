// The typed collectives of the Orchestrator over Worker::world(): every
// collective by address and by buffer name, in place and out of place, on
// 1, 3 and 4 chips (and a world whose chips are not in rank order),
// checked against a host reference through copy_to / copy_from; argument
// checking before dispatch; calls that return at once and run in order.
#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

// Small integers: exact in every dtype used here, and so are their sums over
// up to 8 ranks.
int64_t value(int rank, size_t i, uint64_t salt) {
  return static_cast<int64_t>((static_cast<uint64_t>(rank) * 13 + i * 7 + salt * 5) % 17) - 8;
}

void put(DataType t, unsigned char* base, size_t i, int64_t v) {
  unsigned char* p = base + i * dtype_size(t);
  switch (t) {
    case DataType::FLOAT32: {
      float f = static_cast<float>(v);
      std::memcpy(p, &f, 4);
      break;
    }
    case DataType::BFLOAT16: {
      uint16_t b = static_cast<uint16_t>(std::bit_cast<uint32_t>(static_cast<float>(v)) >> 16);
      std::memcpy(p, &b, 2);
      break;
    }
    default: {  // integers, little endian
      const uint64_t u = static_cast<uint64_t>(v);
      std::memcpy(p, &u, dtype_size(t));
    }
  }
}

int64_t reduce_ref(ReduceOp op, int n, size_t i, uint64_t salt) {
  int64_t acc = value(0, i, salt);
  for (int r = 1; r < n; ++r) {
    const int64_t v = value(r, i, salt);
    acc = op == ReduceOp::SUM ? acc + v : op == ReduceOp::MAX ? std::max(acc, v) : std::min(acc, v);
  }
  return acc;
}

enum class Coll { kAllreduce, kAllgather, kReduceScatter, kBroadcast, kReduce, kAllToAll };
constexpr Coll kColls[] = {Coll::kAllreduce, Coll::kAllgather, Coll::kReduceScatter,
                           Coll::kBroadcast, Coll::kReduce,    Coll::kAllToAll};
const char* name_of(Coll c) {
  constexpr const char* names[] = {"allreduce", "allgather", "reduce_scatter", "broadcast", "reduce", "all_to_all"};
  return names[static_cast<int>(c)];
}

constexpr size_t kBufBytes = 64 * 1024;

// Chips with buffers "a" and "b" of kBufBytes each; chip i is rank
// rank_of_chip(i).
Worker make_worker(int n, const ScratchDir& scratch, bool reversed = false) {
  WorkerConfig cfg = comm_config(n, scratch.file("rootinfo"), 2 * kBufBytes,
                                 {{"a", DataType::UINT8, kBufBytes, kBufBytes}, {"b", DataType::UINT8, kBufBytes, kBufBytes}});
  if (reversed)
    for (int i = 0; i < n; ++i) cfg.chip_bootstrap_configs[static_cast<size_t>(i)].comm->rank = n - 1 - i;
  return Worker(std::move(cfg));
}

struct Case {
  Coll coll;
  DataType t;
  ReduceOp op;
  bool in_place;
  size_t count;
  int root;
  bool by_name;
  uint64_t salt;
};

std::string describe(int n, const Case& c) {
  return std::to_string(n) + " chips: " + name_of(c.coll) + " " + std::string(dtype_name(c.t)) + " " +
         std::string(to_string(c.op)) + (c.in_place ? " in place" : " out of place") + " count " +
         std::to_string(c.count) + " root " + std::to_string(c.root) + (c.by_name ? " by name" : " by address");
}

// Where a case's data lies: the window's buffers, or device memory from
// Worker::malloc (staged through the window), or the input in the window
// and the output in malloc memory.
enum class Place { kWindow, kMalloc, kOutInMalloc };

// Runs the cases one run() each and checks every member's output.
void run_cases(Worker& w, const std::vector<Case>& cases, Place place = Place::kWindow) {
  const CommDomain& world = w.world();
  const int n = world.size();
  for (const Case& c : cases) {
    const size_t es = dtype_size(c.t);
    const bool in_n = c.coll == Coll::kReduceScatter || c.coll == Coll::kAllToAll;
    const bool out_n = c.coll == Coll::kAllgather || c.coll == Coll::kAllToAll;
    const size_t in_elems = in_n ? n * c.count : c.count;
    const size_t out_elems = out_n ? n * c.count : c.count;
    // In place: both in "b" (allgather: the NCCL form needs an address, so
    // by name it is in == out with the input at block 0).
    const bool by_name = c.by_name && place == Place::kWindow;
    const std::string in_name = c.in_place ? "b" : "a";
    std::vector<uint64_t> in(n), out(n), allocated;
    for (int r = 0; r < n; ++r) {
      const DomainContext& ctx = world.context(world.chips()[r]);
      const size_t bytes = std::max(in_elems, out_elems) * es + 64;
      auto mem = [&] {
        allocated.push_back(w.malloc(world.chips()[r], bytes));
        return allocated.back();
      };
      out[r] = place == Place::kWindow ? ctx.buffer_ptrs.at("b") : mem();
      in[r] = place == Place::kMalloc ? (c.in_place ? out[r] : mem())
                                      : (c.in_place && place == Place::kWindow ? out[r] : ctx.buffer_ptrs.at("a"));
      std::vector<unsigned char> buf(std::max(in_elems, out_elems) * es + 64, 0xA5);
      w.copy_to(world.chips()[r], out[r], buf.data(), buf.size());
      for (size_t i = 0; i < in_elems; ++i) put(c.t, buf.data(), i, value(r, i, c.salt));
      w.copy_to(world.chips()[r], in[r], buf.data(), in_elems * es);
    }
    w.run([&](Orchestrator& o) {
      if (by_name) {
        switch (c.coll) {
          case Coll::kAllreduce: o.allreduce(world, in_name, "b", c.count, c.t, c.op); break;
          case Coll::kAllgather: o.allgather(world, in_name, "b", c.count, c.t); break;
          case Coll::kReduceScatter: o.reduce_scatter(world, in_name, "b", c.count, c.t, c.op); break;
          case Coll::kBroadcast: o.broadcast(world, in_name, "b", c.count, c.t, c.root); break;
          case Coll::kReduce: o.reduce(world, in_name, "b", c.count, c.t, c.op, c.root); break;
          case Coll::kAllToAll: o.all_to_all(world, in_name, "b", c.count, c.t); break;
        }
      } else {
        switch (c.coll) {
          case Coll::kAllreduce: {
            // Every algorithm by turns (the staged form of twophase keeps
            // each rank's own chunk in the user's buffers).
            const auto algos = std::array{AllreduceAlgo::RING, AllreduceAlgo::AUTO, AllreduceAlgo::TWOPHASE,
                                          AllreduceAlgo::ONEPHASE};
            o.allreduce(world, in, out, c.count, c.t, c.op, algos[(c.salt / 4) % algos.size()]);
            break;
          }
          case Coll::kAllgather: o.allgather(world, in, out, c.count, c.t); break;
          case Coll::kReduceScatter: o.reduce_scatter(world, in, out, c.count, c.t, c.op); break;
          case Coll::kBroadcast: o.broadcast(world, in, out, c.count, c.t, c.root); break;
          case Coll::kReduce: o.reduce(world, in, out, c.count, c.t, c.op, c.root); break;
          case Coll::kAllToAll: o.all_to_all(world, in, out, c.count, c.t); break;
        }
      }
    });
    for (int r = 0; r < n; ++r) {
      if (c.coll == Coll::kReduce && r != c.root) continue;  // out is not significant
      std::vector<unsigned char> want(out_elems * es), got(out_elems * es);
      for (size_t i = 0; i < out_elems; ++i) {
        int64_t v = 0;
        switch (c.coll) {
          case Coll::kAllreduce:
          case Coll::kReduce: v = reduce_ref(c.op, n, i, c.salt); break;
          case Coll::kAllgather: v = value(static_cast<int>(i / c.count), i % c.count, c.salt); break;
          case Coll::kReduceScatter: v = reduce_ref(c.op, n, r * c.count + i, c.salt); break;
          case Coll::kBroadcast: v = value(c.root, i, c.salt); break;
          case Coll::kAllToAll: v = value(static_cast<int>(i / c.count), r * c.count + i % c.count, c.salt); break;
        }
        put(c.t, want.data(), i, v);
      }
      if (!got.empty()) w.copy_from(world.chips()[r], got.data(), out[r], got.size());
      ASSERT_TRUE(got == want) << describe(n, c) << " (place " << static_cast<int>(place) << "): rank " << r
                               << " (chip " << world.chips()[r] << ") differs";
    }
    for (size_t i = 0; i < allocated.size(); ++i) w.free(world.chips()[i / (allocated.size() / n)], allocated[i]);
  }
}

std::vector<Case> all_cases(int n) {
  std::vector<Case> v;
  uint64_t salt = 0;
  for (Coll coll : kColls)
    for (DataType t : {DataType::FLOAT32, DataType::BFLOAT16, DataType::INT8, DataType::INT64})
      for (bool in_place : {false, true})
        for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1001}}) {
          const ReduceOp op = std::array{ReduceOp::SUM, ReduceOp::MAX, ReduceOp::MIN}[salt % 3];
          const int root = static_cast<int>(salt % static_cast<uint64_t>(n));
          // allgather in place with in == out needs the input at block 0: fine
          // by name too; the by-address variant alternates.
          v.push_back({coll, t, op, in_place, count, root, salt % 2 == 0, salt});
          ++salt;
        }
  return v;
}

class WorkerCollectives : public ::testing::TestWithParam<int> {};

TEST_P(WorkerCollectives, EveryCollectiveByAddressAndByName) {
  const int n = GetParam();
  ScratchDir scratch;
  Worker w = make_worker(n, scratch);
  w.init();
  run_cases(w, all_cases(n));
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

INSTANTIATE_TEST_SUITE_P(Chips, WorkerCollectives, ::testing::Values(1, 3, 4),
                         [](const auto& info) { return std::to_string(info.param) + "chips"; });

// The same cases on data outside the windows (Worker::malloc memory), staged
// through a 4 KiB staging area after the buffers: the larger counts take
// several chunks (1001 int64 elements of 4 blocks are 32 KiB). And with the
// input in the window, the output outside.
class WorkerStagedCollectives : public ::testing::TestWithParam<int> {};

TEST_P(WorkerStagedCollectives, EveryCollectiveOnMallocMemoryThroughASmallWindow) {
  const int n = GetParam();
  ScratchDir scratch;
  WorkerConfig cfg = comm_config(n, scratch.file("rootinfo"), 2 * kBufBytes + 4096,
                                 {{"a", DataType::UINT8, kBufBytes, kBufBytes}, {"b", DataType::UINT8, kBufBytes, kBufBytes}});
  Worker w(std::move(cfg));
  w.init();
  run_cases(w, all_cases(n), Place::kMalloc);
  run_cases(w, all_cases(n), Place::kOutInMalloc);
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

INSTANTIATE_TEST_SUITE_P(Chips, WorkerStagedCollectives, ::testing::Values(1, 2, 3, 8),
                         [](const auto& info) { return std::to_string(info.param) + "chips"; });

// Chunks past 64 KiB, where reduce splits the fold across ranks (each rank's
// own slice stays in the user's buffers, the root copies out its peers'):
// every collective on 3 chips, 100003 elements per block (several chunks of
// a 384 KiB staging area, the last one partial), in place and out of place,
// every root.
TEST(WorkerStagedCollectivesLarge, ChunksPastTheSplitOfReduce) {
  ScratchDir scratch;
  constexpr int n = 3;
  WorkerConfig cfg = comm_config(n, scratch.file("rootinfo"), 2 * kBufBytes + (384 << 10),
                                 {{"a", DataType::UINT8, kBufBytes, kBufBytes}, {"b", DataType::UINT8, kBufBytes, kBufBytes}});
  Worker w(std::move(cfg));
  w.init();
  std::vector<Case> cases;
  uint64_t salt = 0;
  for (Coll coll : kColls)
    for (bool in_place : {false, true})
      for (int root = 0; root < n; ++root, ++salt)
        cases.push_back({coll, salt % 2 ? DataType::INT32 : DataType::FLOAT32,
                         std::array{ReduceOp::SUM, ReduceOp::MAX, ReduceOp::MIN}[salt % 3], in_place, 100003, root,
                         false, salt});
  run_cases(w, cases, Place::kMalloc);
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

// 256 MiB of int32 per chip, in Worker::malloc memory, summed through a
// 1 MiB window (256 chunks), in place; then an allgather of 16 MiB per rank
// into 32 MiB outputs through the same window. Checked element by element.
TEST(WorkerStagedCollectivesLarge, Allreduce256MiBThroughA1MiBWindow) {
#if defined(__SANITIZE_THREAD__)
  // 17 s of instrumented host loops and copies, and no thread of ours that
  // the smaller staged cases do not already exercise (the normal and ASan
  // runs keep it).
  GTEST_SKIP() << "the data volume, not the threads, is what this test checks";
#endif
  ScratchDir scratch;
  Worker w(comm_config(2, scratch.file("rootinfo"), size_t{1} << 20));
  w.init();
  const CommDomain& world = w.world();
  const size_t count = (size_t{256} << 20) / 4;
  std::vector<int32_t> host(count);
  std::vector<uint64_t> data;
  for (int chip = 0; chip < 2; ++chip) {
    data.push_back(w.malloc(chip, count * 4));
    for (size_t i = 0; i < count; ++i) host[i] = static_cast<int32_t>(i * (chip + 1));
    w.copy_to(chip, data.back(), host.data(), count * 4);
  }
  w.run([&](Orchestrator& o) { o.allreduce(world, data, data, count, DataType::INT32, ReduceOp::SUM); });
  for (int chip = 0; chip < 2; ++chip) {
    w.copy_from(chip, host.data(), data[static_cast<size_t>(chip)], count * 4);
    size_t wrong = 0, first = count;
    for (size_t i = 0; i < count; ++i)
      if (host[i] != static_cast<int32_t>(i * 3) && wrong++ == 0) first = i;
    EXPECT_EQ(wrong, 0u) << "chip " << chip << ": first wrong element " << first;
  }
  const size_t per_rank = (size_t{16} << 20) / 4;
  std::vector<uint64_t> gathered;
  for (int chip = 0; chip < 2; ++chip) gathered.push_back(w.malloc(chip, 2 * per_rank * 4));
  w.run([&](Orchestrator& o) { o.allgather(world, data, gathered, per_rank, DataType::INT32); });
  for (int chip = 0; chip < 2; ++chip) {
    std::vector<int32_t> got(2 * per_rank);
    w.copy_from(chip, got.data(), gathered[static_cast<size_t>(chip)], got.size() * 4);
    size_t wrong = 0;
    for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != static_cast<int32_t>((i % per_rank) * 3);
    EXPECT_EQ(wrong, 0u) << "chip " << chip << " allgather";
  }
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

TEST(WorkerWorld, DescribesTheBringUpCommunicatorInRankOrder) {
  ScratchDir scratch;
  Worker w = make_worker(3, scratch, /*reversed=*/true);
  w.init();
  const CommDomain& world = w.world();
  EXPECT_EQ(world.name(), "world");
  EXPECT_EQ(world.size(), 3);
  EXPECT_EQ(world.allocation_id(), 0u);
  EXPECT_FALSE(world.released());
  EXPECT_EQ(world.chips(), (std::vector<int>{2, 1, 0}));  // rank r is chip 2 - r
  for (int chip = 0; chip < 3; ++chip) {
    const DomainContext& ctx = world.context(chip);
    const ChipContext& cc = w.chip_contexts()[static_cast<size_t>(chip)];
    EXPECT_EQ(ctx.chip, chip);
    EXPECT_EQ(ctx.domain_rank, 2 - chip);
    EXPECT_EQ(ctx.domain_size, 3);
    EXPECT_EQ(ctx.device_ctx, cc.device_ctx);
    EXPECT_EQ(ctx.local_window_base, cc.local_window_base);
    EXPECT_EQ(ctx.actual_window_size, cc.actual_window_size);
    EXPECT_EQ(ctx.buffer_ptrs, cc.buffer_ptrs);
    EXPECT_EQ(world.rank_of(chip), 2 - chip);
  }
  EXPECT_THROW(world.context(3), ConfigError);
  const CommDomain copy = world;  // a value handle on the same domain
  EXPECT_EQ(&copy.chips(), &world.chips());
  // Collectives follow domain ranks, not chip indices.
  run_cases(w, {{Coll::kAllgather, DataType::INT32, ReduceOp::SUM, false, 5, 0, false, 1},
                {Coll::kReduceScatter, DataType::INT32, ReduceOp::SUM, false, 5, 0, true, 2},
                {Coll::kBroadcast, DataType::INT32, ReduceOp::SUM, false, 5, 2, false, 3},
                {Coll::kAllreduce, DataType::INT32, ReduceOp::MAX, true, 5, 0, true, 4}});
  w.close();
}

TEST(WorkerWorld, IsAConfigErrorWithoutACommunicator) {
  WorkerConfig cfg;
  cfg.device_ids = {0, 1};
  Worker w(cfg);
  EXPECT_THROW(w.world(), ConfigError);  // before init()
  w.init();
  const std::string msg = config_error_of([&] { w.world(); });
  EXPECT_NE(msg.find("without a communicator"), std::string::npos) << msg;
  w.close();
}

TEST(WorkerCollectivesArgs, BadArgumentsAreConfigErrorsBeforeDispatch) {
  ScratchDir scratch;
  Worker w = make_worker(2, scratch);
  w.init();
  const CommDomain& d = w.world();
  const auto& c0 = w.world().context(0).buffer_ptrs;
  const auto& c1 = w.world().context(1).buffer_ptrs;
  const std::vector<uint64_t> a = {c0.at("a"), c1.at("a")}, b = {c0.at("b"), c1.at("b")};
  const uint64_t outside = w.malloc(0, 4096);
  const auto f32 = DataType::FLOAT32;
  // Marker in b: nothing may run.
  std::vector<unsigned char> marker(256, 0x5A);
  for (int chip = 0; chip < 2; ++chip) w.copy_to(chip, b[static_cast<size_t>(chip)], marker.data(), marker.size());
  auto expect_config = [&](const char* what, const std::function<void(Orchestrator&)>& call,
                           const std::string& message) {
    const std::string msg = config_error_of([&] { w.run(call); });
    EXPECT_NE(msg.find(message), std::string::npos) << what << ": " << msg;
  };
  expect_config("short vector", [&](Orchestrator& o) { o.allreduce(d, {a[0]}, b, 8, f32, ReduceOp::SUM); },
                "1 input and 2 output addresses for a domain of 2 chips");
  expect_config("root", [&](Orchestrator& o) { o.broadcast(d, a, b, 8, f32, 2); }, "root 2 is outside the domain");
  expect_config("negative root", [&](Orchestrator& o) { o.reduce(d, a, b, 8, f32, ReduceOp::SUM, -1); },
                "root -1 is outside");
  expect_config("overflow", [&](Orchestrator& o) { o.all_to_all(d, a, b, size_t{1} << 62, f32); }, "overflows");
  expect_config("dtype", [&](Orchestrator& o) { o.reduce_scatter(d, a, b, 8, DataType::UINT16, ReduceOp::SUM); },
                "dtype uint16 is not supported");
  expect_config("op", [&](Orchestrator& o) { o.allreduce(d, a, b, 8, f32, static_cast<ReduceOp>(7)); },
                "reduce op 7");
  expect_config("outside window and memory", [&](Orchestrator& o) {
    o.allgather(d, {outside + 4096, a[1]}, b, 8, f32);
  }, "input of rank 0 (chip 0) [" + std::to_string(outside + 4096) + ", +32 bytes) is neither inside its window");
  expect_config("past the window", [&](Orchestrator& o) { o.broadcast(d, a, b, kBufBytes, f32, 0); },
                "nor inside one allocation Worker::malloc returned for chip 0");
  expect_config("past an allocation", [&](Orchestrator& o) { o.broadcast(d, {outside + 8, a[1]}, b, 1024, f32, 0); },
                "is neither inside its window");
  // Malloc memory is staged through the window bytes after the buffers:
  // here the buffers fill the whole window.
  expect_config("no staging room", [&](Orchestrator& o) { o.allgather(d, {outside, a[1]}, b, 8, f32); },
                "which cannot hold one element of each of its 2 blocks (8 bytes)");
  expect_config("unknown buffer", [&](Orchestrator& o) { o.allgather(d, "nope", "b", 8, f32); },
                "has no buffer 'nope'");
  expect_config("allreduce offsets", [&](Orchestrator& o) { o.allreduce(d, {a[0], a[1] + 4}, b, 8, f32, ReduceOp::SUM); },
                "same window offsets");
  expect_config("partial overlap", [&](Orchestrator& o) {
    o.allreduce(d, a, {a[0] + 16, a[1] + 16}, 8, f32, ReduceOp::SUM);
  }, "overlap without being in place");
  expect_config("partial overlap of a collective", [&](Orchestrator& o) {
    o.all_to_all(d, a, {a[0] + 4, a[1] + 4}, 4, f32);
  }, "rank 0's input [");
  expect_config("released handle", [&](Orchestrator& o) { o.barrier(CommDomain()); }, "refers to no domain");
  // Nothing of any rejected call reached a chip.
  for (int chip = 0; chip < 2; ++chip) {
    std::vector<unsigned char> got(marker.size());
    w.copy_from(chip, got.data(), b[static_cast<size_t>(chip)], got.size());
    EXPECT_TRUE(got == marker) << "chip " << chip << ": a rejected call wrote its output";
  }
  w.free(0, outside);
  w.close();
}

// By buffer name, each member's buffer bounds the count: a count past it ran
// on into the next buffer of the window. Chip 1's "small" is smaller than
// chip 0's; a buffer only the root uses (broadcast's input, reduce's
// output) is checked on the root only.
TEST(WorkerCollectivesArgs, ACountPastANamedBufferIsAConfigError) {
  WorkerConfig cfg =
      comm_config(2, "", 4096, {{"small", DataType::FLOAT32, 16, 64}, {"big", DataType::FLOAT32, 256, 1024}});
  cfg.chip_bootstrap_configs[1].buffers[0] = {"small", DataType::FLOAT32, 4, 16};
  Worker w(std::move(cfg));
  w.init();
  const CommDomain& d = w.world();
  const auto f32 = DataType::FLOAT32;
  auto expect_config = [&](const char* what, const std::function<void(Orchestrator&)>& call,
                           const std::string& message) {
    const std::string msg = config_error_of([&] { w.run(call); });
    EXPECT_NE(msg.find(message), std::string::npos) << what << ": " << msg;
  };
  const std::string on = "Orchestrator::";
  expect_config("allreduce input", [&](Orchestrator& o) { o.allreduce(d, "small", "big", 17, f32, ReduceOp::SUM); },
                on + "allreduce on domain 'world': the input 'small' of chip 0 (rank 0) holds 64 bytes, and 17 "
                     "float32 elements need 68");
  expect_config("allreduce output", [&](Orchestrator& o) { o.allreduce(d, "big", "small", 8, f32, ReduceOp::SUM); },
                "the output 'small' of chip 1 (rank 1) holds 16 bytes, and 8 float32 elements need 32");
  expect_config("allgather output", [&](Orchestrator& o) { o.allgather(d, "big", "small", 4, f32); },
                "the output 'small' of chip 1 (rank 1) holds 16 bytes, and 4 x 2 float32 elements need 32");
  expect_config("reduce_scatter input",
                [&](Orchestrator& o) { o.reduce_scatter(d, "small", "big", 4, f32, ReduceOp::SUM); },
                "the input 'small' of chip 1 (rank 1) holds 16 bytes, and 4 x 2 float32 elements need 32");
  expect_config("all_to_all input", [&](Orchestrator& o) { o.all_to_all(d, "small", "big", 4, f32); },
                "the input 'small' of chip 1 (rank 1) holds 16 bytes");
  expect_config("broadcast from chip 1", [&](Orchestrator& o) { o.broadcast(d, "small", "big", 16, f32, 1); },
                "the input 'small' of chip 1 (rank 1) holds 16 bytes, and 16 float32 elements need 64");
  expect_config("reduce into chip 1", [&](Orchestrator& o) { o.reduce(d, "big", "small", 16, f32, ReduceOp::SUM, 1); },
                "the output 'small' of chip 1 (rank 1) holds 16 bytes");
  // The same call by address is the user's to size (it lies in the window),
  // and by name right after it, a repeat of it, is still checked.
  const std::vector<uint64_t> small = {d.context(0).buffer_ptrs.at("small"), d.context(1).buffer_ptrs.at("small")};
  w.run([&](Orchestrator& o) { o.allreduce(d, small, small, 8, f32, ReduceOp::SUM); });
  expect_config("a repeat by name", [&](Orchestrator& o) {
    o.allreduce(d, small, small, 8, f32, ReduceOp::SUM);
    o.allreduce(d, "small", "small", 8, f32, ReduceOp::SUM);
  }, "the input 'small' of chip 1 (rank 1) holds 16 bytes, and 8 float32 elements need 32");
  // Root 0: chip 1's small input (broadcast) and output (reduce) go unused.
  std::vector<float> ones(256, 1.0f), twos(256, 2.0f), got(16);
  for (int i = 0; i < 16; ++i) ones[static_cast<size_t>(i)] = static_cast<float>(i);
  w.copy_to(0, d.context(0).buffer_ptrs.at("small"), ones.data(), 64);
  w.run([&](Orchestrator& o) { o.broadcast(d, "small", "big", 16, f32, 0); });
  w.copy_from(1, got.data(), d.context(1).buffer_ptrs.at("big"), 64);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(got[static_cast<size_t>(i)], static_cast<float>(i)) << i;
  w.copy_to(0, d.context(0).buffer_ptrs.at("big"), twos.data(), 1024);
  w.copy_to(1, d.context(1).buffer_ptrs.at("big"), twos.data(), 1024);
  w.run([&](Orchestrator& o) { o.reduce(d, "big", "small", 16, f32, ReduceOp::SUM, 0); });
  w.copy_from(0, got.data(), d.context(0).buffer_ptrs.at("small"), 64);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(got[static_cast<size_t>(i)], 4.0f) << i;
  w.close();
}

TEST(WorkerCollectivesOrder, CallsReturnAtOnceAndRunInSubmissionOrder) {
  // broadcast a -> b from rank 1, then allgather b -> a, then a barrier,
  // then allreduce a -> b: each reads what the previous one wrote; one
  // wait() at the end.
  ScratchDir scratch;
  const int n = 3;
  Worker w = make_worker(n, scratch);
  w.init();
  const CommDomain& d = w.world();
  const size_t count = 100;
  for (int r = 0; r < n; ++r) {
    std::vector<int32_t> v(count);
    for (size_t i = 0; i < count; ++i) v[i] = static_cast<int32_t>(value(r, i, 9));
    w.copy_to(r, d.context(r).buffer_ptrs.at("a"), v.data(), count * 4);
  }
  w.run([&](Orchestrator& o) {
    o.broadcast(d, "a", "b", count, DataType::INT32, 1);
    o.allgather(d, "b", "a", count, DataType::INT32);
    o.barrier(d);
    o.allreduce(d, "a", "b", n * count, DataType::INT32, ReduceOp::SUM);
    o.wait();
  });
  for (int r = 0; r < n; ++r) {
    std::vector<int32_t> got(n * count);
    w.copy_from(r, got.data(), d.context(r).buffer_ptrs.at("b"), got.size() * 4);
    for (size_t i = 0; i < n * count; ++i)
      ASSERT_EQ(got[i], n * value(1, i % count, 9)) << "chip " << r << " element " << i;
  }
  w.close();
}

// The worker submits a call that repeats the previous one from the tasks
// that call left (Worker::Impl::LastCollective). Each of these calls
// differs from the one before in one argument only, or repeats it exactly,
// and each must give its own result.
TEST(WorkerCollectivesRepeated, EachCallGetsItsOwnResult) {
  ScratchDir scratch;
  const int n = 3;
  Worker w = make_worker(n, scratch);
  w.init();
  const CommDomain& d = w.world();
  const size_t count = 64;
  auto buf = [&](int r, const char* name) { return d.context(r).buffer_ptrs.at(name); };
  auto load = [&](const char* name, uint64_t salt) {
    for (int r = 0; r < n; ++r) {
      std::vector<int32_t> v(count);
      for (size_t i = 0; i < count; ++i) v[i] = static_cast<int32_t>(value(r, i, salt));
      w.copy_to(r, buf(r, name), v.data(), count * 4);
    }
  };
  auto got = [&](int r, const char* name) {
    std::vector<int32_t> v(count);
    w.copy_from(r, v.data(), buf(r, name), count * 4);
    return v;
  };
  auto zero_b = [&] {
    const std::vector<int32_t> z(count, 0);
    for (int r = 0; r < n; ++r) w.copy_to(r, buf(r, "b"), z.data(), count * 4);
  };
  load("a", 3);
  for (int root : {0, 1, 1}) {  // another root, then the same call again
    zero_b();
    w.run([&](Orchestrator& o) { o.broadcast(d, "a", "b", count, DataType::INT32, root); });
    for (int r = 0; r < n; ++r) {
      const auto v = got(r, "b");
      for (size_t i = 0; i < count; ++i) ASSERT_EQ(v[i], value(root, i, 3)) << "root " << root << " chip " << r << " [" << i << "]";
    }
  }
  zero_b();  // a smaller count: the rest of b stays 0
  w.run([&](Orchestrator& o) { o.broadcast(d, "a", "b", count / 2, DataType::INT32, 1); });
  for (int r = 0; r < n; ++r) {
    const auto v = got(r, "b");
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(v[i], i < count / 2 ? value(1, i, 3) : 0) << "chip " << r << " [" << i << "]";
  }
  for (ReduceOp op : {ReduceOp::SUM, ReduceOp::MAX}) {  // another op
    w.run([&](Orchestrator& o) { o.reduce(d, "a", "b", count, DataType::INT32, op, 2); });
    const auto v = got(2, "b");
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(v[i], reduce_ref(op, n, i, 3)) << "op " << static_cast<int>(op) << " [" << i << "]";
  }
  // The same in-place allreduce three times in one run: each one runs.
  w.run([&](Orchestrator& o) {
    for (int k = 0; k < 3; ++k) o.allreduce(d, "a", "a", count, DataType::INT32, ReduceOp::SUM);
  });
  for (int r = 0; r < n; ++r) {
    const auto v = got(r, "a");
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(v[i], n * n * reduce_ref(ReduceOp::SUM, n, i, 3)) << "chip " << r << " [" << i << "]";
  }
  w.close();
}

// A call by address into Worker::malloc memory, repeated after one of the
// buffers was freed, is checked again and refused: nothing runs on memory
// the chip no longer holds.
TEST(WorkerCollectivesRepeated, ACallOnMemoryFreedSinceIsRefused) {
  ScratchDir scratch;
  const int n = 2;
  // Room after the buffers: malloc memory is staged through it.
  Worker w(comm_config(n, scratch.file("rootinfo"), 4 * kBufBytes,
                       {{"a", DataType::UINT8, kBufBytes, kBufBytes}, {"b", DataType::UINT8, kBufBytes, kBufBytes}}));
  w.init();
  const CommDomain& d = w.world();
  const size_t count = 256;
  std::vector<uint64_t> in, out;
  for (int r = 0; r < n; ++r) {
    in.push_back(w.malloc(r, count * 4));
    out.push_back(w.malloc(r, count * 4));
    std::vector<int32_t> v(count);
    for (size_t i = 0; i < count; ++i) v[i] = static_cast<int32_t>(value(r, i, 4));
    w.copy_to(r, in.back(), v.data(), count * 4);
  }
  auto call = [&](Orchestrator& o) { o.allreduce(d, in, out, count, DataType::INT32, ReduceOp::SUM); };
  w.run(call);
  std::vector<int32_t> v(count);
  w.copy_from(1, v.data(), out[1], count * 4);
  for (size_t i = 0; i < count; ++i) ASSERT_EQ(v[i], reduce_ref(ReduceOp::SUM, n, i, 4)) << "[" << i << "]";
  w.free(1, out[1]);
  const std::string freed = config_error_of([&] { w.run(call); });
  EXPECT_NE(freed.find("output of rank 1 (chip 1) [" + std::to_string(out[1])), std::string::npos)
      << "the repeated call on freed memory: " << freed;
  w.free(0, out[0]);
  for (int r = 0; r < n; ++r) w.free(r, in[static_cast<size_t>(r)]);
  w.close();
}

// A repeated call skips the checks of its tasks, not whether each member
// is alive: after a member is killed the same call fails naming it, every
// time, and the other members stay usable.
TEST(WorkerCollectivesRepeated, ARepeatAfterAMemberDiedFailsNamingIt) {
  ScratchDir scratch;
  Worker w = make_worker(3, scratch);
  w.init();
  const CommDomain& d = w.world();
  auto call = [&](Orchestrator& o) { o.allreduce(d, "a", "b", 16, DataType::INT32, ReduceOp::SUM); };
  w.run(call);
  w.run(call);
  const pid_t pid = w.chip_pid(1);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  const std::string named = "chip 1 (device 1, pid " + std::to_string(pid) + ")";
  // The first run may be submitted before the death is seen; its wait sees it.
  const std::string first = chip_error_of([&] { w.run(call); });
  EXPECT_NE(first.find(named), std::string::npos) << first;
  for (int k = 0; k < 2; ++k) {  // the death is known now: refused before anything is queued
    const std::string msg = chip_error_of([&] { w.run(call); });
    EXPECT_NE(msg.find(named), std::string::npos) << msg;
    EXPECT_NE(msg.find("the chip process is gone"), std::string::npos) << msg;
  }
  Task noop;
  noop.kernel = "chipmesh_noop";
  w.run([&](Orchestrator& o) { o.submit_group({0, 2}, noop); });
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

TEST(WorkerCollectivesFailure, AMemberThatDiesFailsTheCollectiveWithAChipErrorNamingIt) {
  // Chip 2 crashes in a kernel of its own; chips 0 and 1 enter the
  // allgather and wait for it: run() throws a ChipError naming chip 2
  // instead of hanging, and nothing is left behind.
  ScratchDir scratch;
  Worker w = make_worker(3, scratch);
  w.init();
  const CommDomain& d = w.world();
  int failed_chip = -1;
  const std::string msg = chip_error_of([&] {
    try {
      w.run([&](Orchestrator& o) {
        o.submit(2, task("test_segv"));
        o.allgather(d, "a", "b", 16, DataType::FLOAT32);
      });
    } catch (const ChipError& e) {
      failed_chip = e.chip();
      throw;
    }
  });
  EXPECT_EQ(failed_chip, 2) << msg;
  EXPECT_NE(msg.find("chip 2"), std::string::npos) << msg;
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

}  // namespace
}  // namespace chipmesh::testing

// The public names of reduce ops and allreduce algorithms, and the encoding
// of the chipmesh_allreduce kernel's scalars that older tasks rely on.
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/collectives.h"

namespace chipmesh {
namespace {

TEST(CollectiveNames, EveryNameRoundTrips) {
  for (ReduceOp op : {ReduceOp::SUM, ReduceOp::PROD, ReduceOp::MAX, ReduceOp::MIN})
    EXPECT_EQ(parse_reduce_op(to_string(op)), op) << to_string(op);
  for (AllreduceAlgo a : {AllreduceAlgo::AUTO, AllreduceAlgo::ONEPHASE, AllreduceAlgo::TWOPHASE, AllreduceAlgo::RING})
    EXPECT_EQ(parse_allreduce_algo(to_string(a)), a) << to_string(a);
}

TEST(CollectiveNames, UnknownNameIsAConfigErrorListingTheValidOnes) {
  try {
    parse_reduce_op("avg");
    FAIL() << "parsed 'avg'";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'avg'"), std::string::npos) << m;
    EXPECT_NE(m.find("sum, prod, max, min"), std::string::npos) << m;
  }
  EXPECT_THROW(parse_allreduce_algo("Ring"), ConfigError);  // names are exact
}

TEST(CollectiveNames, KernelScalarsKeepTheirOldEncoding) {
  // Tasks written as {mode, op} numbers before the names existed.
  EXPECT_EQ(allreduce_kernel::mode(AllreduceAlgo::ONEPHASE, 8), 0u);
  EXPECT_EQ(allreduce_kernel::mode(AllreduceAlgo::TWOPHASE, 8), 1u);
  EXPECT_EQ(allreduce_kernel::mode(AllreduceAlgo::RING, 8), 2u);
  EXPECT_EQ(allreduce_kernel::op(ReduceOp::SUM), 0u);
  EXPECT_EQ(allreduce_kernel::op(ReduceOp::MAX), 1u);
  EXPECT_EQ(allreduce_kernel::op(ReduceOp::MIN), 2u);
  EXPECT_EQ(allreduce_kernel::op(ReduceOp::PROD), 3u);  // added after the old three
  EXPECT_THROW(allreduce_kernel::op(static_cast<ReduceOp>(9)), ConfigError);
  EXPECT_EQ(allreduce_kernel::mode_name(2), "ring");
  EXPECT_EQ(allreduce_kernel::mode_name(3), "?");
}

TEST(CollectiveNames, AutoPicksOnePhaseForSmallAndTwoPhaseForLargeMessages) {
  const uint64_t cut = allreduce_kernel::kAutoTwoRanksTwoPhaseBytes;
  EXPECT_EQ(allreduce_kernel::mode(AllreduceAlgo::AUTO, cut - 1), allreduce_kernel::kModeOnePhase);
  EXPECT_EQ(allreduce_kernel::mode(AllreduceAlgo::AUTO, cut), allreduce_kernel::kModeTwoPhase);
  // By the rank count: one phase while n * n * bytes < 1 MiB, then two
  // phases at every size (the ring only when asked for); 1 and 2 ranks as
  // by the size alone.
  using allreduce_kernel::mode;
  for (uint64_t n : {1u, 2u}) {
    EXPECT_EQ(mode(AllreduceAlgo::AUTO, cut - 1, n), allreduce_kernel::kModeOnePhase) << n;
    EXPECT_EQ(mode(AllreduceAlgo::AUTO, cut, n), allreduce_kernel::kModeTwoPhase) << n;
    EXPECT_EQ(mode(AllreduceAlgo::AUTO, uint64_t{1} << 30, n), allreduce_kernel::kModeTwoPhase) << n;
  }
  EXPECT_EQ(mode(AllreduceAlgo::AUTO, (64u << 10) - 1, 4), allreduce_kernel::kModeOnePhase);
  EXPECT_EQ(mode(AllreduceAlgo::AUTO, 64u << 10, 4), allreduce_kernel::kModeTwoPhase);
  EXPECT_EQ(mode(AllreduceAlgo::AUTO, (16u << 10) - 1, 8), allreduce_kernel::kModeOnePhase);
  EXPECT_EQ(mode(AllreduceAlgo::AUTO, 16u << 10, 8), allreduce_kernel::kModeTwoPhase);
  EXPECT_EQ(mode(AllreduceAlgo::AUTO, (256u << 10) - 1, 8), allreduce_kernel::kModeTwoPhase);
  EXPECT_EQ(mode(AllreduceAlgo::AUTO, 0, 64), allreduce_kernel::kModeOnePhase);
  EXPECT_EQ(mode(AllreduceAlgo::AUTO, 256, 64), allreduce_kernel::kModeTwoPhase);
  for (uint64_t n : {3u, 4u, 8u, 16u, 64u}) {
    EXPECT_EQ(mode(AllreduceAlgo::AUTO, cut, n), allreduce_kernel::kModeTwoPhase) << n;
    EXPECT_EQ(mode(AllreduceAlgo::AUTO, uint64_t{1} << 30, n), allreduce_kernel::kModeTwoPhase) << n;
  }
  EXPECT_EQ(mode(AllreduceAlgo::TWOPHASE, 8, 2), allreduce_kernel::kModeTwoPhase);
  EXPECT_EQ(mode(AllreduceAlgo::RING, 8, 8), allreduce_kernel::kModeRing);  // asked for, not AUTO
  // The task builder passes the rank count on.
  EXPECT_EQ(allreduce_task(0, 64, (64u << 10) / 4, DataType::FLOAT32, ReduceOp::SUM).scalars[0],
            allreduce_kernel::kModeOnePhase);
  EXPECT_EQ(allreduce_task(0, 64, (64u << 10) / 4, DataType::FLOAT32, ReduceOp::SUM, AllreduceAlgo::AUTO, 4)
                .scalars[0],
            allreduce_kernel::kModeTwoPhase);
}

TEST(CollectiveNames, AllreduceTaskBuildsTheBuiltInKernelCall) {
  Task t = allreduce_task(0x1000, 0x2000, 7, DataType::BFLOAT16, ReduceOp::MAX, AllreduceAlgo::TWOPHASE);
  EXPECT_EQ(t.kernel, "chipmesh_allreduce");
  EXPECT_EQ(t.library, "");
  ASSERT_EQ(t.tensors.size(), 2u);
  EXPECT_EQ(t.tensors[0].addr, 0x1000u);
  EXPECT_EQ(t.tensors[1].addr, 0x2000u);
  EXPECT_EQ(t.tensors[1].dtype, DataType::BFLOAT16);
  EXPECT_EQ(t.tensors[0].shape, std::vector<uint64_t>{7});
  EXPECT_EQ(t.scalars, (std::vector<uint64_t>{1, 1}));
}

TEST(CollectiveNames, TaskBuildersOfTheOtherCollectives) {
  const Task ag = allgather_task(0x100, 0x200, 5, DataType::INT8, 4);
  EXPECT_EQ(ag.kernel, "chipmesh_allgather");
  EXPECT_EQ(ag.library, "");
  ASSERT_EQ(ag.tensors.size(), 2u);
  EXPECT_EQ(ag.tensors[0].shape, std::vector<uint64_t>{5});
  EXPECT_EQ(ag.tensors[1].shape, std::vector<uint64_t>{20});
  EXPECT_TRUE(ag.scalars.empty());

  const Task rs = reduce_scatter_task(0x100, 0x200, 5, DataType::FLOAT64, ReduceOp::PROD, 3);
  EXPECT_EQ(rs.kernel, "chipmesh_reduce_scatter");
  EXPECT_EQ(rs.tensors[0].shape, std::vector<uint64_t>{15});
  EXPECT_EQ(rs.tensors[1].shape, std::vector<uint64_t>{5});
  EXPECT_EQ(rs.scalars, std::vector<uint64_t>{3});

  const Task bc = broadcast_task(0x100, 0x100, 7, DataType::UINT8, 2);
  EXPECT_EQ(bc.kernel, "chipmesh_broadcast");
  EXPECT_EQ(bc.scalars, std::vector<uint64_t>{2});

  const Task rd = reduce_task(0x100, 0x200, 7, DataType::INT64, ReduceOp::MIN, 1);
  EXPECT_EQ(rd.kernel, "chipmesh_reduce");
  EXPECT_EQ(rd.scalars, (std::vector<uint64_t>{2, 1}));

  const Task a2a = alltoall_task(0x100, 0x200, 3, DataType::BFLOAT16, 2);
  EXPECT_EQ(a2a.kernel, "chipmesh_alltoall");
  EXPECT_EQ(a2a.tensors[0].shape, std::vector<uint64_t>{6});
  EXPECT_EQ(a2a.tensors[1].shape, std::vector<uint64_t>{6});

  const Task b = barrier_task();
  EXPECT_EQ(b.kernel, "chipmesh_barrier");
  EXPECT_TRUE(b.tensors.empty() && b.scalars.empty());
}

// Every field a task has, for comparing two.
void expect_same(const Task& a, const Task& b, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(a.kernel, b.kernel);
  EXPECT_EQ(a.library, b.library);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].addr, b.tensors[i].addr);
    EXPECT_EQ(a.tensors[i].dtype, b.tensors[i].dtype);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
  }
  EXPECT_EQ(a.scalars, b.scalars);
  EXPECT_EQ(a.comm_ctx, b.comm_ctx);
  EXPECT_EQ(a.flush_outputs, b.flush_outputs);
}

TEST(CollectiveNames, SetBuildersOverwriteATaskThatHeldAnotherCallWithTheSameTask) {
  // What the Orchestrator's reused tasks may hold from an earlier call: a
  // staged task of another kernel, a library, three tensors, a domain's
  // communicator, no flush.
  auto used = [] {
    Task t = staged_task(reduce_task(0x10, 0x20, 3, DataType::INT32, ReduceOp::SUM, 1), staged_kernel::kReduce, 64, 8);
    t.library = "/some/lib.so";
    t.tensors.push_back(TensorArg{0x30, DataType::INT8, {1, 2, 3}});
    t.comm_ctx = 0x4000;
    t.flush_outputs = false;
    return t;
  };
  struct Case {
    const char* what;
    std::function<void(Task&)> set;
    Task want;
  };
  const Case cases[] = {
      {"allreduce",
       [](Task& t) {
         set_allreduce_task(t, 0x1000, 0x2000, 7, DataType::BFLOAT16, ReduceOp::MAX, AllreduceAlgo::AUTO, 4);
       },
       allreduce_task(0x1000, 0x2000, 7, DataType::BFLOAT16, ReduceOp::MAX, AllreduceAlgo::AUTO, 4)},
      {"allgather", [](Task& t) { set_allgather_task(t, 0x100, 0x200, 5, DataType::INT8, 4); },
       allgather_task(0x100, 0x200, 5, DataType::INT8, 4)},
      {"reduce_scatter",
       [](Task& t) { set_reduce_scatter_task(t, 0x100, 0x200, 5, DataType::FLOAT64, ReduceOp::PROD, 3); },
       reduce_scatter_task(0x100, 0x200, 5, DataType::FLOAT64, ReduceOp::PROD, 3)},
      {"broadcast", [](Task& t) { set_broadcast_task(t, 0x100, 0x100, 7, DataType::UINT8, 2); },
       broadcast_task(0x100, 0x100, 7, DataType::UINT8, 2)},
      {"reduce", [](Task& t) { set_reduce_task(t, 0x100, 0x200, 7, DataType::INT64, ReduceOp::MIN, 1); },
       reduce_task(0x100, 0x200, 7, DataType::INT64, ReduceOp::MIN, 1)},
      {"alltoall", [](Task& t) { set_alltoall_task(t, 0x100, 0x200, 3, DataType::BFLOAT16, 2); },
       alltoall_task(0x100, 0x200, 3, DataType::BFLOAT16, 2)},
      {"barrier", [](Task& t) { set_barrier_task(t); }, barrier_task()},
  };
  for (const Case& c : cases) {
    Task t = used();
    c.set(t);
    expect_same(t, c.want, c.what);
  }
  // In place: the staged form of a task equals staged_task of it.
  Task t = allgather_task(0x100, 0x200, 5, DataType::INT8, 4);
  make_staged_task(t, staged_kernel::kAllgather, 128, 16);
  expect_same(t, staged_task(allgather_task(0x100, 0x200, 5, DataType::INT8, 4), staged_kernel::kAllgather, 128, 16),
              "staged");
  EXPECT_EQ(t.kernel, "chipmesh_staged");
  EXPECT_EQ(t.scalars, (std::vector<uint64_t>{staged_kernel::kAllgather, 128, 16}));
}

TEST(CollectiveNames, ReducibleDtypes) {
  EXPECT_TRUE(reducible(DataType::INT8));
  EXPECT_TRUE(reducible(DataType::FLOAT64));
  EXPECT_FALSE(reducible(DataType::INT16));
  EXPECT_FALSE(reducible(DataType::UINT64));
}

}  // namespace
}  // namespace chipmesh

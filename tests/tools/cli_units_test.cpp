// The pieces of the `chipmesh` command that decide correctness, tested in
// process: the demo's closed-form values (exact in every dtype for up to 64
// chips) and clean's reading of object names and process states.

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/half.h"

#include "demo_values.h"
#include "ownership.h"

namespace {

using namespace chipmesh::cli;
using chipmesh::DataType;
using chipmesh::ReduceOp;
namespace half = chipmesh::half;

// Every partial sum, in any order, stays exactly representable in the
// narrowest dtype: bfloat16 holds every integer of magnitude <= 256.
TEST(DemoValues, PartialSumsStayExactInEveryDtypeUpTo64Chips) {
  for (int n = 1; n <= 64; ++n) {
    DemoPattern p(n, ReduceOp::SUM);
    EXPECT_LE(p.magnitude() * n, 256) << n;
    for (size_t i = 0; i < 3000; ++i) {
      int64_t sum_abs = 0;
      int64_t sum = 0;
      for (int r = 0; r < n; ++r) {
        const int64_t v = p.input(r, i);
        ASSERT_NE(v, 0);
        ASSERT_LE(std::llabs(v), p.magnitude());
        sum_abs += std::llabs(v);
        sum += v;
      }
      ASSERT_LE(sum_abs, 256) << "n=" << n << " i=" << i;  // bounds every partial sum
      ASSERT_EQ(p.expected(i), sum) << "n=" << n << " i=" << i;
    }
  }
}

TEST(DemoValues, MaxAndMinMatchTheInputs) {
  for (int n : {1, 2, 3, 7, 64}) {
    DemoPattern mx(n, ReduceOp::MAX);
    DemoPattern mn(n, ReduceOp::MIN);
    for (size_t i = 0; i < 500; ++i) {
      int64_t hi = mx.input(0, i), lo = mx.input(0, i);
      for (int r = 1; r < n; ++r) {
        hi = std::max(hi, mx.input(r, i));
        lo = std::min(lo, mx.input(r, i));
      }
      ASSERT_EQ(mx.expected(i), hi);
      ASSERT_EQ(mn.expected(i), lo);
    }
  }
}

TEST(DemoValues, RanksAndElementsDiffer) {
  DemoPattern p(4, ReduceOp::SUM);
  int same_rank = 0, same_elem = 0;
  for (size_t i = 0; i < 1000; ++i) {
    same_rank += p.input(0, i) == p.input(1, i);
    same_elem += p.input(0, i) == p.input(0, i + 1);
  }
  EXPECT_LT(same_rank, 50);
  EXPECT_LT(same_elem, 50);
}

TEST(DemoValues, IntegersRoundTripThroughEveryDtype) {
  for (DataType t : {DataType::FLOAT32, DataType::FLOAT16, DataType::BFLOAT16, DataType::INT32}) {
    std::vector<uint32_t> buf(600);
    for (int v = -256; v <= 256; ++v) {
      store_element(t, buf.data(), static_cast<size_t>(v + 256), v);
      ASSERT_EQ(load_element(t, buf.data(), static_cast<size_t>(v + 256)), v) << static_cast<int>(t);
    }
  }
}

TEST(DemoValues, HalfAndBfloat16Conversions) {
  EXPECT_EQ(half::float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(half::float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(half::float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(half::float_to_half(1e6f), 0x7c00);          // overflow: inf
  EXPECT_EQ(half::float_to_half(5.960464477539063e-8f), 0x0001);  // smallest subnormal
  EXPECT_EQ(half::float_to_half(2049.0f), 0x6800);       // ties to even: 2048
  EXPECT_EQ(half::float_to_half(2051.0f), 0x6802);       // ties to even: 2052
  EXPECT_EQ(half::half_to_float(0x0001), 5.960464477539063e-8f);
  EXPECT_EQ(half::half_to_float(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(half::half_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(half::half_to_float(0x7e00)));
  EXPECT_EQ(half::float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(half::float_to_bf16(257.0f), 0x4380);    // ties to even: 256
  EXPECT_EQ(half::float_to_bf16(259.0f), 0x4382);    // ties to even: 260
  EXPECT_EQ(half::bf16_to_float(0xc2c8), -100.0f);
  EXPECT_TRUE(std::isnan(half::bf16_to_float(half::float_to_bf16(NAN))));
}

// The sim's own names are judged by the sim's leftover hook now
// (tests/platforms/sim/sim_leftover_test.cpp), so clean no longer reads them.
TEST(Ownership, ReadsThePidOfKnownNames) {
  EXPECT_FALSE(owner_pid_of_shm_name("chipmesh_0000307b_a1b2c3d4_c").has_value());
  EXPECT_EQ(owner_pid_of_shm_name("chipmesh_demo_12345_in3"), 12345);
  EXPECT_EQ(owner_pid_of_shm_name("chipmesh_demo_12345_out63"), 12345);
  EXPECT_EQ(owner_pid_of_shm_name("chipmesh_bench_4242_stage_7"), 4242);
  for (const char* unknown : {"chipmesh", "chipmesh_", "chipmesh_0000307b_a1b2c3d4_", "chipmesh_0000307b_a1b2c3d4",
                              "chipmesh_0000307x_a1b2c3d4_c", "chipmesh_307b_a1b2c3d4_c", "chipmesh_demo_12a_in0",
                              "chipmesh_demo__in0", "chipmesh_demo_123", "chipmesh_00000000_a1b2c3d4_c",
                              "chipmesh_test_123_x", "chipmeshfoo"})
    EXPECT_FALSE(owner_pid_of_shm_name(unknown).has_value()) << unknown;
}

TEST(Ownership, ProcessStates) {
  EXPECT_EQ(process_info(getpid()).state, ProcessState::Alive);
  EXPECT_GT(process_info(getpid()).start_time, 0u);
  pid_t child = fork();
  if (child == 0) _exit(0);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(process_info(child).state, ProcessState::Zombie);
  EXPECT_FALSE(process_alive(child));
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_EQ(process_info(child).state, ProcessState::Gone);
}

}  // namespace

// The built-in allreduce kernel (libchipmesh_kernels.so) on forked sim ranks:
// every mode x dtype x op on 1, 2, 3, 4 and 8 ranks over awkward counts,
// 64 MiB of float32, back-to-back calls, bitwise agreement across ranks on
// random data, 16 and 64 ranks, argument checking and failure paths; plus the
// float16/bfloat16 conversions of kernels/reduce_ops.h against references.
//
// Inputs are closed-form small integers (element i of rank r is
// f(r, i) in [-k, k]) so that sums, maxima and minima over up to 64 ranks are
// exact in every dtype and the expected output is computed exactly.
#include <unistd.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/kernel.h"
#include "chipmesh/types.h"
#include "common/process.h"
#include "reduce_ops.h"
#include "knobs/knobs.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"
#include "kernel_harness.h"

namespace chipmesh {
namespace {

using namespace std::chrono_literals;
using testing::all_ok;
using testing::fork_ranks;
namespace dev = chipmesh::device;

constexpr const char* kModeNames[] = {"onephase", "twophase", "ring"};
constexpr const char* kOpNames[] = {"sum", "max", "min"};
enum { kSum = 0, kMax = 1, kMin = 2 };
constexpr DataType kTypes[] = {DataType::FLOAT32, DataType::FLOAT16, DataType::BFLOAT16, DataType::INT32};

const char* type_name(DataType t) {
  switch (t) {
    case DataType::FLOAT32: return "float32";
    case DataType::FLOAT16: return "float16";
    case DataType::BFLOAT16: return "bfloat16";
    case DataType::INT32: return "int32";
    default: return "other";
  }
}
size_t type_size(DataType t) { return t == DataType::FLOAT16 || t == DataType::BFLOAT16 ? 2 : 4; }

// --- host-side element access (independent of the kernels' conversions) -----

void put(DataType t, void* base, size_t i, double v) {
  switch (t) {
    case DataType::FLOAT32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DataType::FLOAT16: {
      _Float16 h = static_cast<_Float16>(static_cast<float>(v));
      std::memcpy(static_cast<uint16_t*>(base) + i, &h, 2);
      break;
    }
    case DataType::BFLOAT16:  // exact for the values used here (truncation)
      static_cast<uint16_t*>(base)[i] = static_cast<uint16_t>(std::bit_cast<uint32_t>(static_cast<float>(v)) >> 16);
      break;
    default: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); break;
  }
}

double get(DataType t, const void* base, size_t i) {
  switch (t) {
    case DataType::FLOAT32: return static_cast<const float*>(base)[i];
    case DataType::FLOAT16: {
      _Float16 h;
      std::memcpy(&h, static_cast<const uint16_t*>(base) + i, 2);
      return static_cast<float>(h);
    }
    case DataType::BFLOAT16:
      return std::bit_cast<float>(static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16);
    default: return static_cast<const int32_t*>(base)[i];
  }
}

// Element i of rank r: a small integer in [-k, k].
int64_t value(int r, uint64_t i, int k, uint64_t salt) {
  return static_cast<int64_t>((i * 7 + static_cast<uint64_t>(r) * 13 + salt * 5) % (2 * k + 1)) - k;
}

int64_t expected(int n, uint64_t i, int op, int k, uint64_t salt) {
  int64_t acc = value(0, i, k, salt);
  for (int r = 1; r < n; ++r) {
    int64_t v = value(r, i, k, salt);
    acc = op == kSum ? acc + v : op == kMax ? std::max(acc, v) : std::min(acc, v);
  }
  return acc;
}

// --- the kernels library ---------------------------------------------------------

struct Kernels {
  chipmesh_kernel_entry allreduce = testing::builtin_kernel("chipmesh_allreduce");
  chipmesh_kernel_entry noop = testing::builtin_kernel("chipmesh_noop");
};

const Kernels& kernels() {
  static const Kernels k;
  return k;
}

// One sim rank: a communicator and two window buffers, "in" then "out".
struct Rank : testing::SimRank {
  uint64_t in = 0;
  uint64_t out = 0;
  Rank(int rank_, int n_, const std::string& rootinfo, size_t buffer_bytes)
      : SimRank(rank_, n_, rootinfo, buffer_bytes, "in", "out"), in(first), out(second) {}
};

using testing::KernelCall;
using testing::tensor;

std::string describe(int n, int rank, int mode, DataType t, int op, uint64_t count) {
  std::ostringstream os;
  os << n << " ranks, rank " << rank << ", " << kModeNames[mode] << " " << type_name(t) << " " << kOpNames[op]
     << " count " << count;
  return os.str();
}

// Writes this rank's input (at element offset `shift` of the buffers), fills
// the output and `guard` elements past it with a marker, runs the allreduce
// and checks every element and the guard.
void run_and_check(Rank& R, int mode, DataType t, int op, uint64_t count, int k, uint64_t salt,
                   const std::vector<uint64_t>& shape, size_t shift = 0, size_t guard = 16) {
  const size_t es = type_size(t);
  char* in = reinterpret_cast<char*>(R.in) + shift * es;
  char* out = reinterpret_cast<char*>(R.out) + shift * es;
  for (uint64_t i = 0; i < count; ++i) put(t, in, i, static_cast<double>(value(R.rank, i, k, salt)));
  std::memset(out, 0xA5, (count + guard) * es);
  KernelCall call(R.ctx, {tensor(reinterpret_cast<uint64_t>(in), t, shape), tensor(reinterpret_cast<uint64_t>(out), t, shape)},
                  {static_cast<uint64_t>(mode), static_cast<uint64_t>(op)});
  const int rc = call.run(R.w, kernels().allreduce);
  CM_REQUIRE(rc == 0) << describe(R.n, R.rank, mode, t, op, count) << ": rc " << rc << ": " << call.error;
  for (uint64_t i = 0; i < count; ++i) {
    const double got = get(t, out, i);
    const int64_t want = expected(R.n, i, op, k, salt);
    CM_REQUIRE(got == static_cast<double>(want))
        << describe(R.n, R.rank, mode, t, op, count) << ": element " << i << " is " << got << ", expected " << want;
  }
  for (size_t b = count * es; b < (count + guard) * es; ++b)
    CM_REQUIRE(static_cast<unsigned char>(out[b]) == 0xA5)
        << describe(R.n, R.rank, mode, t, op, count) << ": byte " << b << " past the output was written";
}

class Allreduce : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { kernels(); }  // loaded once; ranks inherit it
  testing::ScratchDir scratch;
  std::string path = scratch.file("rootinfo");
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo left behind"; }
};

// --- the matrix: ranks x modes, each over dtypes x ops x counts ---------------

struct MatrixParam {
  int nranks;
  int mode;
};

class AllreduceMatrix : public Allreduce, public ::testing::WithParamInterface<MatrixParam> {};

TEST_P(AllreduceMatrix, EveryDtypeOpAndCount) {
  const int n = GetParam().nranks;
  const int mode = GetParam().mode;
  // 0, 1, fewer than the ranks, odd, 7 x 11 x 13, not divisible by n.
  const std::vector<uint64_t> counts = {0, 1, 2, 7, 1001, static_cast<uint64_t>(37 * n + 1)};
  const size_t buffer = (1001 + 37 * 8 + 64) * 4;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, buffer);
    uint64_t salt = 0;
    for (DataType t : kTypes)
      for (int op = 0; op < 3; ++op)
        for (uint64_t count : counts) {
          std::vector<uint64_t> shape = count == 1001 ? std::vector<uint64_t>{7, 11, 13} : std::vector<uint64_t>{count};
          // Element offsets 0..2 inside the buffers (the same on every rank).
          const size_t shift = salt % 3;
          run_and_check(R, mode, t, op, count, 8, salt, shape, shift);
          ++salt;
        }
  });
  EXPECT_TRUE(all_ok(outcomes));
}

std::vector<MatrixParam> matrix_params() {
  std::vector<MatrixParam> v;
  for (int n : {1, 2, 3, 4, 8})
    for (int mode = 0; mode < 3; ++mode) v.push_back({n, mode});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Kernels, AllreduceMatrix, ::testing::ValuesIn(matrix_params()),
                         [](const ::testing::TestParamInfo<MatrixParam>& info) {
                           return std::to_string(info.param.nranks) + "ranks_" + kModeNames[info.param.mode];
                         });

// --- 64 MiB of float32 on 2 ranks -----------------------------------------------

class AllreduceLarge : public Allreduce, public ::testing::WithParamInterface<int> {};

TEST_P(AllreduceLarge, SixtyFourMiBFloat32OnTwoRanks) {
  const int mode = GetParam();
  constexpr size_t kBytes = 64u << 20;
  constexpr uint64_t kCount = kBytes / 4;
  auto outcomes = fork_ranks(2, [&](int rank) {
    Rank R(rank, 2, path, kBytes);
    float* in = reinterpret_cast<float*>(R.in);
    float* out = reinterpret_cast<float*>(R.out);
    for (uint64_t i = 0; i < kCount; ++i) in[i] = static_cast<float>(value(rank, i, 8, 1));
    double best_ms = 0;
    for (int iter = 0; iter < 2; ++iter) {
      std::memset(out, 0xA5, kBytes);
      KernelCall call(R.ctx, {tensor(R.in, DataType::FLOAT32, {kCount}), tensor(R.out, DataType::FLOAT32, {kCount})},
                      {static_cast<uint64_t>(mode), kSum});
      const auto start = std::chrono::steady_clock::now();
      const int rc = call.run(R.w, kernels().allreduce);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      CM_REQUIRE(rc == 0) << kModeNames[mode] << ": rc " << rc << ": " << call.error;
      best_ms = iter == 0 ? ms : std::min(best_ms, ms);
      for (uint64_t i = 0; i < kCount; ++i) {
        const float want = static_cast<float>(value(0, i, 8, 1) + value(1, i, 8, 1));
        CM_REQUIRE(out[i] == want) << kModeNames[mode] << ": element " << i << " is " << out[i] << ", expected " << want;
      }
    }
    if (rank == 0) {
      char note[160];
      std::snprintf(note, sizeof(note), "%s 64 MiB float32 sum on 2 ranks: %.2f ms, algbw %.2f GB/s",
                    kModeNames[mode], best_ms, kBytes / (best_ms * 1e6));
      testing::rank_note(note);
    }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
  std::printf("[ allreduce ] %s\n", outcomes[0].message.c_str());
}

INSTANTIATE_TEST_SUITE_P(Kernels, AllreduceLarge, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& info) { return std::string(kModeNames[info.param]); });

// --- sequences of calls ---------------------------------------------------------

TEST_F(Allreduce, BackToBackCallsReuseTheCommunicatorAndBuffersAtOnce) {
  // 4 ranks on 2 cores; each call's buffers are rewritten the moment it
  // returns. First 60 ring calls in a row (its sequence numbers keep
  // growing), then 90 calls cycling through the modes.
  constexpr int n = 4;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4099 * 4 + 256);
    for (uint64_t it = 0; it < 150; ++it) {
      const int mode = it < 60 ? 2 : static_cast<int>(it % 3);
      const DataType t = kTypes[it % 4];
      const int op = static_cast<int>((it / 4) % 3);
      run_and_check(R, mode, t, op, 4099, 8, it, {4099});
    }
    // The ring progress flag only grows: 60 + 30 ring calls of 1 + 2(n-1) units.
    const uint32_t progress = dev::flag(R.ctx, rank, 2)->value.load();
    CM_REQUIRE(progress == 90u * (1 + 2 * (n - 1))) << progress;
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, OnephaseUpToOneKiBReadsSlotsSoInputsAreFreeAtOnce) {
  // Up to 1 KiB onephase copies each input into a slot of its scratch and
  // drops the closing barrier (allreduce_onephase.cpp). 3 ranks on 2 cores,
  // 300 calls: in place and out of place by turns, sizes 1 element up to the
  // 1 KiB edge and just past it (the two-barrier path), and each rank
  // rewrites its buffers the moment its call returns, while slower peers may
  // still be folding that call.
  constexpr int n = 3;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    // 4 and 5: the edge of the copy that rides in the call descriptor (16 B).
    const uint64_t counts[] = {1, 7, 255, 256, 257, 64, 4, 5};
    for (uint64_t it = 0; it < 320; ++it) {
      const uint64_t count = counts[it % 8];
      const int op = static_cast<int>(it % 3);
      if (it % 2 == 0) {
        run_and_check(R, 0, DataType::FLOAT32, op, count, 8, it, {count});
        continue;
      }
      auto* buf = reinterpret_cast<float*>(R.out);
      for (uint64_t i = 0; i < count; ++i) buf[i] = static_cast<float>(value(rank, i, 8, it));
      KernelCall call(R.ctx, {tensor(R.out, DataType::FLOAT32, {count}), tensor(R.out, DataType::FLOAT32, {count})},
                      {0, static_cast<uint64_t>(op)});
      const int rc = call.run(R.w, kernels().allreduce);
      CM_REQUIRE(rc == 0) << "in place, call " << it << ": rc " << rc << ": " << call.error;
      for (uint64_t i = 0; i < count; ++i)
        CM_REQUIRE(buf[i] == static_cast<float>(expected(n, i, op, 8, it)))
            << "in place, call " << it << " count " << count << ": element " << i << " is " << buf[i];
      std::memset(buf, 0x5A, count * 4);  // at once: a peer still folding must not see it
    }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, TwophasePushesBlocksInPlaceAndOutOfPlace) {
  // twophase folds its chunk 8 KiB at a time and writes each block into
  // every rank's output: plain stores in place, streamed ones out of place
  // (allreduce_twophase.cpp). 3 ranks (uneven chunks), counts that leave a
  // partial block at the end of every chunk, every dtype's block size, and
  // buffers rewritten the moment a call returns.
  constexpr int n = 3;
  constexpr uint64_t kMaxCount = 3 * 4096 * 3 + 7;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, (kMaxCount + 64) * 4);
    const uint64_t counts[] = {kMaxCount, 3 * 2048 + 1, 2 * 4096 * 3 - 1, 6145};
    for (uint64_t it = 0; it < 32; ++it) {
      const uint64_t count = counts[it % 4];
      const DataType t = kTypes[(it / 2) % 4];
      const int op = static_cast<int>((it / 8) % 3);
      if (it % 2 == 0) {
        run_and_check(R, 1, t, op, count, 8, it, {count});
        continue;
      }
      char* buf = reinterpret_cast<char*>(R.out);
      const size_t es = type_size(t);
      for (uint64_t i = 0; i < count; ++i) put(t, buf, i, static_cast<double>(value(rank, i, 8, it)));
      std::memset(buf + count * es, 0xA5, 64);
      KernelCall call(R.ctx, {tensor(R.out, t, {count}), tensor(R.out, t, {count})}, {1, static_cast<uint64_t>(op)});
      const int rc = call.run(R.w, kernels().allreduce);
      CM_REQUIRE(rc == 0) << "in place, call " << it << ": rc " << rc << ": " << call.error;
      for (uint64_t i = 0; i < count; ++i)
        CM_REQUIRE(get(t, buf, i) == static_cast<double>(expected(n, i, op, 8, it)))
            << "in place, call " << it << " " << describe(n, rank, 1, t, op, count) << ": element " << i << " is "
            << get(t, buf, i);
      for (size_t b = count * es; b < count * es + 64; ++b)
        CM_REQUIRE(static_cast<unsigned char>(buf[b]) == 0xA5) << "in place, call " << it << ": byte " << b << " written";
      std::memset(buf, 0x5A, count * es);  // at once: a peer still pushing must not write after this
    }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, ASlotSizedCallAgainstALargerOneIsADisagreement) {
  // Onephase opens three ways: up to 16 B the input rides in the call
  // descriptor, up to 1 KiB in a slot (both without a barrier: ranks wait
  // for each other's descriptors), above that with a barrier. Ranks that
  // disagree across the paths all see it, pass the same barriers, and the
  // next agreed calls work. Pairs of paths on 2 ranks, then all three paths
  // on 3 ranks.
  const std::vector<std::vector<uint64_t>> cases = {{2, 10}, {2, 1000}, {10, 1000}, {1000, 2}, {2, 10, 1000}};
  for (const auto& counts : cases) {
    const int n = static_cast<int>(counts.size());
    auto outcomes = fork_ranks(n, [&](int rank) {
      Rank R(rank, n, path, 8192);
      const uint64_t count = counts[static_cast<size_t>(rank)];
      KernelCall call(R.ctx, {tensor(R.in, DataType::FLOAT32, {count}), tensor(R.out, DataType::FLOAT32, {count})},
                      {0, kSum}, 10s);
      const int rc = call.run(R.w, kernels().allreduce);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << "rc " << rc << ": " << call.error;
      CM_REQUIRE(std::string(call.error).find("ranks disagree") != std::string::npos) << call.error;
      for (uint64_t c : {uint64_t{2}, uint64_t{10}, uint64_t{1000}}) run_and_check(R, 0, DataType::FLOAT32, kSum, c, 8, c, {c});
    });
    EXPECT_TRUE(all_ok(outcomes)) << counts.size() << " ranks, rank 0 count " << counts[0];
  }
}

TEST_F(Allreduce, APeerAsleepOnACallDescriptorIsWokenOnAgreementAndOnDisagreement) {
  // Small onephase calls publish their descriptor without the wake-up check
  // and wake sleepers once their own waits are over. Rank 1 calls first and
  // falls asleep on rank 0's descriptor: its sleeper count is up and rank 1
  // is in state 'S' (inside the futex wait, past its value check, so only a
  // wake-up gets it out); rank 0 then calls with the same count, then with
  // another one. Rank 1 has no abort word, so only a wake-up (or its 10 s
  // deadline) ends its sleep; rank 0's barriers would time out first (5 s).
  constexpr int n = 2;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    // Rank 1's pid, where rank 0 reads it: past the inputs in rank 1's window.
    constexpr uint64_t kPidAt = 64;
    auto pid_slot = [&](int r) {
      return reinterpret_cast<std::atomic<pid_t>*>(R.ctx->windowsIn[r] + (R.in - R.ctx->windowsIn[rank]) + kPidAt);
    };
    if (rank == 1) pid_slot(1)->store(getpid());
    for (int round = 0; round < 2; ++round) {
      const uint64_t count = round == 1 && rank == 0 ? 3 : 2;
      auto* in = reinterpret_cast<float*>(R.in);
      in[0] = in[1] = in[2] = static_cast<float>(rank + 1);
      KernelCall call(R.ctx, {tensor(R.in, DataType::FLOAT32, {count}), tensor(R.out, DataType::FLOAT32, {count})},
                      {0, kSum}, rank == 0 ? 5s : 10s);
      if (rank == 1) call.args.abort = nullptr;
      if (rank == 0) {
        // Descriptor line of rank 0's next call (allreduce.h: lines 4 and 5
        // by call parity; line 3 counts the calls).
        const uint32_t next = dev::flag(R.ctx, 0, 3)->value.load() + 1;
        const dev::Flag* desc = dev::flag(R.ctx, 0, 4 + next % 2);
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (desc->sleepers.load() == 0 || !chipmesh::process::info(pid_slot(1)->load()).sleeping)
          CM_REQUIRE(std::chrono::steady_clock::now() < until) << "round " << round << ": rank 1 never slept";
      }
      const int rc = call.run(R.w, kernels().allreduce);
      if (round == 0) {
        CM_REQUIRE(rc == 0) << "rc " << rc << ": " << call.error;
        const auto* out = reinterpret_cast<const float*>(R.out);
        CM_REQUIRE(out[0] == 3.0f && out[1] == 3.0f) << out[0] << " " << out[1];
      } else {
        CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << "rc " << rc << ": " << call.error;
        CM_REQUIRE(std::string(call.error).find("ranks disagree") != std::string::npos) << call.error;
      }
    }
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, LargeCountsSpanSeveralRingPieces) {
  // 200003 elements on 3 ranks: chunks of ~66668 elements, more than one
  // 128 KiB piece per chunk for every dtype, and unequal chunks.
  constexpr int n = 3;
  constexpr uint64_t kCount = 200003;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, (kCount + 64) * 4);
    uint64_t salt = 0;
    for (int mode = 0; mode < 3; ++mode)
      for (DataType t : kTypes)
        for (int op : {kSum, kMax}) run_and_check(R, mode, t, op, kCount, 8, salt++, {kCount});
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

// --- random data: outputs bitwise equal on every rank ----------------------------

// Random inputs of rank r (deterministic per rank and type).
std::vector<double> random_input(DataType t, int r, uint64_t count, void* dst) {
  std::mt19937 gen(1234u + 17u * static_cast<unsigned>(r) + static_cast<unsigned>(t));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<double> vals(count);
  for (uint64_t i = 0; i < count; ++i) {
    float f = dist(gen) * (i % 7 == 0 ? 100.0f : 1.0f);
    if (dst) put(t, dst, i, f);
    // The stored value, read back.
    uint32_t tmp = 0;
    put(t, &tmp, 0, f);
    vals[i] = get(t, &tmp, 0);
  }
  return vals;
}

TEST_F(Allreduce, RandomFloatsGiveBitwiseEqualOutputsOnEveryRank) {
  constexpr int n = 5;  // odd, and more ranks than cores
  constexpr uint64_t kCount = 10007;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, kCount * 4);
    const uint64_t off = R.out - R.ctx->windowsIn[rank];
    for (int mode = 0; mode < 3; ++mode)
      for (DataType t : {DataType::FLOAT32, DataType::FLOAT16, DataType::BFLOAT16})
        for (int op = 0; op < 3; ++op) {
          std::vector<std::vector<double>> all(n);
          for (int r = 0; r < n; ++r) all[r] = random_input(t, r, kCount, r == rank ? reinterpret_cast<void*>(R.in) : nullptr);
          KernelCall call(R.ctx, {tensor(R.in, t, {kCount}), tensor(R.out, t, {kCount})},
                          {static_cast<uint64_t>(mode), static_cast<uint64_t>(op)});
          const int rc = call.run(R.w, kernels().allreduce);
          const std::string what = describe(n, rank, mode, t, op, kCount);
          CM_REQUIRE(rc == 0) << what << ": " << call.error;
          const double eps = t == DataType::FLOAT32 ? 0x1p-24 : t == DataType::FLOAT16 ? 0x1p-11 : 0x1p-8;
          for (uint64_t i = 0; i < kCount; ++i) {
            double ref = all[0][i], mag = std::fabs(all[0][i]);
            for (int r = 1; r < n; ++r) {
              ref = op == kSum ? ref + all[r][i] : op == kMax ? std::max(ref, all[r][i]) : std::min(ref, all[r][i]);
              mag += std::fabs(all[r][i]);
            }
            const double got = get(t, reinterpret_cast<const void*>(R.out), i);
            if (op == kSum)
              CM_REQUIRE(std::fabs(got - ref) <= (n + 1) * eps * mag + 1e-30) << what << ": element " << i << " " << got << " vs " << ref;
            else
              CM_REQUIRE(got == ref) << what << ": element " << i << " " << got << " vs " << ref;
          }
          // Every peer holds the same bytes (outputs stay put until the next barrier).
          R.w.comm_barrier(R.w.bootstrap_comm());
          for (int p = 0; p < n; ++p)
            CM_REQUIRE(std::memcmp(reinterpret_cast<const void*>(R.out),
                                   reinterpret_cast<const void*>(R.ctx->windowsIn[p] + off), kCount * type_size(t)) == 0)
                << what << ": output differs from rank " << p << "'s";
          R.w.comm_barrier(R.w.bootstrap_comm());
        }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

// --- many ranks on 2 cores ----------------------------------------------------------

class AllreduceManyRanks : public Allreduce, public ::testing::WithParamInterface<int> {};

TEST_P(AllreduceManyRanks, SmallCountsEveryMode) {
  const int n = GetParam();
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    uint64_t salt = 0;
    const std::pair<DataType, int> combos[] = {
        {DataType::FLOAT32, kSum}, {DataType::FLOAT16, kSum}, {DataType::BFLOAT16, kMax}, {DataType::INT32, kMin}};
    for (int mode = 0; mode < 3; ++mode)
      for (auto [t, op] : combos)
        for (uint64_t count : {uint64_t{1}, uint64_t{100}})
          run_and_check(R, mode, t, op, count, 3, salt++, {count});  // |sum| <= 192: exact in bfloat16
  }, 240s);
  EXPECT_TRUE(all_ok(outcomes));
}

INSTANTIATE_TEST_SUITE_P(Kernels, AllreduceManyRanks, ::testing::Values(16, 64),
                         [](const ::testing::TestParamInfo<int>& info) { return std::to_string(info.param) + "ranks"; });

// --- invalid arguments ------------------------------------------------------------

TEST_F(Allreduce, InvalidArgumentsAreConfigErrorsWithAMessage) {
  auto outcomes = fork_ranks(1, [&](int rank) {
    Rank R(rank, 1, path, 4096);
    const uint64_t in = R.in, out = R.out;
    const auto f32 = DataType::FLOAT32;
    const uint64_t outside = R.w.malloc(256);  // device memory, not in the window
    const uint64_t win_end = R.ctx->windowsIn[0] + R.ctx->winSize;
    struct Case {
      const char* name;
      std::vector<chipmesh_tensor> tensors;
      std::vector<uint64_t> scalars;
      const char* message;
    };
    chipmesh_tensor too_many_dims = tensor(in, f32, {2});
    too_many_dims.ndim = CHIPMESH_KERNEL_MAX_DIMS + 1;
    const Case cases[] = {
        {"one tensor", {tensor(in, f32, {8})}, {0, 0}, "expects 2 tensors (input, output), got 1"},
        {"three tensors", {tensor(in, f32, {8}), tensor(out, f32, {8}), tensor(out + 64, f32, {8})}, {0, 0},
         "got 3"},
        {"no scalars", {tensor(in, f32, {8}), tensor(out, f32, {8})}, {}, "expects 2 scalars (mode, op), got 0"},
        {"three scalars", {tensor(in, f32, {8}), tensor(out, f32, {8})}, {0, 0, 0}, "got 3"},
        {"dtype mismatch", {tensor(in, f32, {8}), tensor(out, DataType::INT32, {8})}, {0, 0},
         "dtype mismatch: input float32"},
        {"unsupported dtype", {tensor(in, DataType::INT16, {8}), tensor(out, DataType::INT16, {8})}, {0, 0},
         "is not supported"},
        {"count mismatch", {tensor(in, f32, {8}), tensor(out, f32, {2, 5})}, {0, 0},
         "element count mismatch: input 8, output 10"},
        {"too many dims", {too_many_dims, tensor(out, f32, {2})}, {0, 0}, "input shape is invalid"},
        {"shape overflow", {tensor(in, f32, {1ull << 40, 1ull << 40}), tensor(out, f32, {1ull << 40, 1ull << 40})},
         {0, 0}, "shape is invalid"},
        {"output outside window", {tensor(in, f32, {8}), tensor(outside, f32, {8})}, {0, 0},
         "output [0x"},
        {"input outside window", {tensor(win_end, f32, {8}), tensor(out, f32, {8})}, {0, 0},
         "input [0x"},
        {"output runs past window", {tensor(in, f32, {8}), tensor(win_end - 16, f32, {8})}, {0, 0},
         "is not inside this rank's window"},
        {"overlap", {tensor(in, f32, {8}), tensor(in + 16, f32, {8})}, {0, 0}, "overlap"},
        {"overlap by one element", {tensor(in, f32, {8}), tensor(in + 4, f32, {8})}, {0, 0}, "overlap"},
        {"misaligned", {tensor(in + 2, f32, {8}), tensor(out, f32, {8})}, {0, 0}, "aligned"},
        {"bad mode", {tensor(in, f32, {8}), tensor(out, f32, {8})}, {3, 0}, "mode 3 is not"},
        {"bad op", {tensor(in, f32, {8}), tensor(out, f32, {8})}, {0, 7}, "op 7 is not"},
    };
    for (const Case& c : cases) {
      KernelCall call(R.ctx, c.tensors, c.scalars);
      const int rc = call.run(R.w, kernels().allreduce);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << c.name << ": rc " << rc << ": " << call.error;
      const std::string msg = call.error;
      CM_REQUIRE(msg.rfind("allreduce: ", 0) == 0) << c.name << ": " << msg;
      CM_REQUIRE(msg.find(c.message) != std::string::npos) << c.name << ": '" << msg << "' lacks '" << c.message << "'";
    }
    {  // no communicator
      KernelCall call(nullptr, {tensor(in, f32, {8}), tensor(out, f32, {8})}, {0, 0});
      CM_REQUIRE(call.run(R.w, kernels().allreduce) == CHIPMESH_ERR_CONFIG);
      CM_REQUIRE(std::string(call.error).find("no communicator") != std::string::npos) << call.error;
    }
    {  // foreign ABI version
      KernelCall call(R.ctx, {tensor(in, f32, {8}), tensor(out, f32, {8})}, {0, 0});
      call.args.abi_version = 99;
      CM_REQUIRE(call.run(R.w, kernels().allreduce) == CHIPMESH_ERR_CONFIG);
      CM_REQUIRE(std::string(call.error).find("ABI version 99") != std::string::npos) << call.error;
    }
    // No argument block at all.
    CM_REQUIRE(R.w.launch(reinterpret_cast<chipmesh_kernel_fn>(kernels().allreduce), nullptr) == CHIPMESH_ERR_CONFIG);
    // The rank still works afterwards.
    run_and_check(R, 0, f32, kSum, 8, 8, 0, {8});
    R.w.free(outside);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, NoScratchForFlagsIsAConfigError) {
  auto outcomes = fork_ranks(1, [&](int rank) {
    setenv("CHIPMESH_SIM_WORKSPACE_BYTES", "0", 1);  // this child only
    knobs::reload();                                    // the registry had read it before the fork
    Rank R(rank, 1, path, 4096);
    CM_REQUIRE(R.ctx->workSpaceSize == 0);
    KernelCall call(R.ctx, {tensor(R.in, DataType::FLOAT32, {8}), tensor(R.out, DataType::FLOAT32, {8})}, {0, 0});
    CM_REQUIRE(call.run(R.w, kernels().allreduce) == CHIPMESH_ERR_CONFIG);
    CM_REQUIRE(std::string(call.error).find("workSpace of 0 bytes is too small") != std::string::npos) << call.error;
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, RanksThatDisagreeOnTheCallFailWithConfigError) {
  constexpr int n = 2;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    for (int mode = 0; mode < 3; ++mode) {
      const uint64_t count = rank == 0 ? 10 : 12;
      KernelCall call(R.ctx, {tensor(R.in, DataType::FLOAT32, {count}), tensor(R.out, DataType::FLOAT32, {count})},
                      {static_cast<uint64_t>(mode), kSum}, 10s);
      const int rc = call.run(R.w, kernels().allreduce);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << kModeNames[mode] << ": rc " << rc << ": " << call.error;
      CM_REQUIRE(std::string(call.error).find("ranks disagree") != std::string::npos) << call.error;
      CM_REQUIRE(std::string(call.error).find("count=10") != std::string::npos) << call.error;
      CM_REQUIRE(std::string(call.error).find("count=12") != std::string::npos) << call.error;
      // Every rank saw the disagreement and returned at the same point: the
      // communicator is still in step and the next agreed call works.
      run_and_check(R, mode, DataType::FLOAT32, kSum, 10, 8, 3, {10});
    }
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, EveryRankSeesADisagreementInTheBarrierModes) {
  // One rank of three asks for another op: in onephase and twophase every
  // rank checks every descriptor, so all three fail the same way and the
  // next agreed call works.
  constexpr int n = 3;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    for (int mode = 0; mode < 2; ++mode) {
      const uint64_t op = rank == 2 ? kMax : kSum;
      KernelCall call(R.ctx, {tensor(R.in, DataType::INT32, {33}), tensor(R.out, DataType::INT32, {33})},
                      {static_cast<uint64_t>(mode), op}, 10s);
      const int rc = call.run(R.w, kernels().allreduce);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << kModeNames[mode] << ": rc " << rc << ": " << call.error;
      CM_REQUIRE(std::string(call.error).find("ranks disagree") != std::string::npos) << call.error;
      run_and_check(R, mode, DataType::INT32, kMin, 33, 8, 4, {33});
    }
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, APeerThatNeverCallsMakesTheWaitTimeOut) {
  constexpr int n = 2;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    if (rank == 1) return;  // never joins the allreduce
    for (int mode = 0; mode < 3; ++mode) {
      KernelCall call(R.ctx, {tensor(R.in, DataType::FLOAT32, {64}), tensor(R.out, DataType::FLOAT32, {64})},
                      {static_cast<uint64_t>(mode), kSum}, 300ms);
      const auto start = std::chrono::steady_clock::now();
      const int rc = call.run(R.w, kernels().allreduce);
      const auto took = std::chrono::steady_clock::now() - start;
      CM_REQUIRE(rc == CHIPMESH_ERR_TIMEOUT) << kModeNames[mode] << ": rc " << rc << ": " << call.error;
      CM_REQUIRE(took >= 290ms) << kModeNames[mode] << ": timed out before the deadline";
      CM_REQUIRE(std::string(call.error).find("timed out") != std::string::npos) << call.error;
    }
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, AbortStopsAWaitingRankWithCommError) {
  constexpr int n = 2;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    if (rank == 1) return;
    for (int mode = 0; mode < 3; ++mode) {
      KernelCall call(R.ctx, {tensor(R.in, DataType::INT32, {64}), tensor(R.out, DataType::INT32, {64})},
                      {static_cast<uint64_t>(mode), kMax}, 60s);
      // Abort once the kernel sleeps waiting for the absent peer. A CommError
      // (not the TimeoutError of the 60 s deadline) proves the abort stopped it.
      const pid_t runner = static_cast<pid_t>(gettid());
      bool asleep = false;
      std::thread aborter([&] {
        asleep = testing::wait_asleep_in_futex(runner, 30s);
        std::atomic_ref<uint32_t>(call.abort_word).store(1);
      });
      const int rc = call.run(R.w, kernels().allreduce);
      aborter.join();
      CM_REQUIRE(asleep) << kModeNames[mode] << ": the kernel never slept waiting for its peer";
      CM_REQUIRE(rc == CHIPMESH_ERR_COMM) << kModeNames[mode] << ": rc " << rc << ": " << call.error;
    }
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Allreduce, NoopKernelRunsThroughTheSimPlatform) {
  auto outcomes = fork_ranks(1, [&](int) {
    ChipWorker w;
    w.init("sim");
    w.set_device(0);
    KernelCall call(nullptr, {}, {});
    CM_REQUIRE(call.run(w, kernels().noop) == 0);
    CM_REQUIRE(w.launch(reinterpret_cast<chipmesh_kernel_fn>(kernels().noop), nullptr) == 0);
    w.finalize();
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// --- reduce_ops.h: conversions and partition ----------------------------------------

TEST(ReduceOps, HalfToFloatIsExactForEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = kernels::half_to_float(static_cast<uint16_t>(h));
    const float ref = static_cast<float>(std::bit_cast<_Float16>(static_cast<uint16_t>(h)));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(ref)) << std::hex << h;
    }
  }
}

TEST(ReduceOps, FloatToHalfRoundsToNearestEven) {
  auto check = [](float f) {
    const uint16_t got = kernels::float_to_half(f);
    const uint16_t ref = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    if (std::isnan(f)) {
      ASSERT_TRUE((got & 0x7C00) == 0x7C00 && (got & 0x03FF) != 0) << "NaN stays NaN: " << std::hex << got;
      ASSERT_TRUE(got & 0x0200) << "quiet NaN";
    } else {
      ASSERT_EQ(got, ref) << std::hexfloat << f;
    }
  };
  // Every half, and the midpoints between neighbours (ties), and just around them.
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    for (float sign : {1.0f, -1.0f}) {
      const float a = sign * kernels::half_to_float(static_cast<uint16_t>(h));
      const float b = sign * kernels::half_to_float(static_cast<uint16_t>(h + 1));
      const float mid = static_cast<float>((static_cast<double>(a) + b) / 2);
      check(a);
      check(mid);
      check(std::nextafter(mid, 0.0f));
      check(std::nextafter(mid, sign * INFINITY));
    }
  }
  for (float f : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.99f, 65520.0f, 1e10f, -1e10f,
                  0x1p-24f, 0x1p-25f, 0x1.8p-25f, 0x1p-26f, 1e-30f})
    check(f);
  std::mt19937 gen(7);
  for (int i = 0; i < 1000000; ++i) check(std::bit_cast<float>(static_cast<uint32_t>(gen())));
}

// Reference bfloat16 rounding in double arithmetic: the nearer of the two
// bfloat16 neighbours of f, the even one on a tie.
uint16_t reference_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);  // truncation: towards zero
  const uint16_t hi = static_cast<uint16_t>(lo + 1);   // next magnitude up (may be inf)
  const double x = std::fabs(static_cast<double>(f));
  const double dlo = std::fabs(static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(lo) << 16)));
  const double dhi = std::fabs(static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(hi) << 16)));
  // The magnitude above the largest finite value, rounding to infinity: 2^128 (not a float).
  const double above = (hi & 0x7FFF) == 0x7F80 ? std::ldexp(1.0, 128) : dhi;
  if (x - dlo < above - x) return lo;
  if (x - dlo > above - x) return hi;
  return (lo & 1) ? hi : lo;
}

TEST(ReduceOps, Bfloat16ConversionsRoundToNearestEven) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = kernels::bf16_to_float(static_cast<uint16_t>(b));
    ASSERT_EQ(std::bit_cast<uint32_t>(f), b << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(kernels::float_to_bf16(f), b) << "round trip " << std::hex << b;
    } else {
      const uint16_t q = kernels::float_to_bf16(f);
      ASSERT_TRUE((q & 0x7F80) == 0x7F80 && (q & 0x007F) != 0 && (q & 0x0040)) << std::hex << b << " -> " << q;
    }
  }
  std::mt19937 gen(11);
  for (int i = 0; i < 1000000; ++i) {
    uint32_t u = static_cast<uint32_t>(gen());
    if (i % 4 == 0) u = (u & 0xFFFF0000u) | 0x8000u;  // exact ties
    const float f = std::bit_cast<float>(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(kernels::float_to_bf16(f), reference_bf16(f)) << std::hex << u;
  }
  EXPECT_EQ(kernels::float_to_bf16(std::bit_cast<float>(0x7F7FFFFFu)), 0x7F80) << "max float rounds to inf";
  EXPECT_EQ(kernels::float_to_bf16(-0.0f), 0x8000);
}

TEST(ReduceOps, ChunksPartitionAnyCount) {
  for (size_t parts : {1, 2, 3, 7, 64})
    for (size_t count : {0, 1, 2, 5, 63, 64, 65, 1001}) {
      size_t next = 0, lo = SIZE_MAX, hi = 0;
      for (size_t i = 0; i < parts; ++i) {
        const kernels::Range r = kernels::chunk_of(count, parts, i);
        ASSERT_EQ(r.begin, next) << count << " in " << parts;
        next += r.size;
        lo = std::min(lo, r.size);
        hi = std::max(hi, r.size);
      }
      EXPECT_EQ(next, count);
      EXPECT_LE(hi - lo, 1u);
    }
}

}  // namespace
}  // namespace chipmesh

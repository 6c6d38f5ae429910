// The built-in collectives of libchipmesh_kernels.so (allgather,
// reduce_scatter, broadcast, reduce, alltoall, barrier, and allreduce's new
// dtypes, prod and in-place calls) on forked sim ranks, checked against a
// host reference: every collective x dtype x op x placement (out of place,
// in == out, the NCCL in-place form) x 1, 2, 3, 4, 8 ranks x counts 0, 1, 7
// x roots; a count of 1000003; buffers at different window offsets on every
// rank; random floats against the documented reduction order bit for bit;
// 16 and 64 ranks; long mixed sequences; argument checking and
// disagreements.
//
// Inputs are closed-form small integers (exact in every dtype, and so are
// their sums, maxima, minima and, with values in {-2, -1, 1, 2}, products
// over up to 8 ranks); the integer reference wraps like the kernels do.

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/half.h"
#include "chipmesh/kernel.h"
#include "chipmesh/types.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"
#include "kernel_harness.h"

namespace chipmesh {
namespace {

using namespace std::chrono_literals;
using testing::all_ok;
using testing::fork_ranks;
namespace dev = chipmesh::device;

enum Coll { kAllgather, kReduceScatter, kBroadcast, kReduce, kAlltoall, kAllreduce, kNumColls };
constexpr const char* kCollNames[] = {"allgather", "reduce_scatter", "broadcast", "reduce", "alltoall", "allreduce"};
constexpr const char* kSymbols[] = {"chipmesh_allgather", "chipmesh_reduce_scatter", "chipmesh_broadcast",
                                    "chipmesh_reduce",    "chipmesh_alltoall",       "chipmesh_allreduce"};
enum Op { kSum = 0, kMax = 1, kMin = 2, kProd = 3 };
constexpr const char* kOpNames[] = {"sum", "max", "min", "prod"};
enum Place { kOutOfPlace, kInPlace, kNcclInPlace };
constexpr const char* kPlaceNames[] = {"out-of-place", "in==out", "nccl-in-place"};

constexpr DataType kTypes[] = {DataType::FLOAT32, DataType::FLOAT16, DataType::BFLOAT16, DataType::FLOAT64,
                               DataType::INT8,    DataType::UINT8,   DataType::INT32,    DataType::INT64};

bool reduces(Coll c) { return c == kReduceScatter || c == kReduce || c == kAllreduce; }
bool has_root(Coll c) { return c == kBroadcast || c == kReduce; }
bool in_times_n(Coll c) { return c == kReduceScatter || c == kAlltoall; }
bool out_times_n(Coll c) { return c == kAllgather || c == kAlltoall; }

// --- host-side encoding (independent of the kernels) --------------------------

void put(DataType t, void* base, size_t i, int64_t v) {
  char* p = static_cast<char*>(base) + i * dtype_size(t);
  switch (t) {
    case DataType::FLOAT32: {
      float f = static_cast<float>(v);
      std::memcpy(p, &f, 4);
      break;
    }
    case DataType::FLOAT64: {
      double d = static_cast<double>(v);
      std::memcpy(p, &d, 8);
      break;
    }
    case DataType::FLOAT16: {
      _Float16 h = static_cast<_Float16>(static_cast<float>(v));
      std::memcpy(p, &h, 2);
      break;
    }
    case DataType::BFLOAT16: {  // exact for the values used here (|v| <= 256, integers)
      uint16_t b = static_cast<uint16_t>(std::bit_cast<uint32_t>(static_cast<float>(v)) >> 16);
      std::memcpy(p, &b, 2);
      break;
    }
    default: {  // integers: the low bytes of the two's complement
      const uint64_t u = static_cast<uint64_t>(v);
      std::memcpy(p, &u, dtype_size(t));  // little endian
    }
  }
}

// The stored value as an integer (floats hold integers here).
int64_t get(DataType t, const void* base, size_t i) {
  const char* p = static_cast<const char*>(base) + i * dtype_size(t);
  switch (t) {
    case DataType::FLOAT32: {
      float f;
      std::memcpy(&f, p, 4);
      return static_cast<int64_t>(f);
    }
    case DataType::FLOAT64: {
      double d;
      std::memcpy(&d, p, 8);
      return static_cast<int64_t>(d);
    }
    case DataType::FLOAT16: {
      _Float16 h;
      std::memcpy(&h, p, 2);
      return static_cast<int64_t>(static_cast<float>(h));
    }
    case DataType::BFLOAT16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return static_cast<int64_t>(std::bit_cast<float>(static_cast<uint32_t>(b) << 16));
    }
    case DataType::INT8: return *reinterpret_cast<const int8_t*>(p);
    case DataType::UINT8: return *reinterpret_cast<const uint8_t*>(p);
    case DataType::INT32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    default: {
      int64_t x;
      std::memcpy(&x, p, 8);
      return x;
    }
  }
}

// Element i of rank r's input.
int64_t value(int r, uint64_t i, int op, uint64_t salt) {
  const uint64_t h = i * 7 + static_cast<uint64_t>(r) * 13 + salt * 5;
  if (op == kProd) {
    constexpr int64_t kVals[] = {-2, -1, 1, 2};
    return kVals[h % 4];
  }
  return static_cast<int64_t>(h % 17) - 8;
}

// The value as the dtype stores it (uint8 wraps -1 to 255).
int64_t stored(DataType t, int64_t v) {
  unsigned char buf[8];
  put(t, buf, 0, v);
  return get(t, buf, 0);
}

// Left fold over ranks 0..n-1 of element i (of the rank inputs), in the
// dtype's arithmetic: integers wrap (two's complement), floats are exact.
int64_t fold(DataType t, int n, uint64_t i, int op, uint64_t salt) {
  int64_t acc = stored(t, value(0, i, op, salt));
  for (int r = 1; r < n; ++r) {
    const int64_t v = stored(t, value(r, i, op, salt));
    switch (op) {
      case kSum: acc = static_cast<int64_t>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(v)); break;
      case kProd: acc = static_cast<int64_t>(static_cast<uint64_t>(acc) * static_cast<uint64_t>(v)); break;
      case kMax: acc = std::max(acc, v); break;
      default: acc = std::min(acc, v); break;
    }
    acc = stored(t, acc);  // wrap to the dtype after every step
  }
  return acc;
}

// --- the kernels library ---------------------------------------------------------

struct Kernels {
  chipmesh_kernel_entry entry[kNumColls] = {};
  chipmesh_kernel_entry barrier = testing::builtin_kernel("chipmesh_barrier");
  chipmesh_kernel_entry staged = testing::builtin_kernel("chipmesh_staged");
  Kernels() {
    for (int c = 0; c < kNumColls; ++c) entry[c] = testing::builtin_kernel(kSymbols[c]);
  }
};

const Kernels& kernels() {
  static const Kernels k;
  return k;
}

// One sim rank: a communicator and two window regions "a" and "b".
struct Rank : testing::SimRank {
  uint64_t a = 0;
  uint64_t b = 0;
  size_t region = 0;
  Rank(int rank_, int n_, const std::string& rootinfo, size_t region_bytes)
      : SimRank(rank_, n_, rootinfo, region_bytes, "a", "b"), a(first), b(second), region(region_bytes) {}
};

using testing::KernelCall;

chipmesh_tensor tensor(uint64_t addr, DataType t, uint64_t count) { return testing::tensor(addr, t, {count}); }

struct Case {
  Coll coll;
  DataType t;
  int op = kSum;
  Place place = kOutOfPlace;
  uint64_t count = 0;
  int root = 0;
  uint64_t salt = 0;
  int mode = 0;      // allreduce only
  bool mix = false;  // each rank picks its own placement (rank-dependent)
};

std::vector<Place> places(Coll c) {
  if (c == kAllgather || c == kReduceScatter) return {kOutOfPlace, kInPlace, kNcclInPlace};
  return {kOutOfPlace, kInPlace};
}

std::string describe(const Rank& R, const Case& c) {
  std::ostringstream os;
  os << R.n << " ranks, rank " << R.rank << ": " << kCollNames[c.coll] << " " << dtype_name(c.t);
  if (reduces(c.coll)) os << " " << kOpNames[c.op];
  os << " " << kPlaceNames[c.place] << " count " << c.count;
  if (has_root(c.coll)) os << " root " << c.root;
  if (c.coll == kAllreduce) os << " mode " << c.mode;
  return os.str();
}

constexpr size_t kGuard = 16;  // elements past the buffers that must stay untouched
constexpr unsigned char kMarker = 0xA5;

// Bytes a region must hold for `count` on n ranks (three elements of shift,
// the guard).
size_t region_bytes(int n, uint64_t max_count) { return (n * max_count + 3 + kGuard) * 8; }

// Runs one collective call on this rank and checks its output and the guard.
void run_and_check(Rank& R, const Case& c_in) {
  const int n = R.n, r = R.rank;
  Case c = c_in;
  if (c.mix && c.coll != kAllreduce) {
    const auto ps = places(c.coll);
    c.place = ps[(static_cast<size_t>(c.place) + static_cast<size_t>(r)) % ps.size()];
  }
  const size_t es = dtype_size(c.t);
  const uint64_t cnt = c.count;
  const uint64_t in_elems = in_times_n(c.coll) ? n * cnt : cnt;
  const uint64_t out_elems = out_times_n(c.coll) ? n * cnt : cnt;
  // Different window offsets on every rank (allreduce needs equal ones).
  const uint64_t shift = c.coll == kAllreduce ? c.salt % 3 : (c.salt + static_cast<uint64_t>(r)) % 3;
  uint64_t in = R.a + shift * es, out = R.b + shift * es;
  if (c.place == kInPlace) in = out;
  if (c.place == kNcclInPlace) {
    if (c.coll == kAllgather) in = out + r * cnt * es;
    else out = in = R.b + shift * es, out = in + r * cnt * es;  // reduce_scatter
  }
  const bool out_written = !(c.coll == kReduce && r != c.root);
  // The region the call may write: out; check the guard after everything in b.
  const uint64_t b_end = std::max(out + out_elems * es, in >= R.b && in < R.b + R.region ? in + in_elems * es : 0);
  std::memset(reinterpret_cast<void*>(R.b), kMarker, b_end - R.b + kGuard * es);
  for (uint64_t i = 0; i < in_elems; ++i) put(c.t, reinterpret_cast<void*>(in), i, value(r, i, c.op, c.salt));

  std::vector<chipmesh_tensor> tensors = {tensor(in, c.t, in_elems), tensor(out, c.t, out_elems)};
  std::vector<uint64_t> scalars;
  if (c.coll == kAllreduce) scalars = {static_cast<uint64_t>(c.mode), static_cast<uint64_t>(c.op)};
  else if (c.coll == kReduceScatter) scalars = {static_cast<uint64_t>(c.op)};
  else if (c.coll == kBroadcast) scalars = {static_cast<uint64_t>(c.root)};
  else if (c.coll == kReduce) scalars = {static_cast<uint64_t>(c.op), static_cast<uint64_t>(c.root)};
  KernelCall call(R.ctx, tensors, scalars);
  const int rc = call.run(R.w, kernels().entry[c.coll]);
  CM_REQUIRE(rc == 0) << describe(R, c) << ": rc " << rc << ": " << call.error;

  // The expected output.
  std::vector<unsigned char> want(out_elems * es, kMarker);
  for (uint64_t i = 0; i < out_elems; ++i) {
    int64_t v = 0;
    switch (c.coll) {
      case kAllgather: v = value(static_cast<int>(i / cnt), i % cnt, c.op, c.salt); break;
      case kReduceScatter: v = fold(c.t, n, r * cnt + i, c.op, c.salt); break;
      case kBroadcast: v = value(c.root, i, c.op, c.salt); break;
      case kReduce: v = fold(c.t, n, i, c.op, c.salt); break;
      case kAlltoall: v = value(static_cast<int>(i / cnt), r * cnt + i % cnt, c.op, c.salt); break;
      default: v = fold(c.t, n, i, c.op, c.salt); break;
    }
    if (out_written) put(c.t, want.data(), i, v);
    else if (c.place == kInPlace) put(c.t, want.data(), i, value(r, i, c.op, c.salt));  // its own input, unchanged
  }
  const unsigned char* got = reinterpret_cast<const unsigned char*>(out);
  if (!want.empty() && std::memcmp(got, want.data(), want.size()) != 0) {
    for (uint64_t i = 0; i < out_elems; ++i)
      CM_REQUIRE(std::memcmp(got + i * es, want.data() + i * es, es) == 0)
          << describe(R, c) << ": element " << i << " is " << get(c.t, got, i) << ", expected "
          << get(c.t, want.data(), i);
  }
  const unsigned char* guard = reinterpret_cast<const unsigned char*>(b_end);
  for (size_t k = 0; k < kGuard * es; ++k)
    CM_REQUIRE(guard[k] == kMarker) << describe(R, c) << ": byte " << k << " past the buffers was written";
}

class Collectives : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { kernels(); }  // loaded once; ranks inherit it
  testing::ScratchDir scratch;
  std::string path = scratch.file("rootinfo");
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo left behind"; }
};

// --- the matrix: collective x ranks, each over dtypes x ops x placements x counts x roots

struct MatrixParam {
  Coll coll;
  int nranks;
};

class CollectivesMatrix : public Collectives, public ::testing::WithParamInterface<MatrixParam> {};

std::vector<int> roots(Coll c, int n) {
  if (!has_root(c)) return {0};
  if (n <= 4) {
    std::vector<int> v;
    for (int r = 0; r < n; ++r) v.push_back(r);
    return v;
  }
  return {0, n / 2 + 1, n - 1};
}

TEST_P(CollectivesMatrix, EveryDtypeOpPlacementCountAndRoot) {
  const Coll coll = GetParam().coll;
  const int n = GetParam().nranks;
  const std::vector<uint64_t> counts = {0, 1, 7};
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, region_bytes(n, 7));
    uint64_t salt = 0;
    const std::vector<int> ops = reduces(coll) ? std::vector<int>{kSum, kProd, kMax, kMin} : std::vector<int>{kSum};
    for (DataType t : kTypes)
      for (int op : ops)
        for (Place place : places(coll))
          for (uint64_t count : counts)
            for (int root : roots(coll, n)) {
              Case c{coll, t, op, place, count, root, salt++};
              if (coll == kAllreduce) c.mode = static_cast<int>(salt % 3);
              run_and_check(R, c);
            }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

std::vector<MatrixParam> matrix_params() {
  std::vector<MatrixParam> v;
  for (int c = 0; c < kNumColls; ++c)
    for (int n : {1, 2, 3, 4, 8}) v.push_back({static_cast<Coll>(c), n});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Kernels, CollectivesMatrix, ::testing::ValuesIn(matrix_params()),
                         [](const ::testing::TestParamInfo<MatrixParam>& info) {
                           return std::string(kCollNames[info.param.coll]) + "_" +
                                  std::to_string(info.param.nranks) + "ranks";
                         });

// Every allreduce mode in place, with the new dtypes and prod (the matrix
// picks modes by salt; this covers each mode x placement explicitly).
TEST_F(Collectives, AllreduceEveryModeInPlaceAndOutOfPlace) {
  constexpr int n = 3;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, region_bytes(n, 1001));
    uint64_t salt = 0;
    for (int mode = 0; mode < 3; ++mode)
      for (Place place : {kOutOfPlace, kInPlace})
        for (DataType t : kTypes)
          for (int op : {kSum, kProd, kMax, kMin}) {
            Case c{kAllreduce, t, op, place, 1001, 0, salt++};
            c.mode = mode;
            run_and_check(R, c);
          }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

// Ranks that do not agree on the placement: some in place, some not (the
// in-place passes of allgather, reduce_scatter and alltoall must not read
// what an out-of-place peer has not pulled yet, and vice versa).
TEST_F(Collectives, RanksMayMixInPlaceAndOutOfPlace) {
  for (int n : {3, 4}) {
    auto outcomes = fork_ranks(n, [&](int rank) {
      Rank R(rank, n, path, region_bytes(n, 1001));
      uint64_t salt = 0;
      for (int coll = 0; coll < kAllreduce; ++coll)
        for (DataType t : {DataType::FLOAT32, DataType::INT8})
          for (uint64_t count : {uint64_t{1}, uint64_t{7}, uint64_t{1001}})
            for (int first = 0; first < 3; ++first) {
              Case c{static_cast<Coll>(coll), t, kSum, static_cast<Place>(first % places(static_cast<Coll>(coll)).size()),
                     count, static_cast<int>(salt % n), salt};
              c.mix = true;
              ++salt;
              run_and_check(R, c);
            }
    }, 120s);
    EXPECT_TRUE(all_ok(outcomes)) << n << " ranks";
  }
}

// --- a large count ------------------------------------------------------------------

TEST_F(Collectives, MillionElementsEveryCollectiveAndRoot) {
  constexpr int n = 3;
  constexpr uint64_t kCount = 1000003;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, region_bytes(n, kCount));
    uint64_t salt = 0;
    for (int coll = 0; coll < kNumColls; ++coll)
      for (Place place : {kOutOfPlace, kInPlace})
        for (int root : roots(static_cast<Coll>(coll), n)) {
          Case c{static_cast<Coll>(coll), DataType::FLOAT32, kSum, place, kCount, root, salt++};
          c.mode = 2;  // ring
          run_and_check(R, c);
        }
    // An integer type and prod.
    run_and_check(R, Case{kReduceScatter, DataType::INT8, kProd, kOutOfPlace, kCount, 0, salt++});
    run_and_check(R, Case{kReduce, DataType::BFLOAT16, kMax, kInPlace, kCount, 1, salt++});
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

// Calls whose data outgrows the last-level cache write their results with
// streaming stores (kernels/stream_copy.h). The cut is at most 64 MiB read
// and written per rank, so these counts take that path on any machine: every
// collective's streamed copy or fold, window offsets that differ per rank
// (destinations off a cache line), in and out of place, checked in full.
TEST_F(Collectives, CallsLargerThanTheCacheStreamTheirStoresAndStayExact) {
  constexpr int n = 2;
  constexpr uint64_t kMiB = 1 << 20;
  // int64 (8 bytes). Bytes read and written per rank, each >= 64 MiB:
  constexpr uint64_t kGatherCount = 2 * kMiB + 5;      // allgather, alltoall: 2 * n * count * 8
  constexpr uint64_t kBroadcastCount = 4 * kMiB + 5;   // 2 * count * 8
  constexpr uint64_t kReduceCount = 5600000;           // (n + 1) * (count / n) * 8, slices of whole lines
  constexpr uint64_t kFoldCount = 2800003;             // reduce_scatter, allreduce: 3 * count * 8
  constexpr uint64_t kMaxElems = 2 * kFoldCount;       // reduce_scatter's input
  static_assert(2 * n * kGatherCount * 8 >= 64 * kMiB && 2 * kBroadcastCount * 8 >= 64 * kMiB);
  static_assert((n + 1) * (kReduceCount / n) * 8 >= 64 * kMiB && 3 * kFoldCount * 8 >= 64 * kMiB && kReduceCount <= kMaxElems);
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, (kMaxElems + 3 + kGuard) * 8);
    uint64_t salt = 0;
    const DataType t = DataType::INT64;
    for (Place place : {kOutOfPlace, kInPlace}) {
      run_and_check(R, Case{kAllgather, t, kSum, place, kGatherCount, 0, salt++});
      run_and_check(R, Case{kReduceScatter, t, kSum, place, kFoldCount, 0, salt++});
      run_and_check(R, Case{kBroadcast, t, kSum, place, kBroadcastCount, 1, salt++});
      run_and_check(R, Case{kReduce, t, kMax, place, kReduceCount, 1, salt++});
      for (int mode : {0, 1}) {  // onephase, twophase (the ring keeps plain stores)
        Case c{kAllreduce, t, kSum, place, kFoldCount, 0, salt++};
        c.mode = mode;
        run_and_check(R, c);
      }
    }
    run_and_check(R, Case{kAlltoall, t, kSum, kOutOfPlace, kGatherCount, 0, salt++});
    run_and_check(R, Case{kAllgather, t, kSum, kNcclInPlace, kGatherCount, 0, salt++});
  }, 300s);
  EXPECT_TRUE(all_ok(outcomes));
}

// Reduce from 64 KiB on is split: every rank folds a cache-line-aligned
// slice into the root's output. Counts around that size, element sizes 1,
// 2 and 8 (slices of 64, 32 and 8 elements per line), 5 ranks (the lines do
// not divide evenly), every root, in and out of place: the guards past the
// output stay untouched and every element is the rank-order fold.
TEST_F(Collectives, ReduceSplitAcrossRanksAtTheSliceBoundaries) {
  constexpr int n = 5;
  constexpr uint64_t kSplitBytes = 64 * 1024;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, region_bytes(n, kSplitBytes + 61));
    uint64_t salt = 0;
    for (DataType t : {DataType::INT8, DataType::FLOAT16, DataType::INT64}) {
      const uint64_t at = kSplitBytes / dtype_size(t);
      for (uint64_t count : {at - 1, at, at + 1, at + 61})
        for (Place place : {kOutOfPlace, kInPlace})
          for (int root : {0, 2, 4})
            run_and_check(R, Case{kReduce, t, t == DataType::FLOAT16 ? kMax : kSum, place, count, root, salt++});
    }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

// --- random floats: the documented reduction order, bit for bit -------------------

TEST_F(Collectives, RandomFloatsFoldInRankOrder) {
  constexpr int n = 5;
  constexpr uint64_t kCount = 4099;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, region_bytes(n, kCount));
    auto input = [](int r, uint64_t i) {
      std::mt19937 gen(static_cast<unsigned>(1000 * r + i));
      return std::uniform_real_distribution<float>(-1.0f, 1.0f)(gen) * (i % 5 == 0 ? 1000.0f : 1.0f);
    };
    for (DataType t : {DataType::FLOAT32, DataType::BFLOAT16, DataType::FLOAT16})
      for (int op : {kSum, kProd})
        for (int coll : {kReduceScatter, kReduce, kAllreduce}) {
          const uint64_t in_elems = coll == kReduceScatter ? n * kCount : kCount;
          auto stored_in = [&](int r, uint64_t i) {  // the input as the dtype stores it, as float
            const float f = input(r, i);
            if (t == DataType::FLOAT32) return f;
            if (t == DataType::BFLOAT16) return half::bf16_to_float(half::float_to_bf16(f));
            return half::half_to_float(half::float_to_half(f));
          };
          const size_t es = dtype_size(t);
          char* in = reinterpret_cast<char*>(R.a);
          char* out = reinterpret_cast<char*>(R.b);
          for (uint64_t i = 0; i < in_elems; ++i) {
            const float f = input(rank, i);
            if (t == DataType::FLOAT32) std::memcpy(in + i * 4, &f, 4);
            else {
              const uint16_t h = t == DataType::BFLOAT16 ? half::float_to_bf16(f) : half::float_to_half(f);
              std::memcpy(in + i * 2, &h, 2);
            }
          }
          std::vector<uint64_t> scalars = {static_cast<uint64_t>(op)};
          if (coll == kReduce) scalars.push_back(0);
          if (coll == kAllreduce) scalars.insert(scalars.begin(), 0);  // onephase: fold 0..n-1
          KernelCall call(R.ctx, {tensor(R.a, t, in_elems), tensor(R.b, t, kCount)}, scalars);
          const int rc = call.run(R.w, kernels().entry[coll]);
          CM_REQUIRE(rc == 0) << kCollNames[coll] << ": " << call.error;
          if (coll == kReduce && rank != 0) continue;
          for (uint64_t i = 0; i < kCount; ++i) {
            const uint64_t src = coll == kReduceScatter ? rank * kCount + i : i;
            float acc = stored_in(0, src);
            for (int r = 1; r < n; ++r) acc = op == kSum ? acc + stored_in(r, src) : acc * stored_in(r, src);
            uint32_t want = 0, got = 0;
            if (t == DataType::FLOAT32) want = std::bit_cast<uint32_t>(acc);
            else want = t == DataType::BFLOAT16 ? half::float_to_bf16(acc) : half::float_to_half(acc);
            std::memcpy(&got, out + i * es, es);
            CM_REQUIRE(got == want) << kCollNames[coll] << " " << dtype_name(t) << " " << kOpNames[op] << " element "
                                    << i << ": bits 0x" << std::hex << got << ", expected 0x" << want;
          }
        }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

// --- many ranks --------------------------------------------------------------------

class CollectivesManyRanks : public Collectives, public ::testing::WithParamInterface<int> {};

TEST_P(CollectivesManyRanks, SmallCountsEveryCollective) {
  const int n = GetParam();
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, region_bytes(n, 5));
    uint64_t salt = 0;
    for (int coll = 0; coll < kNumColls; ++coll)
      for (Place place : {kOutOfPlace, kInPlace}) {
        // |sum| <= 8 * 64: exact in float16; int32 for the sums.
        const DataType t = reduces(static_cast<Coll>(coll)) ? DataType::INT32 : DataType::BFLOAT16;
        Case c{static_cast<Coll>(coll), t, kSum, place, 5, n - 1, salt++};
        run_and_check(R, c);
      }
  }, 240s);
  EXPECT_TRUE(all_ok(outcomes));
}

INSTANTIATE_TEST_SUITE_P(Kernels, CollectivesManyRanks, ::testing::Values(16, 64),
                         [](const ::testing::TestParamInfo<int>& info) { return std::to_string(info.param) + "ranks"; });

// --- sequences and the barrier ---------------------------------------------------------

TEST_F(Collectives, LongMixedSequencesReuseTheCommunicatorAtOnce) {
  // 4 ranks on 2 cores, 300 calls cycling through every collective (the
  // call descriptors' two slots are reused many times), interleaved with
  // allreduce calls of every mode, each call's buffers rewritten at once.
  constexpr int n = 4;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, region_bytes(n, 33));
    for (uint64_t it = 0; it < 300; ++it) {
      Case c{static_cast<Coll>(it % kNumColls), kTypes[it % 8], static_cast<int>((it / 6) % 4),
             static_cast<Place>((it / 2) % 2), 33, static_cast<int>(it % n), it};
      c.mode = static_cast<int>((it / 6) % 3);
      run_and_check(R, c);
    }
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Collectives, BarrierLetsNoRankLeaveBeforeEveryRankEntered) {
  constexpr int n = 6;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    auto word = [&](int r) { return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(R.ctx->windowsIn[r])); };
    for (uint64_t it = 1; it <= 200; ++it) {
      word(rank).store(it);
      KernelCall call(R.ctx, {}, {});
      const int rc = call.run(R.w, kernels().barrier);
      CM_REQUIRE(rc == 0) << "barrier " << it << ": " << call.error;
      for (int p = 0; p < n; ++p) CM_REQUIRE(word(p).load() >= it) << "rank " << p << " had not entered barrier " << it;
    }
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// --- invalid arguments and disagreements ---------------------------------------------

TEST_F(Collectives, InvalidArgumentsAreConfigErrorsWithAMessage) {
  constexpr int n = 2;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    const auto f32 = DataType::FLOAT32;
    const uint64_t a = R.a, b = R.b;
    const uint64_t outside = R.w.malloc(256);
    struct Bad {
      Coll coll;
      std::vector<chipmesh_tensor> tensors;
      std::vector<uint64_t> scalars;
      const char* message;
    };
    const Bad cases[] = {
        {kAllgather, {tensor(a, f32, 4)}, {}, "expects 2 tensors (input, output), got 1"},
        {kAllgather, {tensor(a, f32, 4), tensor(b, f32, 4)}, {}, "element counts input 4, output 4 do not fit"},
        {kAlltoall, {tensor(a, f32, 5), tensor(b, f32, 5)}, {}, "do not fit"},
        {kReduceScatter, {tensor(a, f32, 8), tensor(b, f32, 4)}, {}, "expects 1 scalars (op), got 0"},
        {kReduceScatter, {tensor(a, f32, 8), tensor(b, f32, 4)}, {4}, "op 4 is not"},
        {kReduceScatter, {tensor(a, DataType::INT16, 8), tensor(b, DataType::INT16, 4)}, {0}, "is not supported"},
        {kBroadcast, {tensor(a, f32, 4), tensor(b, f32, 4)}, {2}, "root 2 is outside the communicator of 2 ranks"},
        {kReduce, {tensor(a, f32, 4), tensor(b, f32, 4)}, {0, 9}, "root 9 is outside"},
        {kReduce, {tensor(a, f32, 4), tensor(b, DataType::INT32, 4)}, {0, 0}, "dtype mismatch"},
        {kAllgather, {tensor(outside, f32, 4), tensor(b, f32, 8)}, {}, "input [0x"},
        {kAlltoall, {tensor(a, f32, 8), tensor(a + 4, f32, 8)}, {}, "overlap and are not in place"},
        {kAllgather, {tensor(a + 2, f32, 4), tensor(b, f32, 8)}, {}, "aligned"},
        {kAllgather, {tensor(a, DataType::FLOAT32, 1ull << 62), tensor(b, f32, 1ull << 63)}, {}, "overflow the address space"},
    };
    for (const Bad& c : cases) {
      KernelCall call(R.ctx, c.tensors, c.scalars);
      const int rc = call.run(R.w, kernels().entry[c.coll]);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << kCollNames[c.coll] << " '" << c.message << "': rc " << rc << ": "
                                             << call.error;
      const std::string msg = call.error;
      CM_REQUIRE(msg.rfind(std::string(kCollNames[c.coll]) + ": ", 0) == 0) << msg;
      CM_REQUIRE(msg.find(c.message) != std::string::npos) << "'" << msg << "' lacks '" << c.message << "'";
    }
    {
      KernelCall call(nullptr, {}, {});
      CM_REQUIRE(call.run(R.w, kernels().barrier) == CHIPMESH_ERR_CONFIG);
      CM_REQUIRE(std::string(call.error).find("no communicator") != std::string::npos) << call.error;
    }
    // Nothing was left half done: the communicator still works.
    run_and_check(R, Case{kAllgather, f32, kSum, kOutOfPlace, 7, 0, 1});
    R.w.free(outside);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// chipmesh_staged on memory outside the window: a reduce_scatter of 1000
// int32 per block through a 256-byte area (chunks of 32 elements x 3
// blocks) equals the reduction; bad staging arguments are ConfigErrors.
TEST_F(Collectives, StagedFormMovesDataOutsideTheWindowInChunks) {
  constexpr int n = 3;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    const auto t = DataType::INT32;
    const uint64_t count = 1000;
    const uint64_t in = R.w.malloc(n * count * 4), out = R.w.malloc(count * 4);
    auto* pin = reinterpret_cast<int32_t*>(in);
    for (uint64_t i = 0; i < n * count; ++i) pin[i] = static_cast<int32_t>(i * (rank + 1));
    const uint64_t stage_off = 2 * 4096 - 3 * 32 * 4 - 128;  // inside the window, after a and b's start
    {
      KernelCall call(R.ctx, {tensor(in, t, n * count), tensor(out, t, count)}, {2, stage_off, 32, 0}, 10s);
      const int rc = call.run(R.w, kernels().staged);
      CM_REQUIRE(rc == 0) << "rc " << rc << ": " << call.error;
      const auto* pout = reinterpret_cast<const int32_t*>(out);
      for (uint64_t i = 0; i < count; ++i)
        CM_REQUIRE(pout[i] == static_cast<int32_t>((rank * count + i) * 6)) << "element " << i << ": " << pout[i];
    }
    const struct {
      std::vector<uint64_t> scalars;
      const char* message;
    } bad[] = {{{9, 0, 32, 0}, "staged: collective 9 is not 0..5"},
               {{2, 8192, 32, 0}, "does not fit the window of 8192 bytes"},
               {{2, 0, 0, 0}, "chunk 0 x 3 blocks"},
               {{2, 0}, "expects at least 3 scalars"}};
    for (const auto& b : bad) {
      KernelCall call(R.ctx, {tensor(in, t, n * count), tensor(out, t, count)}, b.scalars, 10s);
      const int rc = call.run(R.w, kernels().staged);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << b.message << ": rc " << rc << ": " << call.error;
      CM_REQUIRE(std::string(call.error).find(b.message) != std::string::npos) << call.error;
    }
    R.w.free(out);
    R.w.free(in);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Collectives, RanksThatCallDifferentCollectivesAllFailWithConfigError) {
  constexpr int n = 3;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    const auto t = DataType::INT32;
    // Rank 2 broadcasts while the others reduce; then a root disagreement.
    {
      KernelCall call(R.ctx, {tensor(R.a, t, 9), tensor(R.b, t, 9)},
                      rank == 2 ? std::vector<uint64_t>{0} : std::vector<uint64_t>{0, 0}, 10s);
      const int rc = call.run(R.w, kernels().entry[rank == 2 ? kBroadcast : kReduce]);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << "rc " << rc << ": " << call.error;
      CM_REQUIRE(std::string(call.error).find("ranks disagree") != std::string::npos) << call.error;
    }
    {
      KernelCall call(R.ctx, {tensor(R.a, t, 9), tensor(R.b, t, 9)}, {static_cast<uint64_t>(rank == 1 ? 1 : 0)}, 10s);
      const int rc = call.run(R.w, kernels().entry[kBroadcast]);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << "rc " << rc << ": " << call.error;
      CM_REQUIRE(std::string(call.error).find("root=1") != std::string::npos) << call.error;
    }
    // Every rank returned at the same point: the next agreed call works.
    run_and_check(R, Case{kReduce, t, kSum, kOutOfPlace, 9, 2, 5});
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// A small call (slots, no barrier) against a large one (barriers) of the
// same collective: every rank still sees the disagreement and returns at
// the same point, whichever path it took.
TEST_F(Collectives, RanksOnTheSmallAndTheLargePathThatDisagreeAllFail) {
  constexpr int n = 3;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 8192);
    const auto t = DataType::INT32;
    for (int big : {2, 0}) {  // 200 int32 (800 B) go past the 512 B slots; 9 do not
      const uint64_t count = rank == big ? 200 : 9;
      KernelCall call(R.ctx, {tensor(R.a, t, count), tensor(R.b, t, count)}, {0}, 10s);
      const int rc = call.run(R.w, kernels().entry[kBroadcast]);
      CM_REQUIRE(rc == CHIPMESH_ERR_CONFIG) << "rc " << rc << ": " << call.error;
      CM_REQUIRE(std::string(call.error).find("ranks disagree") != std::string::npos) << call.error;
    }
    run_and_check(R, Case{kBroadcast, t, kSum, kOutOfPlace, 9, 1, 6});
    run_and_check(R, Case{kBroadcast, t, kSum, kOutOfPlace, 200, 2, 7});
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(Collectives, APeerThatNeverCallsMakesTheWaitTimeOut) {
  constexpr int n = 2;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(rank, n, path, 4096);
    if (rank == 1) return;
    KernelCall call(R.ctx, {tensor(R.a, DataType::FLOAT32, 8), tensor(R.b, DataType::FLOAT32, 16)}, {}, 300ms);
    const int rc = call.run(R.w, kernels().entry[kAllgather]);
    CM_REQUIRE(rc == CHIPMESH_ERR_TIMEOUT) << "rc " << rc << ": " << call.error;
  });
  EXPECT_TRUE(all_ok(outcomes));
}

}  // namespace
}  // namespace chipmesh

// The streaming-store copy (src/common/stream_copy.h) the built-in kernels
// and Worker copies use: every head and tail the line split can leave,
// both store widths, the bytes around the destination untouched; the fold's
// streamed form against its plain one for every type; and the cache size
// read from a sysfs-like directory.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "reduce_ops.h"
#include "common/stream_copy.h"
#include "support/leak_check.h"

namespace chipmesh::kernels {
namespace {

using CopyFn = void (*)(void*, const void*, size_t);

struct Body {
  const char* name;
  CopyFn fn;
  bool available;
};

std::vector<Body> bodies() {
  return {{"sse2", stream_copy_sse2, true},
          {"avx2", stream_copy_avx2, cpu_has_avx2()},
          {"dispatch", stream_copy, true},
          {"unfenced+fence",
           [](void* d, const void* s, size_t n) {
             stream_copy_unfenced(d, s, n);
             stream_fence();
           },
           true}};
}

// Every destination and source offset inside a line, sizes around the line
// and the page: the copy equals memcpy and writes nothing outside.
TEST(StreamCopy, EveryAlignmentAndSizeEqualsMemcpyAndStaysInside) {
  constexpr size_t kPad = 256;
  const std::vector<size_t> sizes = {0, 1, 15, 16, 63, 64, 65, 127, 128, 129, 191, 4095, 4096, 4097, 65536 + 17};
  std::vector<unsigned char> src(65536 + 17 + 2 * kPad);
  std::mt19937 rng(7);
  for (auto& b : src) b = static_cast<unsigned char>(rng());
  // Over-aligned so that offset k really is k bytes past a line.
  alignas(64) static unsigned char dst[65536 + 17 + 2 * kPad];
  for (const Body& b : bodies()) {
    if (!b.available) continue;
    for (size_t n : sizes)
      for (size_t dofs : {size_t{0}, size_t{1}, size_t{8}, size_t{17}, size_t{32}, size_t{63}})
        for (size_t sofs : {size_t{0}, size_t{3}, size_t{16}}) {
          std::memset(dst, 0x5A, sizeof(dst));
          b.fn(dst + kPad + dofs, src.data() + sofs, n);
          ASSERT_EQ(std::memcmp(dst + kPad + dofs, src.data() + sofs, n), 0)
              << b.name << " n=" << n << " dst+" << dofs << " src+" << sofs;
          for (size_t k = 0; k < kPad + dofs; ++k) ASSERT_EQ(dst[k], 0x5A) << b.name << " wrote before, n=" << n;
          for (size_t k = kPad + dofs + n; k < sizeof(dst); ++k)
            ASSERT_EQ(dst[k], 0x5A) << b.name << " wrote past the end, n=" << n << " dst+" << dofs;
        }
  }
}

// The fold with streamed stores gives the bytes of the plain fold, for every
// type (half types round through the block buffer), in place included.
template <typename T>
void fold_both_ways(uint64_t seed) {
  using S = typename T::S;
  constexpr size_t kSrc = 3;
  for (size_t n : {size_t{1}, size_t{2047}, size_t{2048}, size_t{2049}, size_t{10000}}) {
    std::vector<std::vector<S>> in(kSrc, std::vector<S>(n));
    std::mt19937_64 rng(seed + n);
    for (auto& v : in)
      for (auto& x : v) {
        const uint64_t bits = rng() % 200;
        std::memcpy(&x, &bits, std::min(sizeof(S), sizeof(bits)));
      }
    const S* src[kSrc] = {in[0].data(), in[1].data(), in[2].data()};
    for (size_t nsrc : {size_t{1}, size_t{2}, size_t{3}}) {
      std::vector<S> plain(n + 1), streamed(n + 1);
      reduce_fold<T, OpSum>(plain.data() + 1, src, nsrc, n, false);  // +1: the head is not line-aligned
      reduce_fold<T, OpSum>(streamed.data() + 1, src, nsrc, n, true);
      ASSERT_EQ(std::memcmp(plain.data(), streamed.data(), (n + 1) * sizeof(S)), 0) << "n=" << n << " nsrc=" << nsrc;
    }
    // In place: out is source 0.
    std::vector<S> a = in[0], b = in[0];
    const S* src_a[kSrc] = {a.data(), in[1].data(), in[2].data()};
    const S* src_b[kSrc] = {b.data(), in[1].data(), in[2].data()};
    reduce_fold<T, OpMax>(a.data(), src_a, kSrc, n, false);
    reduce_fold<T, OpMax>(b.data(), src_b, kSrc, n, true);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), n * sizeof(S)), 0) << "in place, n=" << n;
  }
}

// The fold against a scalar left fold in the compute type (rounded once),
// for 1 to 5 sources, sizes on both sides of the fold's block, plain and
// streamed, with the output apart or exactly one of the sources (first,
// middle or last: the pass that stores also reads the last source).
template <typename T>
void fold_matches_reference(uint64_t seed) {
  using S = typename T::S;
  using C = typename T::C;
  constexpr size_t kMaxSrc = 5;
  for (size_t n : {size_t{1}, size_t{7}, size_t{2047}, size_t{2048}, size_t{2049}, size_t{5000}}) {
    std::mt19937_64 rng(seed * 1000 + n);
    std::vector<std::vector<S>> in(kMaxSrc, std::vector<S>(n));
    for (auto& v : in)
      for (auto& x : v) {
        const uint64_t bits = rng() % 200;
        std::memcpy(&x, &bits, std::min(sizeof(S), sizeof(bits)));
      }
    for (size_t nsrc = 1; nsrc <= kMaxSrc; ++nsrc) {
      std::vector<S> want(n);
      for (size_t i = 0; i < n; ++i) {
        C acc = T::load(in[0][i]);
        for (size_t k = 1; k < nsrc; ++k) acc = OpSum::apply(acc, T::load(in[k][i]));
        want[i] = T::store(acc);
      }
      // -1: apart; otherwise the index of the source the output is.
      for (int at : {-1, 0, static_cast<int>(nsrc / 2), static_cast<int>(nsrc - 1)})
        for (bool stream : {false, true}) {
          std::vector<std::vector<S>> v = in;
          std::vector<S> apart(n);
          const S* src[kMaxSrc];
          for (size_t k = 0; k < nsrc; ++k) src[k] = v[k].data();
          S* out = at < 0 ? apart.data() : v[static_cast<size_t>(at)].data();
          reduce_fold<T, OpSum>(out, src, nsrc, n, stream);
          ASSERT_EQ(std::memcmp(out, want.data(), n * sizeof(S)), 0)
              << "n=" << n << " nsrc=" << nsrc << " out=" << (at < 0 ? std::string("apart") : "source " + std::to_string(at))
              << (stream ? " streamed" : " plain");
        }
    }
  }
}

TEST(StreamCopy, FoldEqualsAScalarLeftFoldWithTheOutputApartOrAnySource) {
  fold_matches_reference<F32>(1);
  fold_matches_reference<F16>(2);
  fold_matches_reference<BF16>(3);
  fold_matches_reference<I8>(4);
  fold_matches_reference<I32>(5);
  fold_matches_reference<I64>(6);
}

TEST(StreamCopy, StreamedFoldEqualsThePlainFoldForEveryType) {
  fold_both_ways<F32>(1);
  fold_both_ways<F16>(2);
  fold_both_ways<BF16>(3);
  fold_both_ways<F64>(4);
  fold_both_ways<I8>(5);
  fold_both_ways<U8>(6);
  fold_both_ways<I32>(7);
  fold_both_ways<I64>(8);
}

// A sysfs cpu directory: the largest cache level that holds data counts.
void write(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text << "\n";
}

TEST(StreamCopy, LastLevelCacheComesFromTheDeepestDataCache) {
  testing::ScratchDir dir;
  const std::filesystem::path cpu = dir.path() / "cpu0";
  EXPECT_EQ(last_level_cache_bytes(cpu.c_str()), 0u) << "no cache directory";
  const auto index = [&](int i, const char* level, const char* type, const char* size) {
    write(cpu / "cache" / ("index" + std::to_string(i)) / "level", level);
    write(cpu / "cache" / ("index" + std::to_string(i)) / "type", type);
    write(cpu / "cache" / ("index" + std::to_string(i)) / "size", size);
  };
  index(0, "1", "Data", "32K");
  index(1, "1", "Instruction", "32K");
  EXPECT_EQ(last_level_cache_bytes(cpu.c_str()), 32u << 10);
  index(2, "2", "Unified", "1M");
  EXPECT_EQ(last_level_cache_bytes(cpu.c_str()), 1u << 20);
  index(3, "3", "Unified", "32768K");
  EXPECT_EQ(last_level_cache_bytes(cpu.c_str()), 32u << 20);
  // An instruction cache at a deeper level, or a size that does not parse,
  // does not count.
  index(4, "4", "Instruction", "1G");
  index(5, "4", "Unified", "lots");
  EXPECT_EQ(last_level_cache_bytes(cpu.c_str()), 32u << 20);
  // This machine's threshold lies in the documented range.
  EXPECT_GE(stream_threshold_bytes(), 8u << 20);
  EXPECT_LE(stream_threshold_bytes(), 64u << 20);
  EXPECT_FALSE(stream_stores_pay(stream_threshold_bytes() - 1));
  EXPECT_TRUE(stream_stores_pay(stream_threshold_bytes()));
}

}  // namespace
}  // namespace chipmesh::kernels

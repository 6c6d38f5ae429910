// Element types and reduction operators of the built-in collectives, plus the
// vectorisable inner loops every allreduce mode uses.
//
// An element type has a storage type S (what lives in the buffers) and a
// compute type C (what the arithmetic runs in): float32, float64 and the
// integers (int8, uint8, int32, int64) compute in themselves; float16 and
// bfloat16 are stored as uint16_t and computed in float, rounded back to
// nearest-even when stored. Integer sums and products wrap around (two's
// complement), they never overflow into undefined behaviour.
//
// Everything here is branch-free per element and free of libm calls so that
// g++ -O3 vectorises the loops with the baseline ISA (no -march needed).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "chipmesh/half.h"
#include "chipmesh/types.h"
#include "common/stream_copy.h"

namespace chipmesh::kernels {

// float16 / bfloat16 <-> float: one implementation for kernels, tools and
// tests, in the public header chipmesh/half.h.
using half::bf16_to_float;
using half::float_to_bf16;
using half::float_to_half;
using half::half_to_float;

// --- element types -----------------------------------------------------------

struct F32 {
  using S = float;
  using C = float;
  static constexpr DataType kType = DataType::FLOAT32;
  static C load(S v) { return v; }
  static S store(C v) { return v; }
};

struct F16 {
  using S = uint16_t;
  using C = float;
  static constexpr DataType kType = DataType::FLOAT16;
  static C load(S v) { return half_to_float(v); }
  static S store(C v) { return float_to_half(v); }
};

struct BF16 {
  using S = uint16_t;
  using C = float;
  static constexpr DataType kType = DataType::BFLOAT16;
  static C load(S v) { return bf16_to_float(v); }
  static S store(C v) { return float_to_bf16(v); }
};

// Integer and float64 types compute in themselves.
template <typename V, DataType D>
struct Plain {
  using S = V;
  using C = V;
  static constexpr DataType kType = D;
  static C load(S v) { return v; }
  static S store(C v) { return v; }
};
using I32 = Plain<int32_t, DataType::INT32>;
using I8 = Plain<int8_t, DataType::INT8>;
using U8 = Plain<uint8_t, DataType::UINT8>;
using I64 = Plain<int64_t, DataType::INT64>;
using F64 = Plain<double, DataType::FLOAT64>;

// --- operators ---------------------------------------------------------------
// apply(acc, x): `acc` is the running result of the ranks folded so far, `x`
// the next rank's value. The forms below map onto single SIMD instructions
// (addps/paddd, maxps/pmaxsd, ...) without -ffast-math.

// Integer sums and products wrap around (two's complement): the arithmetic
// runs in an unsigned type at least as wide as unsigned int, so neither the
// operation nor the integer promotions can overflow into undefined behaviour.
namespace detail {
template <typename C>
using Wide = std::conditional_t<(sizeof(C) < sizeof(unsigned)), unsigned, std::make_unsigned_t<C>>;
}  // namespace detail

struct OpSum {
  static constexpr uint32_t kId = 0;
  template <typename C>
  static C apply(C a, C b) {
    if constexpr (std::is_floating_point_v<C>) return a + b;
    else return static_cast<C>(static_cast<detail::Wide<C>>(a) + static_cast<detail::Wide<C>>(b));
  }
};

struct OpMax {
  static constexpr uint32_t kId = 1;
  template <typename C>
  static C apply(C a, C b) { return a > b ? a : b; }
};

struct OpMin {
  static constexpr uint32_t kId = 2;
  template <typename C>
  static C apply(C a, C b) { return a < b ? a : b; }
};

struct OpProd {
  static constexpr uint32_t kId = 3;
  template <typename C>
  static C apply(C a, C b) {
    if constexpr (std::is_floating_point_v<C>) return a * b;
    else return static_cast<C>(static_cast<detail::Wide<C>>(a) * static_cast<detail::Wide<C>>(b));
  }
};

inline constexpr uint32_t kLastOpId = OpProd::kId;

// Storage size of a supported dtype, 0 for an unsupported one.
inline size_t reduce_dtype_size(uint32_t dtype) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::FLOAT32: return sizeof(float);
    case DataType::FLOAT16: return sizeof(uint16_t);
    case DataType::BFLOAT16: return sizeof(uint16_t);
    case DataType::INT32: return sizeof(int32_t);
    case DataType::INT8: return sizeof(int8_t);
    case DataType::UINT8: return sizeof(uint8_t);
    case DataType::INT64: return sizeof(int64_t);
    case DataType::FLOAT64: return sizeof(double);
    default: return 0;
  }
}

// Calls f.template operator()<Type, Op>() for a (dtype, op) pair already
// validated by the entry point; returns its result.
template <typename F>
int visit_type_op(uint32_t dtype, uint32_t op, F&& f) {
  auto with_op = [&]<typename T>() -> int {
    switch (op) {
      case OpSum::kId: return f.template operator()<T, OpSum>();
      case OpMax::kId: return f.template operator()<T, OpMax>();
      case OpMin::kId: return f.template operator()<T, OpMin>();
      default: return f.template operator()<T, OpProd>();
    }
  };
  switch (static_cast<DataType>(dtype)) {
    case DataType::FLOAT32: return with_op.template operator()<F32>();
    case DataType::FLOAT16: return with_op.template operator()<F16>();
    case DataType::BFLOAT16: return with_op.template operator()<BF16>();
    case DataType::INT8: return with_op.template operator()<I8>();
    case DataType::UINT8: return with_op.template operator()<U8>();
    case DataType::INT64: return with_op.template operator()<I64>();
    case DataType::FLOAT64: return with_op.template operator()<F64>();
    default: return with_op.template operator()<I32>();
  }
}

// --- inner loops --------------------------------------------------------------

// The fold's body; reduce_fold below is the entry point. Always inlined:
// the AVX2 copy below must hold its own copy of the loops.
template <typename T, typename Op>
[[gnu::always_inline]] inline void fold_blocks(typename T::S* out, const typename T::S* const* src, size_t nsrc, size_t n, bool stream) {
  using S = typename T::S;
  using C = typename T::C;
  constexpr size_t kBlock = 2048;
  alignas(64) C acc[kBlock];
  alignas(64) S block[kBlock];
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t m = std::min(kBlock, n - b);
    // Not restrict: out may be a source, at the same index only, which is
    // no dependence between iterations (ivdep).
    const S* last = src[nsrc - 1] + b;
    S* o = stream ? block : out + b;
    if (nsrc == 2) {
      const S* s0 = src[0] + b;
#pragma GCC ivdep
      for (size_t i = 0; i < m; ++i) o[i] = T::store(Op::apply(T::load(s0[i]), T::load(last[i])));
    } else {
      {
        const S* __restrict s0 = src[0] + b;
        const S* __restrict s1 = src[1] + b;
        C* __restrict a = acc;
        for (size_t i = 0; i < m; ++i) a[i] = Op::apply(T::load(s0[i]), T::load(s1[i]));
      }
      for (size_t k = 2; k + 1 < nsrc; ++k) {
        const S* __restrict sk = src[k] + b;
        C* __restrict a = acc;
        for (size_t i = 0; i < m; ++i) a[i] = Op::apply(a[i], T::load(sk[i]));
      }
      const C* a = acc;
#pragma GCC ivdep
      for (size_t i = 0; i < m; ++i) o[i] = T::store(Op::apply(a[i], T::load(last[i])));
    }
    if (stream) stream_copy_unfenced(out + b, block, m * sizeof(S));
  }
  if (stream) stream_fence();
}

// In cache, an AVX2 copy of the fold where the CPU has it (cpu_has_avx2):
// the kernels library is built for baseline x86-64 (SSE2), and the fold of a
// 2-rank allreduce at 256 KiB-1 MiB ran 10-15 % faster with 32-byte vectors
// on AMD EPYC. Streamed (past the cache) it keeps SSE2: there the AVX2 copy
// ran 10-40 % slower at 16 MiB. The loops are element-wise, so both give
// the same bits. A plain branch, not target_clones: the ifunc that
// target_clones makes crashed ThreadSanitizer builds at load time.
#if defined(__x86_64__) && defined(__GNUC__)
#define CHIPMESH_FOLD_AVX2 1
template <typename T, typename Op>
[[gnu::target("avx2")]] inline void fold_blocks_avx2(typename T::S* out, const typename T::S* const* src,
                                                    size_t nsrc, size_t n) {
  fold_blocks<T, Op>(out, src, nsrc, n, false);
}
#endif

// out[i] = ((src[0][i] op src[1][i]) op src[2][i]) ... op src[nsrc-1][i]:
// a left fold in source order, the same order for every element and on every
// rank. Works in L1-sized blocks with the accumulator in the compute type, so
// a half-precision result is rounded once. nsrc >= 1; out may be one of the
// sources exactly (in place: element i is read before it is stored), it must
// not overlap one otherwise. With `stream`, each block's result goes out
// through stream_copy (stream_copy.h).
//
// The last source is folded in the pass that stores the result: a separate
// pass (accumulator -> out, which g++ -O3 makes a `rep movsq`) cost a fifth
// of a 2-rank allreduce at 1-64 MiB on AMD EPYC (docs/PERFORMANCE.md).
template <typename T, typename Op>
inline void reduce_fold(typename T::S* out, const typename T::S* const* src, size_t nsrc, size_t n,
                        bool stream = false) {
  if (nsrc == 1) {
    if (n && out != src[0]) copy_streamed_if(stream, out, src[0], n * sizeof(typename T::S));
    return;
  }
#ifdef CHIPMESH_FOLD_AVX2
  if (!stream && cpu_has_avx2()) return fold_blocks_avx2<T, Op>(out, src, nsrc, n);  // cached there
#endif
  fold_blocks<T, Op>(out, src, nsrc, n, stream);
}

// --- partition ----------------------------------------------------------------
// `count` elements in `parts` chunks as even as possible: the first
// count % parts chunks get one element more. Chunks may be empty.
struct Range {
  size_t begin;
  size_t size;
};

inline Range chunk_of(size_t count, size_t parts, size_t index) {
  const size_t q = count / parts;
  const size_t rem = count % parts;
  return {index * q + std::min(index, rem), q + (index < rem ? 1 : 0)};
}

}  // namespace chipmesh::kernels

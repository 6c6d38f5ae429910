// Names of the built-in collectives' reduction operators and allreduce
// algorithms: one public table, so no caller writes magic numbers, and the
// encoding of the `chipmesh_allreduce` kernel's scalars in one place.
// Header-only: kernels, tools and tests use it without linking libchipmesh.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chipmesh/errors.h"
#include "chipmesh/types.h"
#include "chipmesh/worker.h"

namespace chipmesh {

enum class ReduceOp : uint32_t { SUM, PROD, MAX, MIN };
enum class AllreduceAlgo : uint32_t { AUTO, ONEPHASE, TWOPHASE, RING };

namespace names {
inline constexpr std::array<std::string_view, 4> kReduceOps = {"sum", "prod", "max", "min"};
inline constexpr std::array<std::string_view, 4> kAllreduceAlgos = {"auto", "onephase", "twophase", "ring"};

template <size_t N>
std::string joined(const std::array<std::string_view, N>& list) {
  std::string s;
  for (size_t i = 0; i < N; ++i) (s += i ? ", " : "") += list[i];
  return s;
}

template <size_t N>
size_t index_of(const std::array<std::string_view, N>& list, std::string_view name, const char* what) {
  for (size_t i = 0; i < N; ++i)
    if (list[i] == name) return i;
  throw ConfigError("unknown " + std::string(what) + " '" + std::string(name) + "'; expected one of " + joined(list));
}
}  // namespace names

inline std::string_view to_string(ReduceOp op) {
  const auto i = static_cast<size_t>(op);
  return i < names::kReduceOps.size() ? names::kReduceOps[i] : "?";
}
inline std::string_view to_string(AllreduceAlgo algo) {
  const auto i = static_cast<size_t>(algo);
  return i < names::kAllreduceAlgos.size() ? names::kAllreduceAlgos[i] : "?";
}
// ConfigError naming the unknown string and the valid names.
inline ReduceOp parse_reduce_op(std::string_view name) {
  return static_cast<ReduceOp>(names::index_of(names::kReduceOps, name, "reduce op"));
}
inline AllreduceAlgo parse_allreduce_algo(std::string_view name) {
  return static_cast<AllreduceAlgo>(names::index_of(names::kAllreduceAlgos, name, "allreduce algorithm"));
}

// The scalars of the `chipmesh_allreduce` kernel (kernel ABI v1):
// {mode, op} with mode 0 onephase, 1 twophase, 2 ring and op 0 sum, 1 max,
// 2 min. Kept stable: tasks written with these numbers keep working.
namespace allreduce_kernel {
inline constexpr uint64_t kModeOnePhase = 0;
inline constexpr uint64_t kModeTwoPhase = 1;
inline constexpr uint64_t kModeRing = 2;
inline constexpr uint64_t kOpSum = 0;
inline constexpr uint64_t kOpMax = 1;
inline constexpr uint64_t kOpMin = 2;

// AUTO: one phase while a rank's data is small (latency-bound: one barrier,
// every rank reads every peer), the ring above (bandwidth-bound: each byte
// crosses once per step). The cut is the per-rank message size in bytes.
inline constexpr uint64_t kAutoRingBytes = uint64_t{256} << 10;

inline uint64_t mode(AllreduceAlgo algo, uint64_t bytes_per_rank) {
  switch (algo) {
    case AllreduceAlgo::AUTO: return bytes_per_rank < kAutoRingBytes ? kModeOnePhase : kModeRing;
    case AllreduceAlgo::ONEPHASE: return kModeOnePhase;
    case AllreduceAlgo::TWOPHASE: return kModeTwoPhase;
    case AllreduceAlgo::RING: return kModeRing;
  }
  throw ConfigError("allreduce algorithm " + std::to_string(static_cast<uint32_t>(algo)) + " is not one of " +
                    names::joined(names::kAllreduceAlgos));
}

// ConfigError for an op the kernel does not implement (prod).
inline uint64_t op(ReduceOp op) {
  switch (op) {
    case ReduceOp::SUM: return kOpSum;
    case ReduceOp::MAX: return kOpMax;
    case ReduceOp::MIN: return kOpMin;
    default: break;
  }
  throw ConfigError("the chipmesh_allreduce kernel does not implement reduce op '" + std::string(to_string(op)) +
                    "'; it has sum, max, min");
}

// Name of a mode scalar, for messages ("?" when out of range).
inline std::string_view mode_name(uint64_t mode) {
  return mode <= kModeRing ? names::kAllreduceAlgos[static_cast<size_t>(mode) + 1] : "?";
}
}  // namespace allreduce_kernel

// One chip's task of an allreduce with the built-in kernel: `count` elements
// of `dtype` from device address `in` to `out` (both inside the chip's
// window; in == out is in place). Submit one per chip with submit_group.
inline Task allreduce_task(uint64_t in, uint64_t out, uint64_t count, DataType dtype, ReduceOp op,
                           AllreduceAlgo algo = AllreduceAlgo::AUTO) {
  Task t;
  t.kernel = "chipmesh_allreduce";
  t.library = "";  // the built-in kernels
  t.tensors = {TensorArg{in, dtype, {count}}, TensorArg{out, dtype, {count}}};
  t.scalars = {allreduce_kernel::mode(algo, count * dtype_size(dtype)), allreduce_kernel::op(op)};
  return t;
}

}  // namespace chipmesh

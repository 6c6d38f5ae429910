// Names of the built-in collectives' reduction operators and allreduce
// algorithms: one public table, so no caller writes magic numbers, and the
// encoding of the `chipmesh_allreduce` kernel's scalars in one place.
// Header-only: kernels, tools and tests use it without linking libchipmesh.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "chipmesh/errors.h"
#include "chipmesh/types.h"
#include "chipmesh/worker.h"

namespace chipmesh {

// ReduceOp { SUM, PROD, MAX, MIN } and AllreduceAlgo { AUTO, ONEPHASE,
// TWOPHASE, RING } are declared in chipmesh/comm_domain.h (via worker.h).

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
// 2 min, 3 prod (added later, after the three old ones). Kept stable: tasks
// written with these numbers keep working. The other built-in collectives
// use the same op numbers.
namespace allreduce_kernel {
inline constexpr uint64_t kModeOnePhase = 0;
inline constexpr uint64_t kModeTwoPhase = 1;
inline constexpr uint64_t kModeRing = 2;
inline constexpr uint64_t kOpSum = 0;
inline constexpr uint64_t kOpMax = 1;
inline constexpr uint64_t kOpMin = 2;
inline constexpr uint64_t kOpProd = 3;

// AUTO: one phase while the whole call is small (latency-bound: one
// barrier, but every rank reads every peer, n * n * bytes read in all), two
// phases above that (each rank reduces its chunk and writes it into every
// rank's output: about one read and one write per byte, as a copy, and two
// barriers). On 2 ranks (and 1) one phase below kAutoTwoRanksTwoPhaseBytes
// per rank, two phases from there: below 1 MiB the two were within the
// noise of each other on the AMD EPYC VM, from 1 MiB two phases led in the
// VM's usual state and when outputs are read between calls, and lost by up
// to 10 % only while the host capped the VM's memory writes
// (docs/PERFORMANCE.md, "Changes and their effect", row `2f144bb`). The ring lost to two phases on
// the sim platform, with or without a CPU per rank: its pipeline waits on
// the left neighbour at every step (4, 8 and 16 ranks, 256 KiB to 64 MiB, on
// 2 AMD and 16 Intel vCPUs: up to 2x slower, and ahead once by 8 %), and on
// 2 ranks it no longer beat two phases either. RING stays available when
// asked for.
inline constexpr uint64_t kAutoTwoRanksTwoPhaseBytes = uint64_t{1} << 20;
inline constexpr uint64_t kAutoOnePhaseTotalBytes = uint64_t{1} << 20;  // n * n * bytes_per_rank below this
// Where AUTO took the ring on 2 ranks until December 2026; AUTO no longer
// uses it (kept for code that names it).
inline constexpr uint64_t kAutoRingBytes = uint64_t{256} << 10;

// The mode scalar of `algo` for an allreduce of `bytes_per_rank` on
// `nranks` ranks.
inline uint64_t mode(AllreduceAlgo algo, uint64_t bytes_per_rank, uint64_t nranks) {
  switch (algo) {
    case AllreduceAlgo::AUTO:
      if (nranks <= 2) return bytes_per_rank >= kAutoTwoRanksTwoPhaseBytes ? kModeTwoPhase : kModeOnePhase;
      if (bytes_per_rank < kAutoOnePhaseTotalBytes / nranks / nranks) return kModeOnePhase;
      return kModeTwoPhase;
    case AllreduceAlgo::ONEPHASE: return kModeOnePhase;
    case AllreduceAlgo::TWOPHASE: return kModeTwoPhase;
    case AllreduceAlgo::RING: return kModeRing;
  }
  throw ConfigError("allreduce algorithm " + std::to_string(static_cast<uint32_t>(algo)) + " is not one of " +
                    names::joined(names::kAllreduceAlgos));
}

// The same by the message size alone (AUTO as for 2 ranks).
inline uint64_t mode(AllreduceAlgo algo, uint64_t bytes_per_rank) { return mode(algo, bytes_per_rank, 2); }

// The kernels' number of a reduce op; ConfigError for a value outside the enum.
inline uint64_t op(ReduceOp op) {
  switch (op) {
    case ReduceOp::SUM: return kOpSum;
    case ReduceOp::MAX: return kOpMax;
    case ReduceOp::MIN: return kOpMin;
    case ReduceOp::PROD: return kOpProd;
  }
  throw ConfigError("reduce op " + std::to_string(static_cast<uint32_t>(op)) + " is not one of " +
                    names::joined(names::kReduceOps));
}

// Name of a mode scalar, for messages ("?" when out of range).
inline std::string_view mode_name(uint64_t mode) {
  return mode <= kModeRing ? names::kAllreduceAlgos[static_cast<size_t>(mode) + 1] : "?";
}
}  // namespace allreduce_kernel

// Data types the reducing collectives (allreduce, reduce_scatter, reduce)
// support; the others (allgather, broadcast, alltoall) move any dtype.
inline bool reducible(DataType dtype) {
  switch (dtype) {
    case DataType::FLOAT32:
    case DataType::FLOAT16:
    case DataType::BFLOAT16:
    case DataType::INT8:
    case DataType::UINT8:
    case DataType::INT32:
    case DataType::INT64:
    case DataType::FLOAT64: return true;
    default: return false;
  }
}

// Every builder below comes in two forms: `X_task(...)` returns a new Task,
// `set_X_task(Task& t, ...)` overwrites `t` with the same task, keeping the
// capacity of its strings and vectors. The Orchestrator's typed collectives
// refill the same tasks call after call, so that a stream of small
// collectives allocates nothing on the host (the allocations were half of
// the parent's time in a 2-rank 8 B allreduce stream on an AMD EPYC).
namespace detail {
// Kernel `kernel` of the built-in library with tensors {in, in_count} and
// {out, out_count} of `dtype` (none when `tensors` is false) and `scalars`;
// comm_ctx and flush_outputs at their defaults.
inline void set_builtin_task(Task& t, const char* kernel, bool tensors, uint64_t in, uint64_t in_count, uint64_t out,
                             uint64_t out_count, DataType dtype, std::initializer_list<uint64_t> scalars) {
  t.kernel = kernel;
  t.library.clear();  // the built-in kernels
  t.tensors.resize(tensors ? 2 : 0);
  if (tensors) {
    t.tensors[0].addr = in, t.tensors[0].dtype = dtype, t.tensors[0].shape.assign(1, in_count);
    t.tensors[1].addr = out, t.tensors[1].dtype = dtype, t.tensors[1].shape.assign(1, out_count);
  }
  t.scalars.assign(scalars);
  t.comm_ctx = 0;
  t.flush_outputs = true;
}
}  // namespace detail

// One chip's task of an allreduce with the built-in kernel: `count` elements
// of `dtype` from device address `in` to `out` (both inside the chip's
// window, at the same window offsets on every rank; in == out is in place).
// Submit one per chip with submit_group. `nranks` (the communicator's size)
// only informs AUTO's choice; 2 picks by the message size alone.
inline void set_allreduce_task(Task& t, uint64_t in, uint64_t out, uint64_t count, DataType dtype, ReduceOp op,
                               AllreduceAlgo algo = AllreduceAlgo::AUTO, uint32_t nranks = 2) {
  detail::set_builtin_task(t, "chipmesh_allreduce", true, in, count, out, count, dtype,
                           {allreduce_kernel::mode(algo, count * dtype_size(dtype), nranks), allreduce_kernel::op(op)});
}

// The other built-in collectives (kernels/collective.h has the layout of
// their arguments). One task per rank of the communicator, submitted with
// submit_group; `in` and `out` lie in the rank's window, at any offset (the
// ranks need not agree on offsets). `nranks` is the communicator's size.
// In place: in == out, and additionally the NCCL forms (allgather: in ==
// out + rank * count * size; reduce_scatter: out == in + rank * count * size).

// out (nranks * count) = the ranks' `in` (count each), in rank order.
inline void set_allgather_task(Task& t, uint64_t in, uint64_t out, uint64_t count, DataType dtype, uint64_t nranks) {
  detail::set_builtin_task(t, "chipmesh_allgather", true, in, count, out, nranks * count, dtype, {});
}
// out (count) of rank r = block r (count elements) of every rank's in
// (nranks * count), reduced in rank order.
inline void set_reduce_scatter_task(Task& t, uint64_t in, uint64_t out, uint64_t count, DataType dtype, ReduceOp op,
                                    uint64_t nranks) {
  detail::set_builtin_task(t, "chipmesh_reduce_scatter", true, in, nranks * count, out, count, dtype,
                           {allreduce_kernel::op(op)});
}
// out (count) of every rank = in of `root` (the others' in is not read).
inline void set_broadcast_task(Task& t, uint64_t in, uint64_t out, uint64_t count, DataType dtype, uint64_t root) {
  detail::set_builtin_task(t, "chipmesh_broadcast", true, in, count, out, count, dtype, {root});
}
// out (count) of `root` = every rank's in reduced in rank order (the others'
// out is not written).
inline void set_reduce_task(Task& t, uint64_t in, uint64_t out, uint64_t count, DataType dtype, ReduceOp op,
                            uint64_t root) {
  detail::set_builtin_task(t, "chipmesh_reduce", true, in, count, out, count, dtype, {allreduce_kernel::op(op), root});
}
// Block j (count elements) of rank r's out = block r of rank j's in; both
// hold nranks * count.
inline void set_alltoall_task(Task& t, uint64_t in, uint64_t out, uint64_t count, DataType dtype, uint64_t nranks) {
  detail::set_builtin_task(t, "chipmesh_alltoall", true, in, nranks * count, out, nranks * count, dtype, {});
}
// Returns on a rank once every rank has entered.
inline void set_barrier_task(Task& t) {
  detail::set_builtin_task(t, "chipmesh_barrier", false, 0, 0, 0, 0, DataType::UINT8, {});
}

namespace detail {
// A new task from a set_X_task builder and its arguments.
template <typename Set, typename... A>
Task built_task(Set set, A... args) {
  Task t;
  set(t, args...);
  return t;
}
}  // namespace detail

inline Task allreduce_task(uint64_t in, uint64_t out, uint64_t count, DataType dtype, ReduceOp op,
                           AllreduceAlgo algo = AllreduceAlgo::AUTO, uint32_t nranks = 2) {
  return detail::built_task(set_allreduce_task, in, out, count, dtype, op, algo, nranks);
}
inline Task allgather_task(uint64_t in, uint64_t out, uint64_t count, DataType dtype, uint64_t nranks) {
  return detail::built_task(set_allgather_task, in, out, count, dtype, nranks);
}
inline Task reduce_scatter_task(uint64_t in, uint64_t out, uint64_t count, DataType dtype, ReduceOp op,
                                uint64_t nranks) {
  return detail::built_task(set_reduce_scatter_task, in, out, count, dtype, op, nranks);
}
inline Task broadcast_task(uint64_t in, uint64_t out, uint64_t count, DataType dtype, uint64_t root) {
  return detail::built_task(set_broadcast_task, in, out, count, dtype, root);
}
inline Task reduce_task(uint64_t in, uint64_t out, uint64_t count, DataType dtype, ReduceOp op, uint64_t root) {
  return detail::built_task(set_reduce_task, in, out, count, dtype, op, root);
}
inline Task alltoall_task(uint64_t in, uint64_t out, uint64_t count, DataType dtype, uint64_t nranks) {
  return detail::built_task(set_alltoall_task, in, out, count, dtype, nranks);
}
inline Task barrier_task() { return detail::built_task(set_barrier_task); }

// The staged form of a collective task above, for data outside the window
// (any device memory of the chip): kernel chipmesh_staged moves it through
// [stage_offset, stage_offset + chunk * blocks * size) of the window, chunk
// elements per block at a time (blocks: nranks for allgather, reduce_scatter
// and alltoall, else 1). stage_offset and chunk must be the same on every
// rank, and nothing else may use that part of the windows meanwhile. The
// Orchestrator's collectives pick this form themselves (kernels/staged.cpp).
namespace staged_kernel {
inline constexpr uint64_t kAllreduce = 0;
inline constexpr uint64_t kAllgather = 1;
inline constexpr uint64_t kReduceScatter = 2;
inline constexpr uint64_t kBroadcast = 3;
inline constexpr uint64_t kReduce = 4;
inline constexpr uint64_t kAlltoall = 5;
}  // namespace staged_kernel
// `collective` is one of staged_kernel's numbers, matching the task's kernel.
inline void make_staged_task(Task& t, uint64_t collective, uint64_t stage_offset, uint64_t chunk) {
  t.kernel = "chipmesh_staged";
  t.scalars.insert(t.scalars.begin(), {collective, stage_offset, chunk});
}
inline Task staged_task(Task t, uint64_t collective, uint64_t stage_offset, uint64_t chunk) {
  make_staged_task(t, collective, stage_offset, chunk);
  return t;
}

}  // namespace chipmesh

// Shared part of the built-in collectives other than allreduce (allgather,
// reduce_scatter, broadcast, reduce, alltoall, barrier; one per file):
// argument parsing and checking, the call descriptor every rank publishes,
// and the opening of a call. Arguments (chipmesh/collectives.h builds them):
//
//   kernel                  tensors (in, out)              scalars
//   chipmesh_allgather      in: c,       out: n * c        -
//   chipmesh_reduce_scatter in: n * c,   out: c            op
//   chipmesh_broadcast      in: c,       out: c            root
//   chipmesh_reduce         in: c,       out: c            op, root
//   chipmesh_alltoall       in: n * c,   out: n * c        -
//   chipmesh_barrier        none                           none
//
// n is the communicator's size, c the count per rank (elements, any value
// from 0), op the kernels' op number (0 sum, 1 max, 2 min, 3 prod). Buffers lie
// in the rank's window, aligned to the element size, at any offset: every
// rank publishes its offsets and peers read them. in == out is in place; so
// are allgather's in == out + rank * c and reduce_scatter's out == in + rank
// * c (the NCCL forms); any other overlap is an error. Broadcast reads `in`
// on the root only, reduce writes `out` on the root only (the others are not
// checked).
//
// Data moves by pull: after the opening barrier (every input is written) a
// rank reads its peers' windows and writes only its own buffers; a closing
// barrier keeps every input and output stable until no peer reads it.
// Small calls (what peers read of a rank's input fits kCollSlotBytes) take
// no barrier: each rank copies that part of its input into a slot of its
// scratch, publishes its descriptor and waits for every peer's; the bodies
// then read the peers' slots (run_collective).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "chipmesh/kernel.h"
#include "reduce_ops.h"

namespace chipmesh::kernels {

// Scratch lines (allreduce.h has 2..5).
inline constexpr uint32_t kCollCounterLine = 6;  // calls made by this rank (its own use)
inline constexpr uint32_t kCollDescLine0 = 7;    // call descriptors, two slots used by call parity
// The staged broadcast's root: pieces of its input in its staging area so
// far (only grows; broadcast.cpp).
inline constexpr uint32_t kBroadcastProgressLine = kCollDescLine0 + 2;
inline constexpr uint32_t kLastCollLine = kBroadcastProgressLine;
// Small calls (run_collective): every rank copies what its peers read of
// its input into slot call_no % 2 of kCollSlotLines lines, after
// allreduce's slots (allreduce.h), and no barrier is taken.
inline constexpr uint32_t kCollSlotLine0 = 48;
inline constexpr uint32_t kCollSlotLines = 8;
inline constexpr uint64_t kCollSlotBytes = uint64_t{kCollSlotLines} * CHIPMESH_FLAG_BYTES;  // 512 B
static_assert(kCollSlotLine0 + 2 * kCollSlotLines <= CHIPMESH_FIRST_USER_FLAG, "the slots stay in the reserved lines");

enum class Kind : uint32_t { kAllgather = 1, kReduceScatter, kBroadcast, kReduce, kAlltoall, kBarrier };

const char* kind_name(Kind k);

// Storage size of any chipmesh::DataType (the library links nothing of
// chipmesh, so not dtype_size), 0 outside the enum.
size_t any_dtype_size(uint32_t dtype);

// What a rank publishes about its call. Slot k % 2 of call k is rewritten by
// call k + 2, which the rank cannot begin before every peer has entered call
// k + 1, i.e. finished reading this one (as for allreduce's CallDesc).
// `entered` reaches the call's number once the rest is written (release):
// what a peer on the small path waits for.
struct CollDesc {
  device::Flag entered;
  std::atomic<int32_t> cpu;  // where the rank published from, plus one (flag_wait_ge's peer_cpu)
  std::atomic<uint64_t> count;
  std::atomic<uint64_t> in_off;   // UINT64_MAX when unused on this rank
  std::atomic<uint64_t> out_off;  // UINT64_MAX when unused on this rank
  std::atomic<uint32_t> kind;
  std::atomic<uint32_t> dtype;
  std::atomic<uint32_t> op;
  std::atomic<uint32_t> root;
  std::atomic<uint32_t> call_no;
};
static_assert(sizeof(CollDesc) <= CHIPMESH_FLAG_BYTES, "a call descriptor fits its line");

inline constexpr uint64_t kUnused = UINT64_MAX;

// One chunk of a staged collective in the user's memory (kernels/staged.cpp):
// `in` and `out` point at the chunk in block 0 of the user's input and
// output, block b lies `stride` bytes further on (the whole count per block);
// `stream`: streaming stores into `out` (the whole call outgrows the cache,
// not just this chunk). `out` null: not staged.
struct UserBuffers {
  const char* in = nullptr;
  char* out = nullptr;
  uint64_t stride = 0;
  bool stream = false;
};

// One checked call on this rank.
struct CollCall {
  const chipmesh_kernel_args* args = nullptr;
  const CommContext* ctx = nullptr;
  Kind kind = Kind::kBarrier;
  uint32_t rank = 0;
  uint32_t nranks = 1;
  uint32_t dtype = 0;
  uint32_t op = 0;    // reducing kinds only
  uint32_t root = 0;  // broadcast, reduce
  size_t es = 1;      // element size
  uint64_t count = 0; // per rank (c above)
  uint64_t in_off = kUnused;
  uint64_t out_off = kUnused;
  uint32_t call_no = 0;
  // Every rank's offsets, read from the descriptors by open_call.
  uint64_t peer_in[CHIPMESH_MAX_RANKS] = {};
  uint64_t peer_out[CHIPMESH_MAX_RANKS] = {};
  // The staged form (staged_chunk below): the user's buffers, which this
  // rank reads and writes in place of its own part of the staging area.
  UserBuffers user;

  uint64_t bytes() const { return count * es; }
  char* local(uint64_t off) const { return reinterpret_cast<char*>(ctx->windowsIn[rank] + off); }
  const char* peer(uint32_t r, uint64_t off) const { return reinterpret_cast<const char*>(ctx->windowsIn[r] + off); }
  char* peer_mut(uint32_t r, uint64_t off) const { return reinterpret_cast<char*>(ctx->windowsIn[r] + off); }
  // Whether any rank (from the descriptors) calls with in == out.
  bool any_rank_in_place() const {
    for (uint32_t r = 0; r < nranks; ++r)
      if (peer_in[r] != kUnused && peer_in[r] == peer_out[r]) return true;
    return false;
  }
};

// Checks the arguments of a `kind` call; 0 or CHIPMESH_ERR_CONFIG with a
// message "<kind>: ...".
int parse_call(const chipmesh_kernel_args* args, Kind kind, CollCall* call);

// Numbers and publishes the call, passes a barrier (every input is written),
// checks that every rank made the same call and reads the peers' offsets.
// On a disagreement every rank reaches the same verdict, passes one more
// barrier and returns CHIPMESH_ERR_CONFIG.
int open_call(CollCall& c);

// The whole kernel: parse, nothing for count 0 (except the barrier), open,
// run `body`, closing barrier; or, for a small call that is not staged, the
// slots (no barrier). `user`: CollCall's.
int run_collective(const chipmesh_kernel_args* args, Kind kind, int (*body)(CollCall&),
                   const UserBuffers& user = {});

// One chunk of a staged collective (kernels/staged.cpp). `args` is the call
// on the staging area (the NCCL in-place forms; in == out for broadcast), of
// which every rank's input is read by peers as usual; but this rank reads
// its own part of the input from `user.in` and writes its whole output
// straight to `user.out`, so only the blocks peers read are copied in and
// nothing is copied out. All ranks of the call must use it. Broadcast's
// root copies its input into its area itself, by pieces once the call has
// opened, and the peers copy each piece out as soon as it lands.
int allgather_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user);
int reduce_scatter_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user);
int broadcast_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user);
int alltoall_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user);
// Reduce: the root's output is written directly only in the root's own
// slice (reduce_slice_of); the peers still write theirs into the root's
// area, which the root copies out after the call.
int reduce_staged_chunk(const chipmesh_kernel_args* args, const UserBuffers& user);

// The slice of a reduce of `count` elements of `es` bytes that `rank` folds
// (elements [begin, begin + size)): one of n cache-line-aligned slices, or
// below 64 KiB everything on the root and nothing elsewhere.
Range reduce_slice_of(uint64_t count, size_t es, uint32_t nranks, uint32_t rank, uint32_t root);

}  // namespace chipmesh::kernels

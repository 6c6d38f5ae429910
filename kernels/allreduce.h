// Internal interface between the allreduce entry point (argument checking,
// dispatch) and its three algorithms, one per file.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "chipmesh/kernel.h"  // and kernel_device.h

namespace chipmesh::kernels {

// Scratch lines of the built-in collectives (indices 2..63 are reserved for
// them; 0 and 1 belong to device::barrier).
inline constexpr uint32_t kRingProgressFlag = 2;  // ring: units completed, only grows; read by neighbours
inline constexpr uint32_t kCallCounterLine = 3;   // allreduce calls made by this rank (its own use)
inline constexpr uint32_t kCallDescLine0 = 4;     // call descriptors, two slots used by call parity
inline constexpr uint32_t kLastCollectiveLine = kCallDescLine0 + 1;
// onephase's input slots (allreduce_onephase.cpp): two of kSlotLines lines,
// used by call parity, after the lines of the other collectives (collective.h).
inline constexpr uint32_t kSlotLine0 = 16;
inline constexpr uint32_t kSlotLines = 16;
inline constexpr uint64_t kSlotBytes = uint64_t{kSlotLines} * CHIPMESH_FLAG_BYTES;  // 1 KiB
static_assert(kSlotLine0 + 2 * kSlotLines <= CHIPMESH_FIRST_USER_FLAG, "the slots stay in the reserved lines");

enum class Mode : uint32_t { kOnePhase = 0, kTwoPhase = 1, kRing = 2 };

// One validated allreduce call on this rank.
struct AllreduceCall {
  const chipmesh_kernel_args* args;
  const CommContext* ctx;
  uint32_t rank;
  uint32_t nranks;
  uint32_t dtype;     // a chipmesh::DataType value (reduce_dtype_size != 0)
  uint32_t op;        // 0 sum, 1 max, 2 min, 3 prod
  Mode mode;
  size_t elem_size;
  uint64_t count;     // elements (> 0)
  uint64_t in_off;    // offsets inside the window, identical on every rank
  uint64_t out_off;
  uint32_t call_no = 0;   // this rank's allreduce call number (set by begin_call)
  uint32_t ring_seq = 0;  // ring: the progress value that means "entered"; 0 otherwise
  // The staged form (allreduce_staged_chunk): where this rank's input and
  // output lie outside the window, element 0 of the call. twophase, in place
  // in the window, then reads and writes this rank's own chunk there.
  const char* user_in = nullptr;
  char* user_out = nullptr;
};

// What a rank publishes about a call so peers can check that they agree,
// on one line: `entered` reaches the call's number once the rest is written
// (release), and onephase's input of up to kInlineBytes rides along, so a
// small allreduce costs a peer one line. Call k uses slot k % 2 of the
// rank's two descriptor lines: a slot is rewritten two calls later, when
// every peer has finished reading it (a peer reads rank r's descriptor
// before it can complete the call, and rank r cannot complete the next call
// before that peer has entered it). So a peer never reads a torn or a later
// descriptor, also after a failed call.
inline constexpr size_t kInlineBytes = 16;
struct CallDesc {
  device::Flag entered;             // the call number, when published
  std::atomic<int32_t> cpu;         // where the rank published from, plus one (flag_wait_ge's peer_cpu)
  std::atomic<uint32_t> kind;       // dtype | mode << 8 | op << 16
  std::atomic<uint32_t> ring_seq;
  uint32_t unused;
  std::atomic<uint64_t> count;
  std::atomic<uint64_t> in_off;
  std::atomic<uint64_t> out_off;
  unsigned char inline_input[kInlineBytes];  // onephase, up to kInlineBytes
};
static_assert(sizeof(CallDesc) == CHIPMESH_FLAG_BYTES, "a call descriptor fills its line");

// Rank `rank`'s descriptor line of call `call_no`.
CallDesc* call_desc(const CommContext* ctx, uint32_t rank, uint32_t call_no);
// The number this rank's next call gets (begin_call gives it).
uint32_t next_call_no(const AllreduceCall& c);

// Numbers this call (every rank numbers its calls alike) and publishes its
// descriptor (everything written before it included).
void begin_call(AllreduceCall& c);
// 0 when rank `peer` published the same call as this one; otherwise records a
// CHIPMESH_ERR_CONFIG message naming both and returns it.
int check_call_desc(const AllreduceCall& c, uint32_t peer);
// Opening of the barrier-based modes: begin the call, barrier (every input is
// written), check every rank's call against this one. On a disagreement
// every rank reaches the same verdict, passes one more barrier (so barriers
// stay paired and the communicator stays usable) and returns
// CHIPMESH_ERR_CONFIG.
int open_barrier_call(AllreduceCall& c);
// Opening without a barrier (onephase through the slots): begin the call,
// then wait for every peer's descriptor of it and check it. On a
// disagreement, two barriers (those a barrier-based rank passes on one)
// and CHIPMESH_ERR_CONFIG.
int open_call_await_peers(AllreduceCall& c);

template <typename T>
inline T* local_at(const AllreduceCall& c, uint64_t off) {
  return reinterpret_cast<T*>(c.ctx->windowsIn[c.rank] + off);
}
template <typename T>
inline T* peer_at(const AllreduceCall& c, uint32_t rank, uint64_t off) {
  return reinterpret_cast<T*>(c.ctx->windowsIn[rank] + off);
}

// The staged allreduce (staged.cpp) of one chunk, in place in the staging
// area: whether it runs as twophase, which then takes this rank's own chunk
// (chunk_of(count, nranks, rank)) straight from the user's input and writes
// it straight to the user's output, so the staged copies skip that chunk.
bool staged_allreduce_skips_own_chunk(const CommContext* ctx, uint64_t mode, uint64_t nbytes);
// chipmesh_allreduce on `args` (in place in the window) with the user's
// buffers for this rank's own chunk; only where
// staged_allreduce_skips_own_chunk says so.
int allreduce_staged_chunk(const chipmesh_kernel_args* args, const char* user_in, char* user_out);

// Whether onephase runs through the slots (one barrier; in place allowed).
bool onephase_uses_slots(const CommContext* ctx, uint64_t nbytes);
int allreduce_onephase(AllreduceCall& c);
int allreduce_twophase(AllreduceCall& c);
int allreduce_ring(AllreduceCall& c);

}  // namespace chipmesh::kernels

// chipmesh_staged: a built-in collective on data outside the window (any
// device memory of the chip), moved through a staging area of the window
// in chunks. The Orchestrator picks it when an input or output does not lie
// in the window; the data never has to fit the window (a 1 GiB allreduce
// goes through a 4 MiB one).
//
//   tensors  in, out: as for the collective itself (user addresses)
//   scalars  0: collective (0 allreduce, else kernels::Kind: 1 allgather,
//               2 reduce_scatter, 3 broadcast, 4 reduce, 5 alltoall)
//            1: staging offset in the window (the same on every rank)
//            2: chunk, elements per block (> 0; the same on every rank)
//            3...: the collective's own scalars
//
// Per chunk of `chunk` elements of every block: copy this rank's input
// blocks into the staging area, run the collective there in place (the
// NCCL forms for allgather and reduce_scatter, so the area holds max(in, out)
// blocks of one chunk), copy the output blocks out. The collective's closing
// barrier keeps every staging area stable until no peer reads it, so the
// next chunk can reuse it. Broadcast's root copies in by pieces inside the
// call, so its peers read while it copies; reduce copies out on the root
// only. An allreduce that runs as twophase copies
// neither way the part of the chunk this rank reduces: twophase reads it
// from the user's input and writes it to the user's output
// (allreduce_staged_chunk); on 2 ranks that halves the copies. Allgather,
// reduce_scatter, broadcast and alltoall copy in only what peers read (all
// but this rank's own block, of an input of n blocks) and nothing out: they
// read the peers' areas and this rank's own input and write straight into
// the user's output (the *_staged_chunk forms, collective.h). Reduce keeps
// each rank's own slice in the user's buffers: it is not copied in, and the
// root folds its slice straight into its output and copies out only the
// slices its peers wrote into its area. A chip runs one thread, so the
// copies do not overlap the collective here; a platform with copy engines
// would double the area and copy chunk k + 1 while chunk k reduces.
#include <algorithm>
#include <cstdint>

#include "allreduce.h"
#include "chipmesh/collectives.h"
#include "collective.h"
#include "sliced.h"
#include "tensor_shape.h"

extern "C" {
int chipmesh_allreduce(const chipmesh_kernel_args* args);
int chipmesh_allgather(const chipmesh_kernel_args* args);
int chipmesh_reduce_scatter(const chipmesh_kernel_args* args);
int chipmesh_broadcast(const chipmesh_kernel_args* args);
int chipmesh_reduce(const chipmesh_kernel_args* args);
int chipmesh_alltoall(const chipmesh_kernel_args* args);
}

namespace chipmesh::kernels {
namespace {

static_assert(staged_kernel::kAllgather == static_cast<uint64_t>(Kind::kAllgather) &&
                  staged_kernel::kReduceScatter == static_cast<uint64_t>(Kind::kReduceScatter) &&
                  staged_kernel::kBroadcast == static_cast<uint64_t>(Kind::kBroadcast) &&
                  staged_kernel::kReduce == static_cast<uint64_t>(Kind::kReduce) &&
                  staged_kernel::kAlltoall == static_cast<uint64_t>(Kind::kAlltoall) && staged_kernel::kAllreduce == 0,
              "the staged kernel's collective numbers are the kernels' Kind values");

using device::fail;
using ull = unsigned long long;

struct Inner {
  const char* name;
  chipmesh_kernel_entry entry;
  bool in_n, out_n;  // the input / output holds one block per rank
  // The form that reads this rank's own input from, and writes its output
  // straight to, the user's buffers (collective.h); null: none.
  int (*direct)(const chipmesh_kernel_args*, const UserBuffers&) = nullptr;
};

bool inner_of(uint64_t kind, Inner* out) {
  switch (kind) {
    case 0: *out = {"allreduce", chipmesh_allreduce, false, false}; return true;
    case static_cast<uint64_t>(Kind::kAllgather):
      *out = {"allgather", chipmesh_allgather, false, true, allgather_staged_chunk};
      return true;
    case static_cast<uint64_t>(Kind::kReduceScatter):
      *out = {"reduce_scatter", chipmesh_reduce_scatter, true, false, reduce_scatter_staged_chunk};
      return true;
    case static_cast<uint64_t>(Kind::kBroadcast):
      *out = {"broadcast", chipmesh_broadcast, false, false, broadcast_staged_chunk};
      return true;
    case static_cast<uint64_t>(Kind::kReduce):
      *out = {"reduce", chipmesh_reduce, false, false, reduce_staged_chunk};
      return true;
    case static_cast<uint64_t>(Kind::kAlltoall):
      *out = {"alltoall", chipmesh_alltoall, true, true, alltoall_staged_chunk};
      return true;
    default: return false;
  }
}

}  // namespace
}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_staged) {
  using namespace chipmesh::kernels;
  if (!args) return CHIPMESH_ERR_CONFIG;
  const CommContext* ctx = args->comm;
  if (!ctx) return fail(args, CHIPMESH_ERR_CONFIG, "staged: this chip has no communicator");
  if (!args->tensors || args->num_tensors != 2)
    return fail(args, CHIPMESH_ERR_CONFIG, "staged: expects 2 tensors (input, output), got %u",
                args->tensors ? args->num_tensors : 0u);
  if (!args->scalars || args->num_scalars < 3)
    return fail(args, CHIPMESH_ERR_CONFIG, "staged: expects at least 3 scalars (collective, offset, chunk), got %u",
                args->scalars ? args->num_scalars : 0u);
  Inner inner{};
  if (!inner_of(args->scalars[0], &inner))
    return fail(args, CHIPMESH_ERR_CONFIG, "staged: collective %llu is not 0..5",
                static_cast<ull>(args->scalars[0]));
  const uint64_t stage_off = args->scalars[1];
  const uint64_t chunk = args->scalars[2];
  const chipmesh_tensor& in = args->tensors[0];
  const chipmesh_tensor& out = args->tensors[1];
  const uint32_t rank = ctx->rankId, n = ctx->rankNum;
  if (n < 1 || n > CHIPMESH_MAX_RANKS || rank >= n)
    return fail(args, CHIPMESH_ERR_CONFIG, "staged %s: bad communicator context (rank %u of %u)", inner.name, rank, n);
  const size_t es = any_dtype_size(in.dtype);
  uint64_t n_in = 0, n_out = 0;
  if (es == 0 || out.dtype != in.dtype || !checked_count(in, &n_in) || !checked_count(out, &n_out))
    return fail(args, CHIPMESH_ERR_CONFIG, "staged %s: bad tensors (dtypes %u and %u, or shapes)", inner.name,
                in.dtype, out.dtype);
  const uint64_t in_blocks = inner.in_n ? n : 1, out_blocks = inner.out_n ? n : 1;
  const uint64_t count = n_in / in_blocks;  // per block
  if (n_in != count * in_blocks || n_out != count * out_blocks)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "staged %s: element counts input %llu, output %llu do not fit %llu ranks", inner.name,
                static_cast<ull>(n_in), static_cast<ull>(n_out), static_cast<ull>(n));
  if (count == 0) return 0;  // as the collectives: nothing moves, no rank touches a peer
  const uint64_t blocks = std::max(in_blocks, out_blocks);
  uint64_t area = 0;
  if (chunk == 0 || __builtin_mul_overflow(chunk * es, blocks, &area) ||
      chipmesh::device::window_offset(ctx, ctx->windowsIn[rank] + stage_off, area) == UINT64_MAX)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "staged %s: chunk %llu x %llu blocks x %zu bytes at window offset %llu does not fit the window of "
                "%llu bytes",
                inner.name, static_cast<ull>(chunk), static_cast<ull>(blocks), es, static_cast<ull>(stage_off),
                static_cast<ull>(ctx->winSize));

  // Reduce's root (scalar 4); a missing one reads as
  // UINT64_MAX here and fails in the collective's own checks.
  auto scalar = [&](uint32_t i) { return i < args->num_scalars ? args->scalars[i] : UINT64_MAX; };
  // Broadcast's root copies in itself, by pieces, once the call has opened.
  const bool copy_in = args->scalars[0] != static_cast<uint64_t>(Kind::kBroadcast);
  const bool is_reduce = args->scalars[0] == static_cast<uint64_t>(Kind::kReduce);
  const uint64_t reduce_root = scalar(4);
  const bool copy_out = !(is_reduce && rank != reduce_root);  // reduce: root only
  char* stage = reinterpret_cast<char*>(ctx->windowsIn[rank] + stage_off);
  const char* user_in = reinterpret_cast<const char*>(in.addr);
  char* user_out = reinterpret_cast<char*>(out.addr);

  // The results leave the window for memory nobody reads in this call:
  // streamed when the whole call outgrows the cache. The copies in stay
  // plain (peers read the area next).
  const bool stream_out = chipmesh::stream_stores_pay((n_in + n_out) * es);

  chipmesh_kernel_args a = *args;
  a.scalars = args->scalars + 3;
  a.num_scalars = args->num_scalars - 3;
  chipmesh_tensor t[2] = {in, out};
  a.tensors = t;
  for (uint64_t i = 0; i < count; i += chunk) {
    const uint64_t k = std::min(chunk, count - i);
    const uint64_t kb = k * es;
    // In the area: block b at b * kb; the NCCL in-place forms put this
    // rank's single block at its own place among the n.
    char* own = stage + (inner.out_n || inner.in_n ? rank * kb : 0);
    char* in_at = inner.in_n ? stage : own;
    char* out_at = inner.out_n ? stage : own;
    // An allreduce that runs as twophase reads and writes this rank's own
    // chunk in the user's buffers: that part is neither copied in nor out.
    const bool skip_own = args->scalars[0] == 0 && a.num_scalars >= 1 &&
                          staged_allreduce_skips_own_chunk(ctx, a.scalars[0], kb);
    // A reduce keeps this rank's own slice in the user's buffers likewise.
    Range mine{0, 0};
    if (skip_own)
      mine = chunk_of(k, n, rank);
    else if (is_reduce && reduce_root < n)
      mine = reduce_slice_of(k, es, n, rank, static_cast<uint32_t>(reduce_root));
    const uint64_t skip_from = mine.begin * es, skip_to = (mine.begin + mine.size) * es;
    // Bytes [0, kb) of one block, less [skip_from, skip_to).
    auto copy_block = [&](char* dst, const char* src, bool stream) {
      if (int rc = copy_sliced(args, dst, src, skip_from, stream)) return rc;
      return copy_sliced(args, dst + skip_to, src + skip_to, kb - skip_to, stream);
    };
    // The direct forms read this rank's own block of an input of n blocks
    // from the user's input: no peer reads it in the area.
    if (copy_in)
      for (uint64_t b = 0; b < in_blocks; ++b)
        if (!(inner.direct && inner.in_n && b == rank))
          if (int rc = copy_block(in_at + b * kb, user_in + (b * count + i) * es, false)) return rc;
    t[0].addr = reinterpret_cast<uint64_t>(in_at);
    t[1].addr = reinterpret_cast<uint64_t>(out_at);
    t[0].ndim = t[1].ndim = 1;
    t[0].shape[0] = k * in_blocks;
    t[1].shape[0] = k * out_blocks;
    int rc = 0;
    if (skip_own)
      rc = allreduce_staged_chunk(&a, user_in + i * es, user_out + i * es);
    else if (inner.direct)
      rc = inner.direct(&a, UserBuffers{user_in + i * es, user_out + i * es, count * es, stream_out});
    else
      rc = inner.entry(&a);
    if (rc) return rc;
    // The direct forms leave nothing in the area but reduce: its peers write
    // their slices into the root's.
    if (copy_out && (!inner.direct || is_reduce))
      for (uint64_t b = 0; b < out_blocks; ++b)
        if (int rc = copy_block(user_out + (b * count + i) * es, out_at + b * kb, stream_out)) return rc;
  }
  return 0;
}

// chipmesh_allreduce: argument checking and dispatch on the mode.
//
//   tensors[0] input, tensors[1] output: same dtype (float32, float16,
//   bfloat16, float64, int8, uint8, int32, int64) and element count, both
//   inside this rank's window, aligned to the element size, either the same
//   buffer (in place) or not overlapping; every rank passes buffers at the
//   same window offsets (buffers are carved identically on every rank).
//   scalars[0] mode: 0 onephase, 1 twophase, 2 ring.
//   scalars[1] op:   0 sum, 1 max, 2 min, 3 prod.
//   In place, onephase runs as twophase above 1 KiB (onephase would overwrite
//   an input a peer still reads; twophase folds in the same rank order, so
//   the result is the same bit for bit); up to 1 KiB it reads copies of the
//   inputs (allreduce_onephase.cpp).
//   (chipmesh/collectives.h: allreduce_kernel::kMode*, kOp*, allreduce_task)
//
// When the kernel returns on a rank, no peer reads that rank's input or
// output any more: both may be reused at once.
#include "allreduce.h"
#include "await_peers.h"
#include "tensor_shape.h"

#include <cstdio>
#include <cstring>

#include "chipmesh/collectives.h"
#include "chipmesh/kernel.h"
#include "chipmesh/types.h"
#include "reduce_ops.h"

namespace chipmesh::kernels {
namespace {

using device::fail;

const char* dtype_label(uint32_t dtype) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::FLOAT32: return "float32";
    case DataType::FLOAT16: return "float16";
    case DataType::BFLOAT16: return "bfloat16";
    case DataType::INT32: return "int32";
    case DataType::INT8: return "int8";
    case DataType::UINT8: return "uint8";
    case DataType::INT64: return "int64";
    case DataType::FLOAT64: return "float64";
    default: return "unsupported";
  }
}

// The mode a call runs in: in place beyond the slots, onephase runs as
// twophase (same fold order, so the same bits).
Mode resolved_mode(const CommContext* ctx, uint64_t mode, bool in_place, uint64_t nbytes) {
  if (in_place && mode == allreduce_kernel::kModeOnePhase && !onephase_uses_slots(ctx, nbytes)) return Mode::kTwoPhase;
  return static_cast<Mode>(mode);
}

int validate(const chipmesh_kernel_args* args, AllreduceCall* call) {
  if (args->abi_version != CHIPMESH_KERNEL_ABI_VERSION)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: kernel ABI version %u, expected %u", args->abi_version,
                CHIPMESH_KERNEL_ABI_VERSION);
  const CommContext* ctx = args->comm;
  if (!ctx) return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: this chip has no communicator");
  if (ctx->rankNum < 1 || ctx->rankNum > CHIPMESH_MAX_RANKS || ctx->rankId >= ctx->rankNum)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: bad communicator context (rank %u of %u)", ctx->rankId,
                ctx->rankNum);
  if (!device::flag_fits(ctx, kLastCollectiveLine))
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: workSpace of %llu bytes is too small (needs %llu)",
                static_cast<unsigned long long>(ctx->workSpaceSize),
                static_cast<unsigned long long>(device::flag_bytes_needed(kLastCollectiveLine)));
  if (args->num_tensors != 2 || !args->tensors)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: expects 2 tensors (input, output), got %u",
                args->tensors ? args->num_tensors : 0u);
  if (args->num_scalars != 2 || !args->scalars)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: expects 2 scalars (mode, op), got %u",
                args->scalars ? args->num_scalars : 0u);

  const chipmesh_tensor& in = args->tensors[0];
  const chipmesh_tensor& out = args->tensors[1];
  const uint64_t mode = args->scalars[0];
  const uint64_t op = args->scalars[1];
  if (mode > allreduce_kernel::kModeRing)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: mode %llu is not 0 (onephase), 1 (twophase) or 2 (ring)",
                static_cast<unsigned long long>(mode));
  if (op > allreduce_kernel::kOpProd)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: op %llu is not 0 (sum), 1 (max), 2 (min) or 3 (prod)",
                static_cast<unsigned long long>(op));

  const size_t esize = reduce_dtype_size(in.dtype);
  if (esize == 0)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "allreduce: input dtype %u is not supported (float32, float16, bfloat16, float64, int8, uint8, int32 "
                "or int64)",
                in.dtype);
  if (out.dtype != in.dtype)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: dtype mismatch: input %s (%u), output %s (%u)",
                dtype_label(in.dtype), in.dtype, dtype_label(out.dtype), out.dtype);

  uint64_t n_in = 0, n_out = 0;
  if (!checked_count(in, &n_in))
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: input shape is invalid (ndim %u, max %d, or overflow)",
                in.ndim, CHIPMESH_KERNEL_MAX_DIMS);
  if (!checked_count(out, &n_out))
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: output shape is invalid (ndim %u, max %d, or overflow)",
                out.ndim, CHIPMESH_KERNEL_MAX_DIMS);
  if (n_in != n_out)
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: element count mismatch: input %llu, output %llu",
                static_cast<unsigned long long>(n_in), static_cast<unsigned long long>(n_out));
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(n_in, esize, &nbytes))
    return fail(args, CHIPMESH_ERR_CONFIG, "allreduce: %llu elements overflow the address space",
                static_cast<unsigned long long>(n_in));

  const uint64_t in_off = device::window_offset(ctx, in.addr, nbytes);
  if (in_off == UINT64_MAX)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "allreduce: input [0x%llx, +%llu bytes) is not inside this rank's window [0x%llx, +%llu bytes)",
                static_cast<unsigned long long>(in.addr), static_cast<unsigned long long>(nbytes),
                static_cast<unsigned long long>(ctx->windowsIn[ctx->rankId]),
                static_cast<unsigned long long>(ctx->winSize));
  const uint64_t out_off = device::window_offset(ctx, out.addr, nbytes);
  if (out_off == UINT64_MAX)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "allreduce: output [0x%llx, +%llu bytes) is not inside this rank's window [0x%llx, +%llu bytes)",
                static_cast<unsigned long long>(out.addr), static_cast<unsigned long long>(nbytes),
                static_cast<unsigned long long>(ctx->windowsIn[ctx->rankId]),
                static_cast<unsigned long long>(ctx->winSize));
  if (in.addr % esize != 0 || out.addr % esize != 0)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "allreduce: input 0x%llx and output 0x%llx must be aligned to the %zu-byte element size",
                static_cast<unsigned long long>(in.addr), static_cast<unsigned long long>(out.addr), esize);
  if (nbytes > 0 && in_off != out_off && in_off < out_off + nbytes && out_off < in_off + nbytes)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "allreduce: input (window offset %llu) and output (window offset %llu) overlap (%llu bytes each) "
                "and are not the same buffer",
                static_cast<unsigned long long>(in_off), static_cast<unsigned long long>(out_off),
                static_cast<unsigned long long>(nbytes));

  *call = AllreduceCall{args,
                        ctx,
                        ctx->rankId,
                        ctx->rankNum,
                        in.dtype,
                        static_cast<uint32_t>(op),
                        resolved_mode(ctx, mode, in_off == out_off, nbytes),
                        esize,
                        n_in,
                        in_off,
                        out_off};
  return 0;
}

}  // namespace

namespace {

uint32_t pack_kind(uint32_t dtype, Mode mode, uint32_t op) {
  return dtype | static_cast<uint32_t>(mode) << 8 | op << 16;
}

}  // namespace

CallDesc* call_desc(const CommContext* ctx, uint32_t rank, uint32_t call_no) {
  return reinterpret_cast<CallDesc*>(device::flag(ctx, static_cast<int>(rank), kCallDescLine0 + call_no % 2));
}

uint32_t next_call_no(const AllreduceCall& c) {
  return device::flag(c.ctx, static_cast<int>(c.rank), kCallCounterLine)->value.load(std::memory_order_relaxed) + 1;
}

namespace {

// begin_call's body; `publish` sets the descriptor's flag. Returns the CPU
// it published, plus one.
template <typename Publish>
int32_t begin_call_with(AllreduceCall& c, Publish&& publish) {
  device::Flag* counter = device::flag(c.ctx, static_cast<int>(c.rank), kCallCounterLine);
  c.call_no = next_call_no(c);
  counter->value.store(c.call_no, std::memory_order_relaxed);
  CallDesc* d = call_desc(c.ctx, c.rank, c.call_no);
  const int32_t here = sched_getcpu() + 1;
  d->cpu.store(here, std::memory_order_relaxed);
  d->kind.store(pack_kind(c.dtype, c.mode, c.op), std::memory_order_relaxed);
  d->ring_seq.store(c.ring_seq, std::memory_order_relaxed);
  d->count.store(c.count, std::memory_order_relaxed);
  d->in_off.store(c.in_off, std::memory_order_relaxed);
  d->out_off.store(c.out_off, std::memory_order_relaxed);
  publish(&d->entered, c.call_no);
  return here;
}

}  // namespace

void begin_call(AllreduceCall& c) { begin_call_with(c, device::flag_set); }

int check_call_desc(const AllreduceCall& c, uint32_t peer) {
  const CallDesc* d = call_desc(c.ctx, peer, c.call_no);
  const uint32_t call_no = d->entered.value.load(std::memory_order_acquire);
  const uint64_t count = d->count.load(std::memory_order_relaxed);
  const uint64_t in_off = d->in_off.load(std::memory_order_relaxed);
  const uint64_t out_off = d->out_off.load(std::memory_order_relaxed);
  const uint32_t kind = d->kind.load(std::memory_order_relaxed);
  const uint32_t ring_seq = d->ring_seq.load(std::memory_order_relaxed);
  if (count == c.count && in_off == c.in_off && out_off == c.out_off && kind == pack_kind(c.dtype, c.mode, c.op) &&
      call_no == c.call_no && ring_seq == c.ring_seq)
    return 0;
  const uint32_t dtype = kind & 0xff, mode = kind >> 8 & 0xff, op = kind >> 16 & 0xff;
  return fail(c.args, CHIPMESH_ERR_CONFIG,
              "allreduce: ranks disagree: rank %u called count=%llu dtype=%s mode=%s op=%u in@%llu out@%llu "
              "(call %u, seq %u), rank %u called count=%llu dtype=%s mode=%s op=%u in@%llu out@%llu (call %u, seq %u)",
              c.rank, static_cast<unsigned long long>(c.count), dtype_label(c.dtype),
              allreduce_kernel::mode_name(static_cast<uint32_t>(c.mode)).data(), c.op, static_cast<unsigned long long>(c.in_off),
              static_cast<unsigned long long>(c.out_off), c.call_no, c.ring_seq, peer,
              static_cast<unsigned long long>(count), dtype_label(dtype), allreduce_kernel::mode_name(mode).data(), op,
              static_cast<unsigned long long>(in_off), static_cast<unsigned long long>(out_off), call_no, ring_seq);
}

namespace {

// The disagreement check_call_desc recorded in the kernel's error buffer,
// copied before the barriers that follow it.
void copy_recorded(const AllreduceCall& c, char (&message)[CHIPMESH_KERNEL_ERROR_SIZE]) {
  message[0] = '\0';
  if (c.args->error) std::snprintf(message, sizeof(message), "%s", c.args->error);
}

}  // namespace

int open_barrier_call(AllreduceCall& c) {
  begin_call(c);
  if (int rc = device::barrier(c.args)) return rc;
  for (uint32_t r = 0; r < c.nranks; ++r) {
    if (check_call_desc(c, r) == 0) continue;
    // Every rank reaches the same verdict: one more barrier keeps the
    // barriers paired, then the message check_call_desc recorded again.
    char message[CHIPMESH_KERNEL_ERROR_SIZE];
    copy_recorded(c, message);
    if (int brc = device::barrier(c.args)) return brc;
    return fail(c.args, CHIPMESH_ERR_CONFIG, "%s", message);
  }
  return 0;
}

int open_call_await_peers(AllreduceCall& c) {
  const int32_t here = begin_call_with(c, device::flag_publish);
  return await_agreeing_peers(
      c.args, c.call_no, here, &call_desc(c.ctx, c.rank, c.call_no)->entered,
      [&](uint32_t r) { return &call_desc(c.ctx, r, c.call_no)->entered; },
      [&](uint32_t r) { return &call_desc(c.ctx, r, c.call_no)->cpu; },
      [&](uint32_t r, char (&message)[CHIPMESH_KERNEL_ERROR_SIZE]) {
        if (check_call_desc(c, r) == 0) return true;
        copy_recorded(c, message);
        return false;
      });
}

bool staged_allreduce_skips_own_chunk(const CommContext* ctx, uint64_t mode, uint64_t nbytes) {
  return ctx->rankNum > 1 && mode <= allreduce_kernel::kModeRing &&
         resolved_mode(ctx, mode, /*in_place=*/true, nbytes) == Mode::kTwoPhase;
}

int allreduce_staged_chunk(const chipmesh_kernel_args* args, const char* user_in, char* user_out) {
  AllreduceCall call{};
  if (int rc = validate(args, &call)) return rc;
  if (call.count == 0) return 0;
  if (call.nranks == 1 || call.mode != Mode::kTwoPhase || call.in_off != call.out_off)
    return fail(args, CHIPMESH_ERR_INTERNAL, "staged allreduce: the chunk does not run as twophase in place");
  call.user_in = user_in;
  call.user_out = user_out;
  return allreduce_twophase(call);
}

}  // namespace chipmesh::kernels

CHIPMESH_KERNEL(chipmesh_allreduce) {
  using namespace chipmesh::kernels;
  if (!args) return CHIPMESH_ERR_CONFIG;
  AllreduceCall call{};
  if (int rc = validate(args, &call)) return rc;
  if (call.count == 0) return 0;  // nothing moves; no rank touches a peer
  if (call.nranks == 1) {
    if (call.in_off != call.out_off)
      std::memcpy(local_at<char>(call, call.out_off), local_at<const char>(call, call.in_off),
                call.count * call.elem_size);
    return 0;
  }
  switch (call.mode) {
    case Mode::kOnePhase: return allreduce_onephase(call);
    case Mode::kTwoPhase: return allreduce_twophase(call);
    case Mode::kRing: return allreduce_ring(call);
  }
  return chipmesh::device::fail(args, CHIPMESH_ERR_INTERNAL, "allreduce: unreachable mode");
}

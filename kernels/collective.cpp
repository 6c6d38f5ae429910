// Argument checking, call descriptors and the opening barrier shared by the
// built-in collectives (collective.h).
#include "collective.h"
#include "await_peers.h"
#include "tensor_shape.h"

#include <cstdio>
#include <cstring>

#include "chipmesh/types.h"
#include "reduce_ops.h"

namespace chipmesh::kernels {
namespace {

using device::fail;

struct Spec {
  uint32_t num_tensors;
  uint32_t num_scalars;
  bool reduces;       // scalar 0 is the op; dtype must be reducible
  int root_scalar;    // index of the root scalar, -1 without
  bool in_times_n;    // in holds nranks * count
  bool out_times_n;   // out holds nranks * count
  const char* scalars_doc;
};

Spec spec_of(Kind k) {
  switch (k) {
    case Kind::kAllgather: return {2, 0, false, -1, false, true, "none"};
    case Kind::kReduceScatter: return {2, 1, true, -1, true, false, "op"};
    case Kind::kBroadcast: return {2, 1, false, 0, false, false, "root"};
    case Kind::kReduce: return {2, 2, true, 1, false, false, "op, root"};
    case Kind::kAlltoall: return {2, 0, false, -1, true, true, "none"};
    case Kind::kBarrier: return {0, 0, false, -1, false, false, "none"};
  }
  return {0, 0, false, -1, false, false, "none"};
}


CollDesc* desc(const CommContext* ctx, uint32_t rank, uint32_t call_no) {
  return reinterpret_cast<CollDesc*>(device::flag(ctx, static_cast<int>(rank), kCollDescLine0 + call_no % 2));
}

using ull = unsigned long long;

}  // namespace

size_t any_dtype_size(uint32_t dtype) {
  switch (static_cast<DataType>(dtype)) {
    case DataType::INT8:
    case DataType::UINT8: return 1;
    case DataType::FLOAT16:
    case DataType::BFLOAT16:
    case DataType::INT16:
    case DataType::UINT16: return 2;
    case DataType::FLOAT32:
    case DataType::INT32:
    case DataType::UINT32: return 4;
    case DataType::INT64:
    case DataType::UINT64:
    case DataType::FLOAT64: return 8;
  }
  return 0;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kAllgather: return "allgather";
    case Kind::kReduceScatter: return "reduce_scatter";
    case Kind::kBroadcast: return "broadcast";
    case Kind::kReduce: return "reduce";
    case Kind::kAlltoall: return "alltoall";
    case Kind::kBarrier: return "barrier";
  }
  return "?";
}

int parse_call(const chipmesh_kernel_args* args, Kind kind, CollCall* call) {
  const char* name = kind_name(kind);
  if (args->abi_version != CHIPMESH_KERNEL_ABI_VERSION)
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: kernel ABI version %u, expected %u", name, args->abi_version,
                CHIPMESH_KERNEL_ABI_VERSION);
  const CommContext* ctx = args->comm;
  if (!ctx) return fail(args, CHIPMESH_ERR_CONFIG, "%s: this chip has no communicator", name);
  if (ctx->rankNum < 1 || ctx->rankNum > CHIPMESH_MAX_RANKS || ctx->rankId >= ctx->rankNum)
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: bad communicator context (rank %u of %u)", name, ctx->rankId,
                ctx->rankNum);
  if (!device::flag_fits(ctx, kLastCollLine))
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: workSpace of %llu bytes is too small (needs %llu)", name,
                static_cast<ull>(ctx->workSpaceSize), static_cast<ull>(device::flag_bytes_needed(kLastCollLine)));
  const Spec sp = spec_of(kind);
  const uint32_t nt = args->tensors ? args->num_tensors : 0u;
  const uint32_t ns = args->scalars ? args->num_scalars : 0u;
  if (nt != sp.num_tensors)
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: expects %u tensors%s, got %u", name, sp.num_tensors,
                sp.num_tensors ? " (input, output)" : "", nt);
  if (ns != sp.num_scalars)
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: expects %u scalars (%s), got %u", name, sp.num_scalars,
                sp.scalars_doc, ns);

  CollCall& c = *call;
  c = CollCall{};
  c.args = args;
  c.ctx = ctx;
  c.kind = kind;
  c.rank = ctx->rankId;
  c.nranks = ctx->rankNum;
  if (kind == Kind::kBarrier) return 0;

  if (sp.reduces) {
    const uint64_t op = args->scalars[0];
    if (op > kLastOpId)
      return fail(args, CHIPMESH_ERR_CONFIG, "%s: op %llu is not 0 (sum), 1 (max), 2 (min) or 3 (prod)", name,
                  static_cast<ull>(op));
    c.op = static_cast<uint32_t>(op);
  }
  if (sp.root_scalar >= 0) {
    const uint64_t root = args->scalars[sp.root_scalar];
    if (root >= c.nranks)
      return fail(args, CHIPMESH_ERR_CONFIG, "%s: root %llu is outside the communicator of %u ranks", name,
                  static_cast<ull>(root), c.nranks);
    c.root = static_cast<uint32_t>(root);
  }

  const chipmesh_tensor& in = args->tensors[0];
  const chipmesh_tensor& out = args->tensors[1];
  c.dtype = in.dtype;
  c.es = sp.reduces ? reduce_dtype_size(in.dtype) : any_dtype_size(in.dtype);
  if (c.es == 0)
    return fail(args, CHIPMESH_ERR_CONFIG,
                sp.reduces ? "%s: dtype %u is not supported (float32, float16, bfloat16, float64, int8, uint8, "
                             "int32 or int64)"
                           : "%s: dtype %u is not a chipmesh DataType",
                name, in.dtype);
  if (out.dtype != in.dtype)
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: dtype mismatch: input %u, output %u", name, in.dtype, out.dtype);
  uint64_t n_in = 0, n_out = 0;
  if (!checked_count(in, &n_in))
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: input shape is invalid (ndim %u, max %d, or overflow)", name,
                in.ndim, CHIPMESH_KERNEL_MAX_DIMS);
  if (!checked_count(out, &n_out))
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: output shape is invalid (ndim %u, max %d, or overflow)", name,
                out.ndim, CHIPMESH_KERNEL_MAX_DIMS);
  // The count per rank, from the tensor that holds one block.
  const uint64_t n = c.nranks;
  c.count = sp.in_times_n ? (sp.out_times_n ? n_in / n : n_out) : n_in;
  uint64_t want_in = 0, want_out = 0, bytes_in = 0, bytes_out = 0;
  if ((sp.in_times_n && sp.out_times_n && n_in % n != 0) ||
      __builtin_mul_overflow(c.count, sp.in_times_n ? n : 1, &want_in) ||
      __builtin_mul_overflow(c.count, sp.out_times_n ? n : 1, &want_out) || want_in != n_in || want_out != n_out)
    return fail(args, CHIPMESH_ERR_CONFIG,
                "%s: element counts input %llu, output %llu do not fit: expected input %s and output %s with "
                "%llu ranks",
                name, static_cast<ull>(n_in), static_cast<ull>(n_out), sp.in_times_n ? "n * count" : "count",
                sp.out_times_n ? "n * count" : "count", static_cast<ull>(n));
  if (__builtin_mul_overflow(n_in, c.es, &bytes_in) || __builtin_mul_overflow(n_out, c.es, &bytes_out))
    return fail(args, CHIPMESH_ERR_CONFIG, "%s: %llu elements overflow the address space", name,
                static_cast<ull>(n_in > n_out ? n_in : n_out));

  const bool in_used = !(kind == Kind::kBroadcast && c.rank != c.root);
  const bool out_used = !(kind == Kind::kReduce && c.rank != c.root);
  if (in_used) {
    c.in_off = device::window_offset(ctx, in.addr, bytes_in);
    if (c.in_off == kUnused)
      return fail(args, CHIPMESH_ERR_CONFIG,
                  "%s: input [0x%llx, +%llu bytes) is not inside this rank's window [0x%llx, +%llu bytes)", name,
                  static_cast<ull>(in.addr), static_cast<ull>(bytes_in), static_cast<ull>(ctx->windowsIn[c.rank]),
                  static_cast<ull>(ctx->winSize));
    if (in.addr % c.es != 0)
      return fail(args, CHIPMESH_ERR_CONFIG, "%s: input 0x%llx must be aligned to the %zu-byte element size", name,
                  static_cast<ull>(in.addr), c.es);
  }
  if (out_used) {
    c.out_off = device::window_offset(ctx, out.addr, bytes_out);
    if (c.out_off == kUnused)
      return fail(args, CHIPMESH_ERR_CONFIG,
                  "%s: output [0x%llx, +%llu bytes) is not inside this rank's window [0x%llx, +%llu bytes)", name,
                  static_cast<ull>(out.addr), static_cast<ull>(bytes_out), static_cast<ull>(ctx->windowsIn[c.rank]),
                  static_cast<ull>(ctx->winSize));
    if (out.addr % c.es != 0)
      return fail(args, CHIPMESH_ERR_CONFIG, "%s: output 0x%llx must be aligned to the %zu-byte element size", name,
                  static_cast<ull>(out.addr), c.es);
  }
  if (in_used && out_used && bytes_in > 0 && bytes_out > 0) {
    const uint64_t a = c.in_off, b = c.out_off;
    const bool overlap = a < b + bytes_out && b < a + bytes_in;
    const uint64_t block = c.count * c.es;
    const bool in_place = a == b || (kind == Kind::kAllgather && a == b + c.rank * block) ||
                          (kind == Kind::kReduceScatter && b == a + c.rank * block);
    if (overlap && !in_place)
      return fail(args, CHIPMESH_ERR_CONFIG,
                  "%s: input (window offset %llu, %llu bytes) and output (window offset %llu, %llu bytes) overlap "
                  "and are not in place",
                  name, static_cast<ull>(a), static_cast<ull>(bytes_in), static_cast<ull>(b),
                  static_cast<ull>(bytes_out));
  }
  return 0;
}

namespace {

// Numbers the call and writes this rank's descriptor (all but `entered`);
// returns the CPU it stored, plus one.
int32_t describe_call(CollCall& c) {
  device::Flag* counter = device::flag(c.ctx, static_cast<int>(c.rank), kCollCounterLine);
  c.call_no = counter->value.load(std::memory_order_relaxed) + 1;
  counter->value.store(c.call_no, std::memory_order_relaxed);
  CollDesc* d = desc(c.ctx, c.rank, c.call_no);
  const int32_t here = sched_getcpu() + 1;
  d->cpu.store(here, std::memory_order_relaxed);
  d->count.store(c.count, std::memory_order_relaxed);
  d->in_off.store(c.in_off, std::memory_order_relaxed);
  d->out_off.store(c.out_off, std::memory_order_relaxed);
  d->kind.store(static_cast<uint32_t>(c.kind), std::memory_order_relaxed);
  d->dtype.store(c.dtype, std::memory_order_relaxed);
  d->op.store(c.op, std::memory_order_relaxed);
  d->root.store(c.root, std::memory_order_relaxed);
  d->call_no.store(c.call_no, std::memory_order_relaxed);
  return here;
}

// Reads rank r's descriptor of this call (its output offset into
// c.peer_out, its input offset into c.peer_in); true when r made the same
// call, otherwise `message` says how they differ.
bool agrees(CollCall& c, uint32_t r, char (&message)[CHIPMESH_KERNEL_ERROR_SIZE]) {
  const CollDesc* p = desc(c.ctx, r, c.call_no);
  const uint64_t count = p->count.load(std::memory_order_relaxed);
  const uint32_t kind = p->kind.load(std::memory_order_relaxed);
  const uint32_t dtype = p->dtype.load(std::memory_order_relaxed);
  const uint32_t op = p->op.load(std::memory_order_relaxed);
  const uint32_t root = p->root.load(std::memory_order_relaxed);
  const uint32_t call_no = p->call_no.load(std::memory_order_relaxed);
  c.peer_in[r] = p->in_off.load(std::memory_order_relaxed);
  c.peer_out[r] = p->out_off.load(std::memory_order_relaxed);
  if (count == c.count && kind == static_cast<uint32_t>(c.kind) && dtype == c.dtype && op == c.op &&
      root == c.root && call_no == c.call_no)
    return true;
  std::snprintf(message, sizeof(message),
                "%s: ranks disagree: rank %u called %s count=%llu dtype=%u op=%u root=%u (call %u), rank %u "
                "called %s count=%llu dtype=%u op=%u root=%u (call %u)",
                kind_name(c.kind), c.rank, kind_name(c.kind), static_cast<ull>(c.count), c.dtype, c.op, c.root,
                c.call_no, r, kind_name(static_cast<Kind>(kind)), static_cast<ull>(count), dtype, op, root,
                call_no);
  return false;
}

// The bytes of this rank's input its peers read on the small path (0: none
// is read here), or kUnused when the call is too large for the slots.
uint64_t slot_bytes(const CollCall& c) {
  const uint64_t block = c.bytes();
  if (block > kCollSlotBytes || !device::flag_fits(c.ctx, kCollSlotLine0 + 2 * kCollSlotLines - 1)) return kUnused;
  const uint64_t bytes = spec_of(c.kind).in_times_n ? c.nranks * block : block;
  if (bytes > kCollSlotBytes) return kUnused;
  return c.in_off == kUnused ? 0 : bytes;
}

char* slot_of(const CollCall& c, uint32_t rank) {
  return static_cast<char*>(device::peer_scratch(
      c.ctx, static_cast<int>(rank), uint64_t{kCollSlotLine0 + (c.call_no % 2) * kCollSlotLines} * CHIPMESH_FLAG_BYTES));
}

// The small path: `bytes` of this rank's input into its slot, the
// descriptor out, every peer's awaited and checked; then the peers' inputs
// are their slots (offsets from their windows, modulo 2^64) and `body` runs
// with no barrier. A rank that opened with a barrier (a disagreeing call
// too large for the slots) published its descriptor first, so a
// disagreement is seen either way; every rank then passes two barriers,
// which pair with the other's opening and disagreement barriers (or, when
// both are here, with each other).
int run_in_slots(CollCall& c, uint64_t bytes, int (*body)(CollCall&)) {
  const int32_t here = describe_call(c);
  if (bytes) std::memcpy(slot_of(c, c.rank), c.local(c.in_off), bytes);
  device::Flag* entered = &desc(c.ctx, c.rank, c.call_no)->entered;
  device::flag_publish(entered, c.call_no);
  if (int rc = await_agreeing_peers(
          c.args, c.call_no, here, entered, [&](uint32_t r) { return &desc(c.ctx, r, c.call_no)->entered; },
          [&](uint32_t r) { return &desc(c.ctx, r, c.call_no)->cpu; },
          [&](uint32_t r, char (&message)[CHIPMESH_KERNEL_ERROR_SIZE]) { return agrees(c, r, message); }))
    return rc;
  c.peer_out[c.rank] = c.out_off;  // the peers' from their descriptors (agrees)
  for (uint32_t r = 0; r < c.nranks; ++r)
    c.peer_in[r] = reinterpret_cast<uint64_t>(slot_of(c, r)) - c.ctx->windowsIn[r];
  c.in_off = c.peer_in[c.rank];
  return body(c);
}

}  // namespace

int open_call(CollCall& c) {
  const chipmesh_kernel_args* args = c.args;
  describe_call(c);
  // Published by the barrier's release; `entered` too, for a rank on the
  // small path that disagrees with this call.
  device::flag_publish(&desc(c.ctx, c.rank, c.call_no)->entered, c.call_no);
  if (int rc = device::barrier(args)) return rc;
  char message[CHIPMESH_KERNEL_ERROR_SIZE];  // written by agrees() when it returns false, read only then
  for (uint32_t r = 0; r < c.nranks; ++r) {
    if (agrees(c, r, message)) continue;
    // Every rank sees the same descriptors, so every rank gets here: one
    // more barrier keeps the barriers paired.
    if (int brc = device::barrier(args)) return brc;
    return fail(args, CHIPMESH_ERR_CONFIG, "%s", message);
  }
  return 0;
}

int run_collective(const chipmesh_kernel_args* args, Kind kind, int (*body)(CollCall&), const UserBuffers& user) {
  if (!args) return CHIPMESH_ERR_CONFIG;
  CollCall c;
  if (int rc = parse_call(args, kind, &c)) return rc;
  c.user = user;
  if (c.nranks == 1) {
    // One rank: no peer to agree with; the body runs alone (its barriers
    // are no-ops).
    c.peer_in[0] = c.in_off;
    c.peer_out[0] = c.out_off;
    return kind != Kind::kBarrier && c.count == 0 ? 0 : body(c);
  }
  if (kind != Kind::kBarrier && c.count == 0) return 0;  // nothing moves; no rank touches a peer
  if (const uint64_t bytes = user.out ? kUnused : slot_bytes(c); bytes != kUnused) return run_in_slots(c, bytes, body);
  if (int rc = open_call(c)) return rc;
  if (int rc = body(c)) return rc;
  return device::barrier(args);
}

}  // namespace chipmesh::kernels

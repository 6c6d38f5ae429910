// Kernels that misbehave on purpose, for the Worker's error paths.
#undef NDEBUG  // test_assert's assert() fails in every build type
#include <cassert>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <stdexcept>

#include "chipmesh/kernel.h"

using chipmesh::device::fail;

CHIPMESH_KERNEL(test_noop) {
  (void)args;
  return 0;
}

// Fills tensors[0] (bytes) with the byte scalars[0].
CHIPMESH_KERNEL(test_fill) {
  if (args->num_tensors != 1 || args->num_scalars != 1) return fail(args, CHIPMESH_ERR_CONFIG, "test_fill: bad arguments");
  std::memset(reinterpret_cast<void*>(args->tensors[0].addr), static_cast<int>(args->scalars[0]),
              chipmesh::device::element_count(args->tensors[0]));
  return 0;
}

// Fills like test_fill, then reports a failure: outputs must not be flushed.
CHIPMESH_KERNEL(test_fill_then_fail) {
  int rc = test_fill(args);
  return rc != 0 ? rc : fail(args, CHIPMESH_ERR_DEVICE, "filled, then failed on purpose");
}

CHIPMESH_KERNEL(test_fail) { return fail(args, CHIPMESH_ERR_CONFIG, "bad input %d", 42); }

CHIPMESH_KERNEL(test_odd_status) {
  (void)args;
  return 77;
}

CHIPMESH_KERNEL(test_throw) {
  (void)args;
  throw std::runtime_error("boom from a kernel");
}

CHIPMESH_KERNEL(test_segv) {
  (void)args;
  raise(SIGSEGV);
  return 0;
}

// Ends its chip process with status scalars[0] (as exit() on an error path
// of code ported from a program would; _exit: the chip is a fork of the
// test, whose atexit handlers must not run here).
CHIPMESH_KERNEL(test_exit) {
  _exit(args->num_scalars ? static_cast<int>(args->scalars[0]) : 0);
}

// A failed assert(): glibc prints it and aborts.
CHIPMESH_KERNEL(test_assert) {
  assert(args->num_scalars == 12345 && "a kernel's own check");
  return 0;
}

// An exception std::terminate meets (as one leaving a noexcept function or
// a thread would).
CHIPMESH_KERNEL(test_terminate) {
  (void)args;
  try {
    throw std::logic_error("the kernel's invariant broke");
  } catch (...) {
    std::terminate();
  }
  return 0;
}

// Writes to a page past the end of an empty memfd: a real SIGBUS, as a
// window's first touch on a full /dev/shm meets.
CHIPMESH_KERNEL(test_sigbus) {
  (void)args;
  int fd = memfd_create("chipmesh_test_sigbus", MFD_CLOEXEC);
  if (fd < 0) return fail(args, CHIPMESH_ERR_DEVICE, "memfd_create failed");
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail(args, CHIPMESH_ERR_DEVICE, "mmap failed");
  static_cast<volatile char*>(p)[8] = 1;
  return fail(args, CHIPMESH_ERR_DEVICE, "the write past the end of the file did not fault");
}

// Offers itself to the OOM killer first (oom_score_adj 1000), then touches
// scalars[0] bytes of fresh memory: in a memory cgroup whose limit is
// smaller, the OOM killer ends it.
CHIPMESH_KERNEL(test_exhaust_memory) {
  if (args->num_scalars != 1) return fail(args, CHIPMESH_ERR_CONFIG, "test_exhaust_memory: bad arguments");
  int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "1000", 4) != 4) return fail(args, CHIPMESH_ERR_DEVICE, "cannot raise oom_score_adj");
  close(fd);
  const size_t bytes = args->scalars[0];
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return fail(args, CHIPMESH_ERR_DEVICE, "mmap of %zu bytes failed", bytes);
  for (size_t at = 0; at < bytes; at += 4096) static_cast<volatile char*>(p)[at] = 1;
  munmap(p, bytes);
  return fail(args, CHIPMESH_ERR_DEVICE, "touched %zu bytes and was not killed", bytes);
}

// Stops its own chip process (SIGSTOP) in the middle of a task: a chip that
// neither finishes nor dies.
CHIPMESH_KERNEL(test_stop_self) {
  (void)args;
  raise(SIGSTOP);
  return 0;
}

// Tells the test it started (writes one byte to fd scalars[0]), then waits on
// a flag nobody sets: it ends only by the deadline, an abort, or a kill.
CHIPMESH_KERNEL(test_block) {
  if (args->num_scalars >= 1) {
    char c = 'r';
    if (write(static_cast<int>(args->scalars[0]), &c, 1) != 1) return fail(args, CHIPMESH_ERR_DEVICE, "write failed");
  }
  if (!args->comm) return fail(args, CHIPMESH_ERR_CONFIG, "test_block needs a communicator");
  using namespace chipmesh::device;
  return flag_wait_ge(args, flag(args->comm, static_cast<int>(args->comm->rankId), CHIPMESH_FIRST_USER_FLAG), 1);
}

// Rank 0 waits for a flag that rank 1 sets after a while: a group whose
// kernels depend on each other.
CHIPMESH_KERNEL(test_ping) {
  using namespace chipmesh::device;
  const CommContext* ctx = args->comm;
  if (!ctx || ctx->rankNum < 2) return fail(args, CHIPMESH_ERR_CONFIG, "test_ping needs 2 ranks");
  Flag* f = flag(ctx, 0, CHIPMESH_FIRST_USER_FLAG + 1);
  if (ctx->rankId == 1) {
    flag_add(f, 1);
    return 0;
  }
  if (ctx->rankId == 0) return flag_wait_ge(args, f, static_cast<uint32_t>(args->scalars[0]));
  return 0;
}

// Writes the communicator's rankId and rankNum (uint32 each) to tensors[0]:
// which CommContext the kernel got.
CHIPMESH_KERNEL(test_whoami) {
  if (args->num_tensors != 1 || !args->comm) return fail(args, CHIPMESH_ERR_CONFIG, "test_whoami: bad arguments");
  auto* out = reinterpret_cast<uint32_t*>(args->tensors[0].addr);
  out[0] = args->comm->rankId;
  out[1] = args->comm->rankNum;
  return 0;
}

// Writes what it was given into tensors[0] (uint64 words): num_tensors,
// num_scalars, every scalar, then per tensor its addr, dtype, ndim and
// shape. Checks that tasks of every argument count arrive whole.
CHIPMESH_KERNEL(test_echo_args) {
  if (args->num_tensors < 1) return fail(args, CHIPMESH_ERR_CONFIG, "test_echo_args: no output tensor");
  auto* out = reinterpret_cast<uint64_t*>(args->tensors[0].addr);
  size_t k = 0;
  out[k++] = args->num_tensors;
  out[k++] = args->num_scalars;
  for (uint32_t i = 0; i < args->num_scalars; ++i) out[k++] = args->scalars[i];
  for (uint32_t i = 0; i < args->num_tensors; ++i) {
    const chipmesh_tensor& t = args->tensors[i];
    out[k++] = t.addr;
    out[k++] = t.dtype;
    out[k++] = t.ndim;
    for (uint32_t d = 0; d < t.ndim; ++d) out[k++] = t.shape[d];
  }
  return 0;
}

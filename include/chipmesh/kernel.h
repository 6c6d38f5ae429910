/* chipmesh kernels: the ABI a chip process calls kernels through, and the
 * device-side helpers kernel authors use (peer windows, flags, barrier).
 *
 * A kernel is an exported function of a shared library:
 *     CHIPMESH_KERNEL(my_kernel) { ... return 0; }
 * A chip process loads each library once and calls the kernel on its own
 * thread (sim) with a chipmesh_kernel_args. Return 0 on success; on failure
 * return a chipmesh_status (or any non-zero value) and describe the failure
 * in args->error (CHIPMESH_KERNEL_ERROR_SIZE bytes); from C++,
 * `return chipmesh::device::fail(args, status, "fmt", ...)` of
 * chipmesh/kernel_device.h does both. Build libraries with the CMake helper
 * chipmesh_add_kernel_library() (see docs/kernels.md). */
#ifndef CHIPMESH_KERNEL_H
#define CHIPMESH_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "chipmesh/comm.h"
#include "chipmesh/status.h"

#define CHIPMESH_KERNEL_ABI_VERSION 1u
#define CHIPMESH_KERNEL_MAX_DIMS 8
#define CHIPMESH_KERNEL_ERROR_SIZE 512

/* Scratch flags: one 64-byte line each in every rank's workSpace, after the
 * chipmesh_workspace_header (comm.h): flag i of rank r is at
 * header->peerWorkSpace[r] + CHIPMESH_WORKSPACE_HEADER_BYTES + i * 64, where
 * header is this rank's own (at its CommContext's workSpace). Use
 * chipmesh::device::flag(). Indices below CHIPMESH_FIRST_USER_FLAG are
 * reserved for chipmesh (barrier, built-in collectives). */
#define CHIPMESH_FLAG_BYTES 64
#define CHIPMESH_FIRST_USER_FLAG 64

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chipmesh_tensor {
  uint64_t addr;  /* device address in this chip's address space */
  uint32_t dtype; /* a chipmesh::DataType value */
  uint32_t ndim;  /* <= CHIPMESH_KERNEL_MAX_DIMS */
  uint64_t shape[CHIPMESH_KERNEL_MAX_DIMS];
} chipmesh_tensor;

typedef struct chipmesh_kernel_args {
  uint32_t abi_version; /* CHIPMESH_KERNEL_ABI_VERSION */
  int32_t device_id;
  const CommContext* comm; /* NULL when the chip has no communicator */
  const chipmesh_tensor* tensors;
  uint32_t num_tensors;
  uint32_t num_scalars;
  const uint64_t* scalars;
  /* Waits give up at this CLOCK_MONOTONIC time (ns) with CHIPMESH_ERR_TIMEOUT... */
  uint64_t deadline_ns;
  /* ...or as soon as the parent sets *abort (another chip failed). */
  const volatile uint32_t* abort;
  char* error; /* CHIPMESH_KERNEL_ERROR_SIZE bytes for a failure message */
} chipmesh_kernel_args;

typedef int (*chipmesh_kernel_entry)(const chipmesh_kernel_args* args);

#ifdef __cplusplus
}
#define CHIPMESH_KERNEL_EXTERN extern "C"
#else
#define CHIPMESH_KERNEL_EXTERN
#endif

#define CHIPMESH_KERNEL(name) \
  CHIPMESH_KERNEL_EXTERN __attribute__((visibility("default"))) int name(const chipmesh_kernel_args* args)

#ifdef __cplusplus
#include "chipmesh/kernel_device.h"
#endif

#endif /* CHIPMESH_KERNEL_H */

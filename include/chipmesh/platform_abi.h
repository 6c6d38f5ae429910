/* The platform plugin ABI.
 *
 * A platform is a shared library (libchipmesh_platform_<name>.so) exporting
 * two versioned tables: the device table (chipmesh/device_abi.h,
 * chipmesh_device_entry) and the transport table (chipmesh/transport_abi.h,
 * chipmesh_transport_entry). Include this header to get both.
 *
 * LEGACY: the combined table below (chipmesh_platform, ABI version 1,
 * exported as chipmesh_platform_entry) is what plugins exported before the
 * split. The loader still accepts a plugin that exports only it and adapts
 * it to the two tables (the job token and timeout of comm_init options then
 * reach the plugin only through its environment, and it has no leftover
 * hook). ChipWorker::platform() still returns this view for every plugin:
 * for a split plugin the loader composes it from the two tables. New
 * plugins export the two tables (and may export this one too).
 *
 * Rules for implementations: every function returns a chipmesh_status (0 on
 * success), never lets a C++ exception escape, and leaves a readable reason in
 * last_error() on failure. Device addresses travel as uint64_t. */
#ifndef CHIPMESH_PLATFORM_ABI_H
#define CHIPMESH_PLATFORM_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "chipmesh/comm.h"
#include "chipmesh/device_abi.h"
#include "chipmesh/status.h"
#include "chipmesh/transport_abi.h"

#define CHIPMESH_PLATFORM_ABI_VERSION 1u
#define CHIPMESH_PLATFORM_ENTRY_SYMBOL "chipmesh_platform_entry"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chipmesh_platform {
  uint32_t abi_version; /* CHIPMESH_PLATFORM_ABI_VERSION of the plugin's build */
  uint32_t struct_size; /* sizeof(chipmesh_platform) of the plugin's build */
  const char* name;     /* "sim", "cuda", ... */

  /* device lifecycle */
  int (*set_device)(int device_id);
  int (*reset_device)(void);
  int (*finalize)(void);

  /* memory */
  int (*malloc)(size_t nbytes, uint64_t* out_ptr);
  int (*free)(uint64_t ptr);
  int (*copy_to_device)(uint64_t dst, const void* src, size_t nbytes);
  int (*copy_from_device)(void* dst, uint64_t src, size_t nbytes);

  /* kernel launch hook: runs fn(args) on the current device (synchronously on
   * sim) and returns the kernel's own status. */
  int (*launch_kernel)(chipmesh_kernel_fn fn, void* args, void* stream);

  /* communicator primitives (same contract as chipmesh/comm.h) */
  CommHandle (*comm_init)(int rank, int nranks, void* stream, const char* rootinfo_path);
  int (*comm_alloc_windows)(CommHandle h, size_t win_size, uint64_t* device_ctx);
  int (*comm_get_local_window_base)(CommHandle h, uint64_t* base);
  int (*comm_get_window_size)(CommHandle h, size_t* size);
  int (*comm_barrier)(CommHandle h);
  int (*comm_destroy)(CommHandle h);

  /* most recent failure on the calling thread, any of the above: its message
   * and its chipmesh_status (comm_init reports failure only through these) */
  const char* (*last_error)(void);
  int (*last_error_code)(void);

  /* Async-signal-safe: removes every system-wide name (shared memory,
   * rootinfo file) this process created and still owns. A chip process calls
   * it from its SIGTERM handler (sent when its parent dies or gives up on it)
   * so that a bring-up cut short leaves nothing behind. */
  void (*emergency_cleanup)(void);
} chipmesh_platform;

typedef const chipmesh_platform* (*chipmesh_platform_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* CHIPMESH_PLATFORM_ABI_H */

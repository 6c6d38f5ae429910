/* The device table of a platform plugin: device lifecycle, memory, copies and
 * kernel launch. The communicator lives in a separate table
 * (chipmesh/transport_abi.h), so that a device can be paired with another
 * transport, and each table can grow on its own.
 *
 * A plugin (libchipmesh_platform_<name>.so) exports
 *     const chipmesh_device_v1_t* chipmesh_device_entry(void);
 * returning a static, immutable table. The loader checks abi_version and
 * struct_size before it reads any other member (NCCL's ncclNet_vN model:
 * the struct name carries the version, chipmesh_device_t names the current
 * one).
 *
 * Rules: every function returns a chipmesh_status (0 on success), never lets
 * a C++ exception escape, and leaves a readable reason in last_error() on
 * failure. Device addresses travel as uint64_t. */
#ifndef CHIPMESH_DEVICE_ABI_H
#define CHIPMESH_DEVICE_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "chipmesh/status.h"

#define CHIPMESH_DEVICE_ABI_VERSION 1u
#define CHIPMESH_DEVICE_ENTRY_SYMBOL "chipmesh_device_entry"

#ifdef __cplusplus
extern "C" {
#endif

/* A kernel as the platform launches it: one opaque argument block. */
typedef int (*chipmesh_kernel_fn)(void* args);

typedef struct chipmesh_device_v1_t {
  /* CHIPMESH_DEVICE_ABI_VERSION of the plugin's build (1). */
  uint32_t abi_version;
  /* sizeof(chipmesh_device_v1_t) of the plugin's build; the loader refuses a
   * smaller table. Members are only ever appended within one version. */
  uint32_t struct_size;
  /* "sim", "cuda", ...: what ChipWorker::init names the platform by. */
  const char* name;

  /* Binds the calling process to device `device_id`; an id the platform does
   * not have (or a missing driver) is CHIPMESH_ERR_DEVICE, not a crash. */
  int (*set_device)(int device_id);
  /* Frees everything allocated on the current device; the device stays set. */
  int (*reset_device)(void);
  /* Releases the device; the process may exit afterwards. */
  int (*finalize)(void);

  /* Allocates nbytes of device memory; *out_ptr receives its address. */
  int (*malloc)(size_t nbytes, uint64_t* out_ptr);
  /* Frees an address returned by malloc; anything else is an error. */
  int (*free)(uint64_t ptr);
  /* Host -> device: nbytes from src to device address dst. */
  int (*copy_to_device)(uint64_t dst, const void* src, size_t nbytes);
  /* Device -> host: nbytes from device address src to dst. */
  int (*copy_from_device)(void* dst, uint64_t src, size_t nbytes);

  /* Runs fn(args) on the current device (sim: synchronously, on the calling
   * thread) and returns the kernel's own status. A platform failure (no
   * device, null fn) also leaves a message in last_error(); a kernel's own
   * non-zero status does not. */
  int (*launch_kernel)(chipmesh_kernel_fn fn, void* args, void* stream);

  /* The most recent failure of this table on the calling thread: its message
   * ("" when none) and its chipmesh_status. A success clears both. */
  const char* (*last_error)(void);
  int (*last_error_code)(void);

  /* Async-signal-safe: releases every system-wide resource of the device
   * this process still owns. A chip process calls it (and the transport's)
   * from its SIGTERM handler. May be NULL. */
  void (*emergency_cleanup)(void);

  /* ---- Optional members, appended within version 1. A table whose
   * struct_size ends before one of them, or that sets it NULL, does not
   * offer it; the loader then reads it as NULL and callers keep their
   * other path. ---- */

  /* Host arena: the caller (a Worker, before it forks the chip process)
   * made `fd`, a sparse file of `size` bytes (a memfd) that it maps too.
   * The platform duplicates fd, and from now on places device allocations
   * in that file while it has room, so another process mapping the same
   * file reaches them with plain loads and stores: offset o of the file is
   * device address base + o for an allocation the platform reports through
   * host_range below. A platform whose memory the CPU cannot reach leaves
   * this NULL. */
  int (*attach_host_arena)(int fd, uint64_t size);
  /* Where the CPU reaches [ptr, ptr + nbytes) of device memory: *host, its
   * address in this process (NULL when the CPU cannot reach it directly),
   * and *arena_offset, its offset in the attached host arena
   * (CHIPMESH_NO_ARENA_OFFSET when it does not lie there). A range outside
   * every allocation and window is CHIPMESH_ERR_DEVICE, as for copies. */
  int (*host_range)(uint64_t ptr, size_t nbytes, void** host, uint64_t* arena_offset);
} chipmesh_device_v1_t;

/* The size of the first version-1 table, before the optional members: the
 * smallest struct_size the loader accepts. */
#define CHIPMESH_DEVICE_V1_BASE_SIZE offsetof(chipmesh_device_v1_t, attach_host_arena)
#define CHIPMESH_NO_ARENA_OFFSET UINT64_MAX

/* The current version. */
typedef chipmesh_device_v1_t chipmesh_device_t;

typedef const chipmesh_device_v1_t* (*chipmesh_device_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* CHIPMESH_DEVICE_ABI_H */

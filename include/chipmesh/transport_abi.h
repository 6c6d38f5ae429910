/* The transport (communicator) table of a platform plugin: rendezvous,
 * windows every peer can reach, barrier, teardown, and the hooks chipmesh
 * needs around them (emergency cleanup, leftover inspection). Later
 * versions append one-sided put/get/signal.
 *
 * A plugin (libchipmesh_platform_<name>.so) exports
 *     const chipmesh_transport_v1_t* chipmesh_transport_entry(void);
 * returning a static, immutable table; the loader checks abi_version and
 * struct_size before anything else. A plugin without this symbol has no
 * communicator (ChipWorker::comm_* then fail with a DeviceError).
 *
 * Same rules as the device table: a chipmesh_status from every function,
 * no C++ exception across the boundary, a readable last_error() on failure.
 * The handle and the CommContext are those of chipmesh/comm.h. */
#ifndef CHIPMESH_TRANSPORT_ABI_H
#define CHIPMESH_TRANSPORT_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "chipmesh/comm.h"
#include "chipmesh/status.h"

#define CHIPMESH_TRANSPORT_ABI_VERSION 1u
#define CHIPMESH_TRANSPORT_ENTRY_SYMBOL "chipmesh_transport_entry"

/* inspect_leftover: what `name` is. */
#define CHIPMESH_LEFTOVER_SHM 0  /* a /dev/shm entry, without the leading '/' */
#define CHIPMESH_LEFTOVER_FILE 1 /* a file path: a rootinfo or one of its temp files */

/* inspect_leftover: the verdict. */
#define CHIPMESH_LEFTOVER_NOT_OURS 0 /* not made by this platform (reason says why) */
#define CHIPMESH_LEFTOVER_LIVE 1     /* this platform's, and its owner still runs: keep */
#define CHIPMESH_LEFTOVER_STALE 2    /* this platform's, and its owner is gone: safe to remove */

#ifdef __cplusplus
extern "C" {
#endif

/* Per-communicator options of comm_init. Zero-initialise, set struct_size,
 * then the members you need; a zero member means "the platform's default".
 * A platform reads only the members that fit in struct_size. */
typedef struct chipmesh_comm_options_v1_t {
  /* sizeof(chipmesh_comm_options_v1_t) of the caller's build. */
  uint32_t struct_size;
  uint32_t reserved; /* 0 */
  /* Ranks only join a communicator published under the same token, so two
   * jobs on one host never attach to each other. NULL: the platform's default
   * (the CHIPMESH_JOB_TOKEN environment variable); "": no token. At most 63
   * bytes on sim. */
  const char* job_token;
  /* Deadline of every wait of this communicator (rendezvous, barriers), in
   * milliseconds. 0: the default (CHIPMESH_COMM_TIMEOUT_S). */
  uint64_t timeout_ms;
} chipmesh_comm_options_v1_t;

typedef chipmesh_comm_options_v1_t chipmesh_comm_options_t;

typedef struct chipmesh_transport_v1_t {
  /* CHIPMESH_TRANSPORT_ABI_VERSION of the plugin's build (1). */
  uint32_t abi_version;
  /* sizeof(chipmesh_transport_v1_t) of the plugin's build; the loader
   * refuses a smaller table. */
  uint32_t struct_size;
  /* "sim", "cuda", ... (the same name as the device table's). */
  const char* name;

  /* Joins communicator (rank, nranks) that meets at rootinfo_path: rank 0
   * publishes, the others wait for it (through the platform's rendezvous
   * store; on sim a file). stream: a platform stream, may be NULL. options:
   * may be NULL (every default). Returns NULL on failure, with the reason
   * in last_error(). */
  CommHandle (*comm_init)(int rank, int nranks, void* stream, const char* rootinfo_path,
                          const chipmesh_comm_options_v1_t* options);
  /* Allocates this rank's window (win_size rounded up by the platform, the
   * same request on every rank), maps every peer's, and stores the address
   * of this rank's CommContext in *device_ctx. The first bytes of the
   * context's workSpace hold a chipmesh_workspace_header (kernel.h) the
   * transport fills: where this process reaches each rank's workSpace. */
  int (*alloc_windows)(CommHandle h, size_t win_size, uint64_t* device_ctx);
  /* This rank's window base, as a device address. */
  int (*local_window_base)(CommHandle h, uint64_t* base);
  /* The actual (rounded) window size. */
  int (*window_size)(CommHandle h, size_t* size);
  /* All ranks; reusable back to back; a dead peer fails it, naming the peer. */
  int (*barrier)(CommHandle h);
  /* Local teardown; always releases the handle, even when it fails. */
  int (*destroy)(CommHandle h);

  /* The most recent failure of this table on the calling thread ("" and 0
   * when none); comm_init reports failure only through these. */
  const char* (*last_error)(void);
  int (*last_error_code)(void);

  /* Async-signal-safe: removes every system-wide name (shared memory,
   * rendezvous file) this process created and still owns. A chip process
   * calls it from its SIGTERM handler. May be NULL. */
  void (*emergency_cleanup)(void);

  /* For `chipmesh clean`: is `name` (of kind CHIPMESH_LEFTOVER_SHM or _FILE)
   * something this platform leaves behind, and is its owner gone? Writes
   * one CHIPMESH_LEFTOVER_* verdict to *verdict and a NUL-terminated reason
   * ("owner pid 123 is gone") to reason[0..reason_size). Only inspects:
   * the caller removes what it decides to remove. May be NULL (the platform
   * leaves nothing a cleaner could recognise). */
  int (*inspect_leftover)(int kind, const char* name, int* verdict, char* reason, size_t reason_size);

  /* Optional members: a plugin built before them has a smaller struct_size
   * and the loader reads them as NULL. */

  /* Stores in *fd a file descriptor of this process open on the memory of
   * this rank's window (file offset 0 = the window base, at least
   * window_size bytes) that another process allowed to (the parent, through
   * pidfd_getfd) can duplicate and map shared, or -1 when the window has
   * none. It stays open until destroy. The Worker maps its chips' windows
   * through it, so that its copies to and from window addresses are one
   * memcpy. May be NULL (the CPU of another process cannot reach the
   * windows). */
  int (*window_fd)(CommHandle h, int* fd);
  /* Makes the next alloc_windows of this communicator use the file `fd`
   * (shared memory of this user: file offset 0 = the window base; its size
   * at most the window size) as this rank's window instead of new memory, so
   * that what it already holds (host inputs the Worker placed there before
   * the chip was forked) is in the window without a copy. Bytes nobody
   * wrote are zero, as in a new window. The transport keeps a descriptor of
   * its own (the caller may close fd) and may grow the file (sim appends the
   * scratch); peers map it as any other window. Call before alloc_windows;
   * an unusable file fails alloc_windows, naming it. May be NULL: the
   * Worker then stages inputs in objects of their own, copied at bring-up. */
  int (*adopt_window)(CommHandle h, int fd);
  /* window_fd with an offset: stores in *fd a descriptor as window_fd's
   * (open until destroy, for pidfd_getfd) on a file that holds this rank's
   * window at file offset *offset (a multiple of the page size), or -1 when
   * there is none. It lets a transport keep every rank's window in one
   * object, which each rank maps once (sim does when no rank adopted a
   * window), where window_fd can only lend a file whose offset 0 is the
   * window. The Worker asks this first, then window_fd. May be NULL. */
  int (*window_file)(CommHandle h, int* fd, uint64_t* offset);
  /* adopt_window for a file that holds this rank's window at file offset
   * `offset` (a multiple of the page size) and may hold other ranks'
   * windows at other offsets: the Worker's one window file for every chip.
   * The file must already hold offset + adopted_window_stride(win_size)
   * bytes (a file several ranks share is never grown); otherwise
   * alloc_windows fails, naming it. When every rank adopted the same file
   * at offset rank * stride, each maps the file once (sim: N mappings per
   * communicator instead of N x N). May be NULL. */
  int (*adopt_window_at)(CommHandle h, int fd, uint64_t offset);
  /* How far apart windows of win_size bytes lie in a file adopted by
   * adopt_window_at: the window rounded as alloc_windows rounds it, plus
   * what the transport keeps after it (sim: the kernels' scratch). Needs no
   * communicator: the Worker asks before it forks the chips. May be NULL
   * (then adopt_window_at is not used). */
  int (*adopted_window_stride)(size_t win_size, uint64_t* stride);
} chipmesh_transport_v1_t;

/* The size of the first version-1 table, before the optional members: the
 * smallest struct_size the loader accepts. */
#define CHIPMESH_TRANSPORT_V1_BASE_SIZE offsetof(chipmesh_transport_v1_t, window_fd)

typedef chipmesh_transport_v1_t chipmesh_transport_t;

typedef const chipmesh_transport_v1_t* (*chipmesh_transport_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* CHIPMESH_TRANSPORT_ABI_H */

/* Communicator C API: backend-neutral, six primitives. Every platform plugin
 * exports these symbols and lists them in its chipmesh_platform table.
 *
 * Return 0 (CHIPMESH_SUCCESS) on success. On failure a chipmesh_status code is
 * returned (comm_init returns NULL) and comm_last_error() /
 * comm_last_error_code() describe the most recent failure on this thread.
 * No C++ exception ever crosses this boundary. */
#ifndef CHIPMESH_COMM_H
#define CHIPMESH_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "chipmesh/status.h"

#define CHIPMESH_MAX_RANKS 64

#ifdef __cplusplus
extern "C" {
#endif

/* Device-side view of a communicator, handed to kernels (device_ctx points
 * at it). The layout is fixed: kernels compiled separately rely on it.
 * windowsIn[r] is where *this* process reaches rank r's window; on sim the
 * addresses differ per process, so a kernel only uses its own rank's context.
 * windowsOut[r] aliases windowsIn[r] (one window per rank). */
typedef struct CommContext {
  uint64_t workSpace;      /* @0    this rank's kernel scratch (sync flags),
                              starting with a chipmesh_workspace_header that
                              says where this process reaches every rank's
                              scratch; 0 when the platform gives none */
  uint64_t workSpaceSize;  /* @8 */
  uint32_t rankId;         /* @16 */
  uint32_t rankNum;        /* @20 */
  uint64_t winSize;        /* @24   actual (rounded) window size */
  uint64_t windowsIn[CHIPMESH_MAX_RANKS];   /* @32 */
  uint64_t windowsOut[CHIPMESH_MAX_RANKS];  /* @544 */
} CommContext;

/* The first CHIPMESH_WORKSPACE_HEADER_BYTES of every rank's workSpace,
 * filled by the transport in comm_alloc_windows before it returns:
 * peerWorkSpace[r] is the address at which *this* process reaches rank r's
 * workSpace (0 for r >= rankNum). Like windowsIn, the addresses are this
 * process's: a kernel reads only its own rank's header (the one at its own
 * CommContext's workSpace), never a peer's. Kernel scratch (flags) follows
 * the header: see chipmesh/kernel.h. Where the scratch lives is the
 * platform's business (on sim right after each window, in the same shared
 * memory object); kernels find it only through this header. */
#define CHIPMESH_WORKSPACE_HEADER_BYTES 512
typedef struct chipmesh_workspace_header {
  uint64_t peerWorkSpace[CHIPMESH_MAX_RANKS];
} chipmesh_workspace_header;

typedef struct chipmesh_comm* CommHandle;

/* Joins communicator (rank, nranks) that meets at rootinfo_path: rank 0
 * publishes the file, the others wait for it. stream is a platform stream
 * (unused on sim, may be NULL). Returns NULL on failure. */
CommHandle comm_init(int rank, int nranks, void* stream, const char* rootinfo_path);
/* Allocates this rank's window (win_size rounded up by the platform) and maps
 * every peer's; *device_ctx receives the address of this rank's CommContext. */
int comm_alloc_windows(CommHandle h, size_t win_size, uint64_t* device_ctx);
int comm_get_local_window_base(CommHandle h, uint64_t* base);
int comm_get_window_size(CommHandle h, size_t* size);
int comm_barrier(CommHandle h);
/* Local teardown; always releases the handle, even when it returns an error. */
int comm_destroy(CommHandle h);

/* Most recent failure on the calling thread ("" and 0 when none). */
const char* comm_last_error(void);
int comm_last_error_code(void);

#ifdef __cplusplus
}  /* extern "C" */

static_assert(sizeof(CommContext) == 1056, "CommContext size is part of the kernel ABI");
static_assert(offsetof(CommContext, workSpace) == 0, "CommContext layout");
static_assert(offsetof(CommContext, workSpaceSize) == 8, "CommContext layout");
static_assert(offsetof(CommContext, rankId) == 16, "CommContext layout");
static_assert(offsetof(CommContext, rankNum) == 20, "CommContext layout");
static_assert(offsetof(CommContext, winSize) == 24, "CommContext layout");
static_assert(offsetof(CommContext, windowsIn) == 32, "CommContext layout");
static_assert(offsetof(CommContext, windowsOut) == 544, "CommContext layout");
static_assert(sizeof(chipmesh_workspace_header) == CHIPMESH_WORKSPACE_HEADER_BYTES, "workspace header layout");
#else
_Static_assert(sizeof(CommContext) == 1056, "CommContext size is part of the kernel ABI");
_Static_assert(sizeof(chipmesh_workspace_header) == CHIPMESH_WORKSPACE_HEADER_BYTES, "workspace header layout");
#endif

#endif /* CHIPMESH_COMM_H */

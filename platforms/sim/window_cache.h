// Released one-object windows, kept mapped for the next communicator of the
// same shape. A domain allocated and released in a loop (allocate_domain +
// release_domain) otherwise creates, sizes, maps, first-touches and unmaps
// an object per call on every rank: on a paravirtualized VM the first
// touch of a fresh mapping's page (its page tables) and its munmap cost
// ~60 us a rank, more than the rest of the call.
//
// The object is shared memory rank 0 made (its windows and scratches, then
// a tail page, ObjectTail); every rank of the communicator keeps its own
// mapping and descriptor of it when it destroys the communicator and counts
// itself in the tail. Only the process that made it (the "owner") offers it
// again, to one communicator at a time, as that communicator's rank 0, and
// only once every rank of its last communicator has released it; it zeroes
// the pages written (SEEK_DATA) in place before any peer sees them. An
// object with more than kMaxDirtyBytes written is punched empty by the last
// rank to release it instead. A peer reuses its mapping when rank 0 names
// that object (device, inode), else maps it through /proc.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>

namespace chipmesh::sim {

struct CachedObject {
  int fd = -1;
  void* map = nullptr;
  size_t bytes = 0;  // the object's size and the mapping's
  int nranks = 0;    // of the communicator that used it last
  uint64_t dev = 0, ino = 0;
  // The process that made it (as rank 0), 0 for a peer's mapping: a child
  // forked later inherits the entry but never offers the object.
  pid_t owner = 0;
};

namespace window_cache {

// The largest object kept, and how many per process: small windows are
// where the per-call costs dominate; large ones keep nothing mapped.
inline constexpr size_t kMaxObjectBytes = size_t{64} << 20;
inline constexpr size_t kMaxEntries = 4;
// Written pages an object may keep while cached (its next user zeroes them
// in place, cheaper than faulting fresh pages in again); beyond that the
// last rank to release punches them out.
inline constexpr size_t kMaxDirtyBytes = size_t{1} << 20;

// An object this process (`self`) made, of exactly `bytes`, for which
// `usable` holds; removed from the cache.
std::optional<CachedObject> take_owned(pid_t self, size_t bytes, bool (*usable)(const CachedObject&));
// This process's mapping of object (dev, ino) of `bytes`; removed.
std::optional<CachedObject> take(uint64_t dev, uint64_t ino, size_t bytes);
// Keeps `o` (the oldest entries beyond kMaxEntries are unmapped and closed);
// false, keeping nothing, when `o` is too large: the caller unmaps it.
bool put(const CachedObject& o);

}  // namespace window_cache
}  // namespace chipmesh::sim

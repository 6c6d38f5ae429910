// The sim device: "device memory" is this process's host memory. Every range
// handed out (allocations, windows, workspace) is registered so copies to or
// from an address outside them fail with a clear error instead of a crash.
#pragma once

#include <cstddef>
#include <cstdint>

namespace chipmesh::sim::device {

void set_device(int device_id);
void reset_device();
void finalize();
int current_device();  // -1 when none is set

uint64_t malloc(size_t nbytes);
void free(uint64_t ptr);
void copy_to_device(uint64_t dst, const void* src, size_t nbytes);
void copy_from_device(void* dst, uint64_t src, size_t nbytes);

// The host arena (arena.h): malloc places allocations in it from now on.
void attach_host_arena(int fd, uint64_t size);
// [ptr, ptr + n) must lie in one allocation or window; *host is ptr (sim
// memory is this process's), *arena_offset its offset in the arena or
// CHIPMESH_NO_ARENA_OFFSET.
void host_range(uint64_t ptr, size_t nbytes, void** host, uint64_t* arena_offset);

// Ranges owned by others (communicator windows); copies may target them.
void register_region(uint64_t base, size_t size);
void unregister_region(uint64_t base) noexcept;

}  // namespace chipmesh::sim::device

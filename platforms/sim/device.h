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

// Ranges owned by others (communicator windows); copies may target them.
void register_region(uint64_t base, size_t size);
void unregister_region(uint64_t base) noexcept;

}  // namespace chipmesh::sim::device

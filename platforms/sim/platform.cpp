// The sim platform's ABI tables: the device table and the transport table
// ChipWorker::init looks up. (No legacy combined table: the loader composes
// that view for ChipWorker::platform().)
#include "chipmesh/platform_abi.h"

#include "chipmesh/errors.h"
#include "common/status_map.h"
#include "device.h"
#include "name_registry.h"

namespace chipmesh::sim {
LastError& last_error();  // comm.cpp: one per-thread slot for the whole plugin
// comm.cpp: comm_init with options, and the leftover hook (leftovers.cpp).
CommHandle comm_init_with_options(int rank, int nranks, void* stream, const char* rootinfo_path,
                                  const chipmesh_comm_options_v1_t* options);
int inspect_leftover(int kind, const char* name, int* verdict, char* reason, size_t reason_size);
int comm_window_fd(CommHandle h, int* fd);
int comm_adopt_window(CommHandle h, int fd);
int comm_window_file(CommHandle h, int* fd, uint64_t* offset);
int comm_adopt_window_at(CommHandle h, int fd, uint64_t offset);
int comm_adopted_window_stride(size_t win_size, uint64_t* stride);
}  // namespace chipmesh::sim

namespace {

using chipmesh::sim::last_error;
namespace dev = chipmesh::sim::device;

int sim_set_device(int device_id) { return last_error().guard([&] { dev::set_device(device_id); }); }
int sim_reset_device() { return last_error().guard([] { dev::reset_device(); }); }
int sim_finalize() { return last_error().guard([] { dev::finalize(); }); }

int sim_malloc(size_t nbytes, uint64_t* out) {
  return last_error().guard([&] {
    if (!out) throw chipmesh::ConfigError("malloc: null output pointer");
    *out = dev::malloc(nbytes);
  });
}
int sim_free(uint64_t ptr) { return last_error().guard([&] { dev::free(ptr); }); }
int sim_copy_to_device(uint64_t dst, const void* src, size_t n) {
  return last_error().guard([&] { dev::copy_to_device(dst, src, n); });
}
int sim_copy_from_device(void* dst, uint64_t src, size_t n) {
  return last_error().guard([&] { dev::copy_from_device(dst, src, n); });
}
int sim_attach_host_arena(int fd, uint64_t size) {
  return last_error().guard([&] { dev::attach_host_arena(fd, size); });
}
int sim_host_range(uint64_t ptr, size_t n, void** host, uint64_t* arena_offset) {
  return last_error().guard([&] { dev::host_range(ptr, n, host, arena_offset); });
}

// Kernels run synchronously on the calling thread; the stream is unused.
int sim_launch_kernel(chipmesh_kernel_fn fn, void* args, void* /*stream*/) {
  int result = CHIPMESH_SUCCESS;
  int rc = last_error().guard([&] {
    if (!fn) throw chipmesh::ConfigError("launch_kernel: null kernel function");
    if (dev::current_device() < 0) throw chipmesh::DeviceError("launch_kernel: no sim device is set (call set_device first)");
    result = fn(args);
  });
  return rc != CHIPMESH_SUCCESS ? rc : result;
}

const char* sim_last_error() { return last_error().message(); }
int sim_last_error_code() { return last_error().code(); }
void sim_emergency_cleanup() { chipmesh::sim::names::emergency_unlink(); }

// Device memory is this process's heap or the Worker's name-less arena:
// nothing system-wide to remove.
void sim_device_emergency_cleanup() {}

const chipmesh_device_v1_t kSimDevice = {
    CHIPMESH_DEVICE_ABI_VERSION,
    sizeof(chipmesh_device_v1_t),
    "sim",
    sim_set_device,
    sim_reset_device,
    sim_finalize,
    sim_malloc,
    sim_free,
    sim_copy_to_device,
    sim_copy_from_device,
    sim_launch_kernel,
    sim_last_error,
    sim_last_error_code,
    sim_device_emergency_cleanup,
    sim_attach_host_arena,
    sim_host_range,
};

const chipmesh_transport_v1_t kSimTransport = {
    CHIPMESH_TRANSPORT_ABI_VERSION,
    sizeof(chipmesh_transport_v1_t),
    "sim",
    chipmesh::sim::comm_init_with_options,
    comm_alloc_windows,
    comm_get_local_window_base,
    comm_get_window_size,
    comm_barrier,
    comm_destroy,
    sim_last_error,
    sim_last_error_code,
    sim_emergency_cleanup,
    chipmesh::sim::inspect_leftover,
    chipmesh::sim::comm_window_fd,
    chipmesh::sim::comm_adopt_window,
    chipmesh::sim::comm_window_file,
    chipmesh::sim::comm_adopt_window_at,
    chipmesh::sim::comm_adopted_window_stride,
};

}  // namespace

#define CHIPMESH_EXPORT extern "C" __attribute__((visibility("default")))

CHIPMESH_EXPORT const chipmesh_device_v1_t* chipmesh_device_entry(void) { return &kSimDevice; }
CHIPMESH_EXPORT const chipmesh_transport_v1_t* chipmesh_transport_entry(void) { return &kSimTransport; }


// ChipWorker: C++ face of one platform plugin. Every call goes through the
// plugin's C table; failures come back as codes and are rethrown typed.
#include "chipmesh/chip_worker.h"

#include <string>

#include "chipmesh/errors.h"
#include "common/status_map.h"
#include "plugin_loader/platform_loader.h"

namespace chipmesh {

ChipWorker::~ChipWorker() {
  try {
    shutdown_bootstrap();
  } catch (...) {
    // A destructor must not throw; shutdown_bootstrap already cleared the handle.
  }
}

void ChipWorker::init(std::string_view platform) {
  if (platform_) {
    if (platform == platform_->name) return;
    throw ConfigError("ChipWorker::init: already bound to platform '" + std::string(platform_->name) +
                      "', cannot bind '" + std::string(platform) + "'");
  }
  platform_ = load_platform(platform);
}

const chipmesh_platform& ChipWorker::platform() const {
  if (!platform_) throw DeviceError("ChipWorker: no platform (call init first)");
  return *platform_;
}

void ChipWorker::check(int status, std::string_view what) const {
  if (status == CHIPMESH_SUCCESS) return;
  const char* detail = platform_->last_error ? platform_->last_error() : "";
  std::string message(detail && *detail ? detail : std::string(what) + " failed with status " + std::to_string(status));
  throw_status(status, message);
}

void ChipWorker::set_device(int device_id) { check(platform().set_device(device_id), "set_device"); }
void ChipWorker::reset_device() { check(platform().reset_device(), "reset_device"); }
void ChipWorker::finalize() {
  if (!platform_) return;
  check(platform_->finalize(), "finalize");
}

uint64_t ChipWorker::malloc(size_t nbytes) {
  uint64_t ptr = 0;
  check(platform().malloc(nbytes, &ptr), "malloc");
  return ptr;
}

void ChipWorker::free(uint64_t ptr) { check(platform().free(ptr), "free"); }

void ChipWorker::copy_to(uint64_t dst, const void* src, size_t nbytes) {
  check(platform().copy_to_device(dst, src, nbytes), "copy_to");
}

void ChipWorker::copy_from(void* dst, uint64_t src, size_t nbytes) {
  check(platform().copy_from_device(dst, src, nbytes), "copy_from");
}

int ChipWorker::launch(chipmesh_kernel_fn fn, void* args) {
  int rc = platform().launch_kernel(fn, args, nullptr);
  // Platform failures carry a message; a kernel's own non-zero status is its result.
  if (rc != CHIPMESH_SUCCESS && platform_->last_error && *platform_->last_error()) check(rc, "launch");
  return rc;
}

uint64_t ChipWorker::comm_init(int rank, int nranks, const std::string& rootinfo_path) {
  CommHandle h = platform().comm_init(rank, nranks, nullptr, rootinfo_path.c_str());
  if (!h) {
    int code = platform_->last_error_code();
    check(code != CHIPMESH_SUCCESS ? code : CHIPMESH_ERR_INTERNAL, "comm_init");
  }
  return reinterpret_cast<uint64_t>(h);
}

uint64_t ChipWorker::comm_alloc_windows(uint64_t comm, size_t window_size) {
  uint64_t ctx = 0;
  check(platform().comm_alloc_windows(reinterpret_cast<CommHandle>(comm), window_size, &ctx), "comm_alloc_windows");
  return ctx;
}

uint64_t ChipWorker::comm_get_local_window_base(uint64_t comm) {
  uint64_t base = 0;
  check(platform().comm_get_local_window_base(reinterpret_cast<CommHandle>(comm), &base), "comm_get_local_window_base");
  return base;
}

size_t ChipWorker::comm_get_window_size(uint64_t comm) {
  size_t size = 0;
  check(platform().comm_get_window_size(reinterpret_cast<CommHandle>(comm), &size), "comm_get_window_size");
  return size;
}

void ChipWorker::comm_barrier(uint64_t comm) {
  check(platform().comm_barrier(reinterpret_cast<CommHandle>(comm)), "comm_barrier");
}

void ChipWorker::comm_destroy(uint64_t comm) {
  check(platform().comm_destroy(reinterpret_cast<CommHandle>(comm)), "comm_destroy");
}

void ChipWorker::shutdown_bootstrap() {
  outputs_.clear();  // detaches; the parent owns (and unlinks) the names
  // Clear first: a destroy that fails must not be retried on a freed handle.
  uint64_t comm = bootstrap_comm_;
  bootstrap_comm_ = 0;
  if (comm != 0) comm_destroy(comm);
}

}  // namespace chipmesh

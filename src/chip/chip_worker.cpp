// ChipWorker: C++ face of one platform plugin. Every call goes through the
// plugin's C table; failures come back as codes and are rethrown typed.
#include "chipmesh/chip_worker.h"

#include <algorithm>
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
  const PlatformTables& tables = load_platform_tables(platform);
  device_ = tables.device;
  transport_ = tables.transport;
  platform_ = tables.legacy;
}

const chipmesh_platform& ChipWorker::platform() const {
  if (!platform_) throw DeviceError("ChipWorker: no platform (call init first)");
  return *platform_;
}

const chipmesh_device_t& ChipWorker::device() const {
  if (!device_) throw DeviceError("ChipWorker: no platform (call init first)");
  return *device_;
}

const chipmesh_transport_t& ChipWorker::transport() const {
  if (!transport_)
    throw DeviceError(device_ ? "ChipWorker: platform '" + std::string(device_->name) +
                                    "' has no communicator (its plugin exports no " CHIPMESH_TRANSPORT_ENTRY_SYMBOL ")"
                              : std::string("ChipWorker: no platform (call init first)"));
  return *transport_;
}

namespace {
[[noreturn]] void rethrow(int status, const char* detail, std::string_view what) {
  std::string message(detail && *detail ? detail : std::string(what) + " failed with status " + std::to_string(status));
  throw_status(status, message);
}
}  // namespace

void ChipWorker::check(int status, std::string_view what) const {
  if (status == CHIPMESH_SUCCESS) return;
  rethrow(status, device_->last_error ? device_->last_error() : "", what);
}

void ChipWorker::check_comm(int status, std::string_view what) const {
  if (status == CHIPMESH_SUCCESS) return;
  rethrow(status, transport_->last_error ? transport_->last_error() : "", what);
}

void ChipWorker::set_device(int device_id) { check(device().set_device(device_id), "set_device"); }
void ChipWorker::reset_device() { check(device().reset_device(), "reset_device"); }
void ChipWorker::finalize() {
  if (!device_) return;
  check(device_->finalize(), "finalize");
}

uint64_t ChipWorker::malloc(size_t nbytes) {
  uint64_t ptr = 0;
  check(device().malloc(nbytes, &ptr), "malloc");
  return ptr;
}

void ChipWorker::free(uint64_t ptr) { check(device().free(ptr), "free"); }

void ChipWorker::copy_to(uint64_t dst, const void* src, size_t nbytes) {
  check(device().copy_to_device(dst, src, nbytes), "copy_to");
}

void ChipWorker::copy_from(void* dst, uint64_t src, size_t nbytes) {
  check(device().copy_from_device(dst, src, nbytes), "copy_from");
}

bool ChipWorker::attach_host_arena(int fd, uint64_t size) {
  const chipmesh_device_t& d = device();
  if (!d.attach_host_arena) return false;
  check(d.attach_host_arena(fd, size), "attach_host_arena");
  return true;
}

ChipWorker::HostRange ChipWorker::host_range(uint64_t ptr, size_t nbytes) {
  HostRange r;
  const chipmesh_device_t& d = device();
  if (d.host_range) check(d.host_range(ptr, nbytes, &r.host, &r.arena_offset), "host_range");
  return r;
}

int ChipWorker::launch(chipmesh_kernel_fn fn, void* args) {
  int rc = device().launch_kernel(fn, args, nullptr);
  // Platform failures carry a message; a kernel's own non-zero status is its result.
  if (rc != CHIPMESH_SUCCESS && device_->last_error && *device_->last_error()) check(rc, "launch");
  return rc;
}

uint64_t ChipWorker::comm_init(int rank, int nranks, const std::string& rootinfo_path) {
  const chipmesh_transport_t& t = transport();
  chipmesh_comm_options_t options{};
  options.struct_size = sizeof(options);
  options.job_token = job_token_ ? job_token_->c_str() : nullptr;
  if (comm_timeout_) options.timeout_ms = static_cast<uint64_t>(std::max<int64_t>(comm_timeout_->count(), 1));
  CommHandle h = t.comm_init(rank, nranks, nullptr, rootinfo_path.c_str(), &options);
  if (!h) {
    int code = t.last_error_code();
    check_comm(code != CHIPMESH_SUCCESS ? code : CHIPMESH_ERR_INTERNAL, "comm_init");
  }
  return reinterpret_cast<uint64_t>(h);
}

uint64_t ChipWorker::comm_alloc_windows(uint64_t comm, size_t window_size) {
  uint64_t ctx = 0;
  check_comm(transport().alloc_windows(reinterpret_cast<CommHandle>(comm), window_size, &ctx), "comm_alloc_windows");
  return ctx;
}

uint64_t ChipWorker::comm_get_local_window_base(uint64_t comm) {
  uint64_t base = 0;
  check_comm(transport().local_window_base(reinterpret_cast<CommHandle>(comm), &base), "comm_get_local_window_base");
  return base;
}

size_t ChipWorker::comm_get_window_size(uint64_t comm) {
  size_t size = 0;
  check_comm(transport().window_size(reinterpret_cast<CommHandle>(comm), &size), "comm_get_window_size");
  return size;
}

void ChipWorker::comm_barrier(uint64_t comm) {
  check_comm(transport().barrier(reinterpret_cast<CommHandle>(comm)), "comm_barrier");
}

void ChipWorker::comm_destroy(uint64_t comm) {
  check_comm(transport().destroy(reinterpret_cast<CommHandle>(comm)), "comm_destroy");
}

void ChipWorker::shutdown_bootstrap() {
  outputs_.clear();  // detaches; the parent owns (and unlinks) the names
  // Clear first: a destroy that fails must not be retried on a freed handle.
  uint64_t comm = bootstrap_comm_;
  bootstrap_comm_ = 0;
  if (comm != 0) comm_destroy(comm);
}

}  // namespace chipmesh

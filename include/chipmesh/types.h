// Element types and the bring-up configuration of one chip.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chipmesh {

enum class DataType : uint8_t {
  FLOAT32, FLOAT16, BFLOAT16, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT64
};

// Bytes per element; ConfigError for a value outside the enum.
size_t dtype_size(DataType dtype);
// "float32", "bfloat16", ...; ConfigError for a value outside the enum.
std::string_view dtype_name(DataType dtype);
// Inverse of dtype_name; ConfigError naming the unknown string.
DataType dtype_from_name(std::string_view name);

// The communicator a chip joins. window_size is a request: the platform may
// round it up (sim: to the page size). rootinfo_path: where the ranks meet;
// left empty in a Worker's config, the chips meet in the Worker's shared
// memory (nothing on disk; with CHIPMESH_RENDEZVOUS_DIR set, in a private
// directory there that the Worker, or its chips should it die first,
// removes). ChipWorker users must give one.
struct ChipCommBootstrapConfig {
  int rank = 0;
  int nranks = 1;
  std::string rootinfo_path;
  size_t window_size = 0;
};

// A named buffer carved out of the chip's window. nbytes must equal
// count * dtype_size(dtype). Only placement "window" exists.
struct ChipBufferSpec {
  std::string name;
  DataType dtype = DataType::FLOAT32;
  size_t count = 0;
  size_t nbytes = 0;
  std::string placement = "window";
  bool load_from_host = false;  // filled from host_inputs[name] at bring-up
  bool store_to_host = false;   // copied to host_outputs[name] after tasks
};

// A named POSIX shared-memory region on the host side of a buffer.
struct HostBufferStaging {
  std::string name;      // the buffer it belongs to
  std::string shm_name;  // "/..." as for shm_open
  size_t size = 0;       // bytes; must equal the buffer's nbytes
  // Where the bytes start in the object: 0, except for inputs that
  // Worker::stage_input placed inside the chip's window file (at the
  // buffer's window offset), which bring-up then finds in place.
  uint64_t offset = 0;
};

struct ChipBootstrapConfig {
  std::optional<ChipCommBootstrapConfig> comm;
  std::vector<ChipBufferSpec> buffers;
  std::vector<HostBufferStaging> host_inputs;
  std::vector<HostBufferStaging> host_outputs;

  // ConfigError naming the buffer when absent.
  const HostBufferStaging& input_staging(std::string_view name) const;
  const HostBufferStaging& output_staging(std::string_view name) const;
};

struct ChipBootstrapResult {
  uint64_t device_ctx = 0;
  uint64_t local_window_base = 0;
  uint64_t actual_window_size = 0;
  std::vector<uint64_t> buffer_ptrs;  // 1:1 with ChipBootstrapConfig::buffers
};

// Checks a whole config before any device effect (step 1 of bootstrap):
// unique names, known placements, nbytes == count * dtype_size, staging
// present and of the buffer's size, no buffers without a communicator.
// Throws ConfigError naming the offending buffer and values.
void validate_bootstrap_config(const ChipBootstrapConfig& cfg);

}  // namespace chipmesh

// Step 1 of bring-up: everything that can be checked without a device is
// checked here, so no config error can surface after SUCCESS was published.
#include <set>
#include <string>

#include "chipmesh/comm.h"
#include "chipmesh/errors.h"
#include "chipmesh/types.h"

namespace chipmesh {
namespace {

void check_staging_list(const std::vector<HostBufferStaging>& list, const char* kind) {
  std::set<std::string> seen;
  for (const auto& s : list) {
    if (s.name.empty()) throw ConfigError(std::string(kind) + " staging with an empty buffer name");
    if (!seen.insert(s.name).second)
      throw ConfigError(std::string(kind) + " staging for buffer '" + s.name + "' is listed twice");
    if (s.size != 0 && (s.shm_name.size() < 2 || s.shm_name[0] != '/'))
      throw ConfigError(std::string(kind) + " staging for buffer '" + s.name + "' has shm_name '" + s.shm_name +
                        "', which is not of the form \"/name\"");
  }
}

void check_staging_size(const ChipBufferSpec& b, const HostBufferStaging& s, const char* kind) {
  if (s.size != b.nbytes)
    throw ConfigError("buffer '" + b.name + "' (nbytes=" + std::to_string(b.nbytes) + ") has " + kind +
                      " staging '" + s.shm_name + "' of size " + std::to_string(s.size));
}

}  // namespace

void validate_bootstrap_config(const ChipBootstrapConfig& cfg) {
  if (cfg.comm) {
    const auto& c = *cfg.comm;
    if (c.nranks < 1 || c.nranks > CHIPMESH_MAX_RANKS)
      throw ConfigError("comm.nranks=" + std::to_string(c.nranks) + " is outside [1, " +
                        std::to_string(CHIPMESH_MAX_RANKS) + "]");
    if (c.rank < 0 || c.rank >= c.nranks)
      throw ConfigError("comm.rank=" + std::to_string(c.rank) + " is outside [0, nranks=" + std::to_string(c.nranks) + ")");
    if (c.rootinfo_path.empty()) throw ConfigError("comm.rootinfo_path is empty");
    if (c.window_size == 0) throw ConfigError("comm.window_size must be > 0");
  } else if (!cfg.buffers.empty()) {
    throw ConfigError("config has " + std::to_string(cfg.buffers.size()) + " buffers (first '" +
                      cfg.buffers.front().name + "') but no comm: buffers are carved from the communicator window");
  }

  check_staging_list(cfg.host_inputs, "host input");
  check_staging_list(cfg.host_outputs, "host output");

  std::set<std::string> names;
  for (const auto& b : cfg.buffers) {
    if (b.name.empty()) throw ConfigError("a buffer has an empty name");
    if (!names.insert(b.name).second) throw ConfigError("buffer name '" + b.name + "' is used twice");
    if (b.placement != "window")
      throw ConfigError("buffer '" + b.name + "' has placement '" + b.placement + "'; only \"window\" exists");
    size_t expected = 0;
    if (__builtin_mul_overflow(b.count, dtype_size(b.dtype), &expected))
      throw ConfigError("buffer '" + b.name + "': count=" + std::to_string(b.count) + " of " +
                        std::string(dtype_name(b.dtype)) + " overflows size_t");
    if (b.nbytes != expected)
      throw ConfigError("buffer '" + b.name + "': nbytes=" + std::to_string(b.nbytes) + " but count=" +
                        std::to_string(b.count) + " x " + std::string(dtype_name(b.dtype)) + " (" +
                        std::to_string(dtype_size(b.dtype)) + " bytes) = " + std::to_string(expected));
    if (b.load_from_host) check_staging_size(b, cfg.input_staging(b.name), "input");
    if (b.store_to_host) check_staging_size(b, cfg.output_staging(b.name), "output");
  }
  // Sizes adding up against the window is checked after the platform says how
  // big the window really is (step 4); here only that the sum is finite.
  size_t total = 0;
  for (const auto& b : cfg.buffers)
    if (__builtin_add_overflow(total, b.nbytes, &total))
      throw ConfigError("buffers add up to more than size_t can hold (at '" + b.name + "')");
}

}  // namespace chipmesh

#include "common/env.h"

#include <cerrno>
#include <cstdlib>
#include <string>

#include "chipmesh/errors.h"

namespace chipmesh::env {
namespace {

// Unset -> fallback; set but not a number in [lo, hi] -> ConfigError naming it.
long long read_integer(const char* name, long long fallback, long long lo, long long hi) {
  const char* raw = std::getenv(name);
  if (raw == nullptr || *raw == '\0') return fallback;
  errno = 0;
  char* end = nullptr;
  long long value = std::strtoll(raw, &end, 10);
  if (errno != 0 || end == raw || *end != '\0' || value < lo || value > hi) {
    throw ConfigError(std::string(name) + "='" + raw + "' is not an integer in [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return value;
}

std::string read_string(const char* name) {
  const char* raw = std::getenv(name);
  return raw ? std::string(raw) : std::string();
}

}  // namespace

std::chrono::milliseconds comm_timeout() {
  return std::chrono::seconds(read_integer("CHIPMESH_COMM_TIMEOUT_S", 120, 1, 86400));
}

std::string platform_path() { return read_string("CHIPMESH_PLATFORM_PATH"); }

std::string job_token() { return read_string("CHIPMESH_JOB_TOKEN"); }

int sim_num_devices() {
  return static_cast<int>(read_integer("CHIPMESH_SIM_NUM_DEVICES", 64, 1, 4096));
}

size_t sim_workspace_bytes() {
  return static_cast<size_t>(read_integer("CHIPMESH_SIM_WORKSPACE_BYTES", 64 << 10, 0, 1LL << 34));
}

}  // namespace chipmesh::env

#include "common/status_map.h"

#include "chipmesh/errors.h"
#include "logging/log.h"

namespace chipmesh {

chipmesh_status status_of(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return CHIPMESH_ERR_CONFIG;
  if (dynamic_cast<const CommError*>(&e)) return CHIPMESH_ERR_COMM;
  if (dynamic_cast<const DeviceError*>(&e)) return CHIPMESH_ERR_DEVICE;
  if (dynamic_cast<const TimeoutError*>(&e)) return CHIPMESH_ERR_TIMEOUT;
  return CHIPMESH_ERR_INTERNAL;
}

const char* status_kind(int status) {
  switch (status) {
    case CHIPMESH_ERR_CONFIG: return "ConfigError";
    case CHIPMESH_ERR_COMM: return "CommError";
    case CHIPMESH_ERR_DEVICE: return "DeviceError";
    case CHIPMESH_ERR_TIMEOUT: return "TimeoutError";
    default: return "InternalError";
  }
}

void throw_status(int status, const std::string& message) {
  switch (status) {
    case CHIPMESH_ERR_CONFIG: throw ConfigError(message);
    case CHIPMESH_ERR_COMM: throw CommError(message);
    case CHIPMESH_ERR_DEVICE: throw DeviceError(message);
    case CHIPMESH_ERR_TIMEOUT: throw TimeoutError(message);
    default: throw InternalError(message);
  }
}

int LastError::set(int status, const char* message) noexcept {
  // Every exception caught at a plugin's C boundary lands here once: its
  // breadcrumb, in the process (and chip) that detected it.
  CHIPMESH_WARN(PLUGIN, "%s: %s", status_kind(status), message ? message : "");
  code_ = status;
  try {
    message_ = message ? message : "";
  } catch (...) {
    message_.clear();  // out of memory: the code still tells the kind
  }
  return status;
}

}  // namespace chipmesh

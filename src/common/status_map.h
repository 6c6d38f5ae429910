// Crossing C boundaries: exceptions -> chipmesh_status + message, and back.
#pragma once

#include <exception>
#include <string>

#include "chipmesh/status.h"

namespace chipmesh {

// The status code for an exception (Error kinds map 1:1; others INTERNAL).
chipmesh_status status_of(const std::exception& e);
// "ConfigError", "CommError", ... for a status code.
const char* status_kind(int status);
// Throws the Error subtype matching `status` with `message`.
[[noreturn]] void throw_status(int status, const std::string& message);

// Per-thread last-error slot for a C API: run `body`, return 0, or catch
// everything, store its message and return its status. A failure leaves one
// WARN line (CHIPMESH_DEBUG=WARN, subsystem PLUGIN) where it was caught.
class LastError {
 public:
  template <typename F>
  int guard(F&& body) noexcept {
    code_ = CHIPMESH_SUCCESS;
    message_.clear();  // keeps capacity: no allocation on the success path
    try {
      body();
      return CHIPMESH_SUCCESS;
    } catch (const std::exception& e) {
      return set(status_of(e), e.what());
    } catch (...) {
      return set(CHIPMESH_ERR_INTERNAL, "unknown exception");
    }
  }
  int set(int status, const char* message) noexcept;
  const char* message() const noexcept { return message_.c_str(); }
  int code() const noexcept { return code_; }

 private:
  std::string message_;
  int code_ = CHIPMESH_SUCCESS;
};

}  // namespace chipmesh

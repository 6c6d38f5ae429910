// Typed errors thrown inside chipmesh's C++ layers. The C boundaries (platform
// ABI, communicator C API) turn them into chipmesh_status codes plus a
// thread-local message; ChipWorker turns codes back into these types.
#pragma once

#include <stdexcept>
#include <string>

namespace chipmesh {

class Error : public std::runtime_error {
 public:
  Error(std::string kind, const std::string& message)
      : std::runtime_error(message), kind_(std::move(kind)) {}
  // The type's name ("ConfigError", ...), used in "<kind>: <message>" reports.
  const std::string& kind() const noexcept { return kind_; }

 private:
  std::string kind_;
};

#define CHIPMESH_DEFINE_ERROR(Name)                                         \
  class Name : public Error {                                               \
   public:                                                                  \
    explicit Name(const std::string& message) : Error(#Name, message) {}    \
  }

// Bad input: arguments, configuration, layout that cannot work.
CHIPMESH_DEFINE_ERROR(ConfigError);
// The communicator failed: rendezvous, a dead or disagreeing peer.
CHIPMESH_DEFINE_ERROR(CommError);
// The device or platform failed: plugin loading, memory, copies.
CHIPMESH_DEFINE_ERROR(DeviceError);
// A wait ran past its deadline.
CHIPMESH_DEFINE_ERROR(TimeoutError);
// A broken invariant inside chipmesh itself.
CHIPMESH_DEFINE_ERROR(InternalError);

#undef CHIPMESH_DEFINE_ERROR

// "<kind>: <message>", the form published on a bootstrap mailbox.
inline std::string describe(const Error& e) { return e.kind() + ": " + e.what(); }

// describe() of the exception in flight (call inside a catch block);
// exceptions that are not chipmesh errors read "InternalError: ...".
inline std::string describe_current_exception() {
  try {
    throw;
  } catch (const Error& e) {
    return describe(e);
  } catch (const std::exception& e) {
    return std::string("InternalError: ") + e.what();
  } catch (...) {
    return "InternalError: unknown exception";
  }
}

}  // namespace chipmesh

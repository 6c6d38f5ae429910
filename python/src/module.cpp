// The chipmesh._core extension: the C++ API of chipmesh for Python. The
// exception classes live in chipmesh/_errors.py; C++ errors are translated
// into them here, keeping their kind (ConfigError stays a ValueError, ...).
#include <string>

#include "chipmesh/version.h"
#include "chipmesh/worker.h"
#include "common.h"

namespace chipmesh::py_ext {
namespace {

// The Python classes of chipmesh._errors, looked up once at import (kept
// for the life of the process, as module state of an extension is).
struct ErrorClasses {
  py::handle error, config, comm, device, timeout, chip;
};
ErrorClasses g_errors;

py::handle lookup(const py::module_& errors, const char* name) { return py::object(errors.attr(name)).release(); }

void translate(std::exception_ptr p) {
  try {
    std::rethrow_exception(p);
  } catch (const ChipError& e) {
    py::object exc = g_errors.chip(e.what(), e.chip(), e.device_id(), static_cast<long>(e.pid()), e.cause());
    PyErr_SetObject(g_errors.chip.ptr(), exc.ptr());
  } catch (const Error& e) {
    py::handle cls = g_errors.error;
    if (e.kind() == "ConfigError")
      cls = g_errors.config;
    else if (e.kind() == "CommError")
      cls = g_errors.comm;
    else if (e.kind() == "DeviceError")
      cls = g_errors.device;
    else if (e.kind() == "TimeoutError")
      cls = g_errors.timeout;
    PyErr_SetString(cls.ptr(), e.what());
  }
}

}  // namespace

size_t to_size(int64_t value, const char* what) {
  if (value < 0) throw ConfigError(std::string(what) + " must be >= 0, got " + std::to_string(value));
  return static_cast<size_t>(value);
}

}  // namespace chipmesh::py_ext

PYBIND11_MODULE(_core, m) {
  using namespace chipmesh::py_ext;
  m.doc() = "chipmesh's C++ core for Python; import the `chipmesh` package, not this module.";
  py::module_ errors = py::module_::import("chipmesh._errors");
  g_errors = ErrorClasses{lookup(errors, "Error"),       lookup(errors, "ConfigError"),
                          lookup(errors, "CommError"),   lookup(errors, "DeviceError"),
                          lookup(errors, "TimeoutError"), lookup(errors, "ChipError")};
  py::register_exception_translator(&translate);
  m.attr("__version__") = CHIPMESH_VERSION_STRING;
  register_types(m);
  register_chip_worker(m);
  // Classes before the functions that take or return them, so that
  // signatures in docstrings name the Python classes.
  register_tasks(m);
  register_orchestrator(m);
  register_worker(m);
}

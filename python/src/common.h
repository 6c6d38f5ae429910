// Shared helpers of the chipmesh Python extension (_core): argument
// conversion (sizes, dtypes, buffers) and the one way a blocking call runs
// (GIL released, pending signals checked when it fails).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include "chipmesh/errors.h"
#include "chipmesh/types.h"

namespace chipmesh::py_ext {

namespace py = pybind11;

// Each part registers its classes and functions on the module.
void register_types(py::module_& m);
void register_chip_worker(py::module_& m);
void register_tasks(py::module_& m);         // ChipContext, TensorArg, Task
void register_orchestrator(py::module_& m);  // DomainContext, CommDomain, Orchestrator (after Task)
void register_worker(py::module_& m);        // Worker (after CommDomain)

// A size from Python: ConfigError (a ValueError) for a negative value,
// naming `what`.
size_t to_size(int64_t value, const char* what);

// "float32", a numpy dtype (or anything numpy.dtype() accepts) or a
// chipmesh.DataType; ConfigError naming the value otherwise.
DataType to_dtype(const py::handle& obj);

// A contiguous view of a Python buffer (bytes, bytearray, memoryview, numpy
// array, ...), held for the object's lifetime: no copy is made. ConfigError
// for a non-contiguous buffer, a read-only one when `writable`, or one
// smaller than the nbytes asked; TypeError for an object without the buffer
// protocol. `what` names the argument in messages.
class BufferView {
 public:
  BufferView(const py::handle& obj, bool writable, const char* what);
  ~BufferView();
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  void* data() const { return view_.buf; }
  size_t size() const { return static_cast<size_t>(view_.len); }
  // nbytes: None -> the whole buffer; otherwise checked against size().
  size_t resolve(const py::object& nbytes, const char* what) const;

 private:
  Py_buffer view_{};
};

// Runs `fn` with the GIL released. When it throws, the signal handlers due
// are run first (on the main thread), so a Ctrl-C that broke the call
// surfaces as KeyboardInterrupt rather than as the error it caused.
template <typename F>
auto blocking(F&& fn) -> decltype(fn()) {
  std::exception_ptr err;
  if constexpr (std::is_void_v<decltype(fn())>) {
    {
      py::gil_scoped_release nogil;
      try {
        fn();
        return;
      } catch (...) {
        err = std::current_exception();
      }
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    std::rethrow_exception(err);
  } else {
    {
      py::gil_scoped_release nogil;
      try {
        return fn();
      } catch (...) {
        err = std::current_exception();
      }
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    std::rethrow_exception(err);
  }
}

}  // namespace chipmesh::py_ext

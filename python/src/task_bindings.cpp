// ChipContext, TensorArg and Task: what init() tells about the chips and
// what a kernel call carries.
#include <string>
#include <vector>

#include "chipmesh/worker.h"
#include "common.h"

namespace chipmesh::py_ext {
namespace {

std::vector<uint64_t> to_shape(const py::object& shape) {
  if (py::isinstance<py::int_>(shape)) return {to_size(shape.cast<int64_t>(), "shape")};
  std::vector<uint64_t> out;
  for (const py::handle& d : shape) out.push_back(to_size(d.cast<int64_t>(), "shape"));
  return out;
}

std::vector<uint64_t> to_scalars(const py::object& scalars) {
  std::vector<uint64_t> out;
  for (const py::handle& s : scalars) {
    const auto v = s.cast<py::int_>();
    if (PyObject_RichCompareBool(v.ptr(), py::int_(0).ptr(), Py_LT) == 1)
      out.push_back(static_cast<uint64_t>(v.cast<int64_t>()));  // two's complement, as C would pass it
    else
      out.push_back(v.cast<uint64_t>());
  }
  return out;
}

}  // namespace

void register_tasks(py::module_& m) {
  py::class_<ChipContext>(m, "ChipContext", "What init() tells about one chip.")
      .def_readonly("device_id", &ChipContext::device_id, "The chip's device id.")
      .def_readonly("rank", &ChipContext::rank, "-1 without a communicator.")
      .def_readonly("nranks", &ChipContext::nranks, "Ranks of its communicator (0 without one).")
      .def_readonly("device_ctx", &ChipContext::device_ctx, "Device address of the CommContext.")
      .def_readonly("local_window_base", &ChipContext::local_window_base, "Device address of its window.")
      .def_readonly("actual_window_size", &ChipContext::actual_window_size, "Window bytes granted.")
      .def_readonly("buffer_ptrs", &ChipContext::buffer_ptrs, "Buffer name -> device address (dict).")
      .def("__repr__", [](const ChipContext& c) {
        return "ChipContext(device_id=" + std::to_string(c.device_id) + ", rank=" + std::to_string(c.rank) +
               ", nranks=" + std::to_string(c.nranks) + ", local_window_base=" + std::to_string(c.local_window_base) +
               ", actual_window_size=" + std::to_string(c.actual_window_size) +
               ", buffer_ptrs=" + py::repr(py::cast(c.buffer_ptrs)).cast<std::string>() + ")";
      });

  py::class_<TensorArg>(m, "TensorArg", "A tensor argument of a kernel: an address in the chip's device space.")
      .def(py::init([](uint64_t addr, const py::object& dtype, const py::object& shape) {
             return TensorArg{addr, to_dtype(dtype), to_shape(shape)};
           }),
           py::arg("addr"), py::arg("dtype") = "float32", py::arg("shape") = py::make_tuple())
      .def_readwrite("addr", &TensorArg::addr, "Device address in the chip's address space.")
      .def_property(
          "dtype", [](const TensorArg& t) { return t.dtype; },
          [](TensorArg& t, const py::object& d) { t.dtype = to_dtype(d); }, "Element type (a DataType).")
      .def_property(
          "shape", [](const TensorArg& t) { return t.shape; },
          [](TensorArg& t, const py::object& s) { t.shape = to_shape(s); }, "Dimensions (at most 8).")
      .def("__repr__", [](const TensorArg& t) {
        return "TensorArg(addr=" + std::to_string(t.addr) + ", dtype='" + std::string(dtype_name(t.dtype)) +
               "', shape=" + py::repr(py::cast(t.shape)).cast<std::string>() + ")";
      });

  py::class_<Task>(m, "Task",
                   "One kernel call. library: path of a kernel library, \"\" for the built-in kernels.")
      .def(py::init([](std::string kernel, std::string library, std::vector<TensorArg> tensors,
                       const py::object& scalars, bool flush_outputs) {
             Task t{std::move(kernel), std::move(library), std::move(tensors), to_scalars(scalars)};
             t.flush_outputs = flush_outputs;
             return t;
           }),
           py::arg("kernel"), py::arg("library") = "", py::arg("tensors") = std::vector<TensorArg>{},
           py::arg("scalars") = py::list(), py::arg("flush_outputs") = true)
      .def_readwrite("kernel", &Task::kernel, "Exported kernel function name.")
      .def_readwrite("library", &Task::library, "Kernel library path; \"\" for the built-in kernels.")
      .def_readwrite("tensors", &Task::tensors, "List of TensorArg (copied on read and assignment).")
      .def_property(
          "scalars", [](const Task& t) { return t.scalars; },
          [](Task& t, const py::object& s) { t.scalars = to_scalars(s); }, "List of int (uint64).")
      .def_readwrite("flush_outputs", &Task::flush_outputs,
                     "After success, copy the store_to_host buffers to host staging (default); False leaves it to "
                     "Orchestrator.flush_outputs.")
      .def("__repr__", [](const Task& t) {
        return "Task(kernel=" + py::repr(py::str(t.kernel)).cast<std::string>() +
               ", library=" + py::repr(py::str(t.library)).cast<std::string>() +
               ", tensors=" + py::repr(py::cast(t.tensors)).cast<std::string>() +
               ", scalars=" + py::repr(py::cast(t.scalars)).cast<std::string>() + ")";
      });
}

}  // namespace chipmesh::py_ext

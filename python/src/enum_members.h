// Enum arguments known by identity. pybind11 finds a bound C++ type by
// hashing its name at every isinstance() and cast() (~35 ns each on the PVM
// guest); a collective's dtype, op and algo made six such lookups per call,
// a fifth of what a small allreduce costs from Python. An enum's members are
// objects its class keeps for the module's life, so each is recorded once,
// when the enum is bound, and recognised by its address.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>
#include <vector>

namespace chipmesh::py_ext {

namespace py = pybind11;

template <typename E>
class EnumMembers {
 public:
  // After the enum_<E> is bound, with its class. A reference to each member
  // is kept (never dropped: they outlive the interpreter's teardown order).
  static void record(const py::handle& cls) {
    for (auto item : cls.attr("__members__").cast<py::dict>())
      table().emplace_back(item.second.inc_ref().ptr(), item.second.cast<E>());
  }
  // True, with its value, when `obj` is one of the recorded members; false
  // for anything else (callers then take pybind11's own way).
  static bool find(const py::handle& obj, E* out) {
    for (const auto& [member, value] : table())
      if (member == obj.ptr()) {
        *out = value;
        return true;
      }
    return false;
  }

 private:
  static std::vector<std::pair<PyObject*, E>>& table() {
    static std::vector<std::pair<PyObject*, E>> members;  // written at import, read under the GIL
    return members;
  }
};

}  // namespace chipmesh::py_ext

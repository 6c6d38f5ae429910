// Communication domains (DomainContext, CommDomain) and the Orchestrator
// that Worker.run() hands to its function: tasks, domains and collectives.
#include <string>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "common.h"
#include "enum_members.h"
#include "py_orchestrator.h"

namespace chipmesh::py_ext {
namespace {

// ReduceOp / AllreduceAlgo from an enum value or its name ("sum", "ring").
ReduceOp to_op(const py::object& op) {
  if (ReduceOp o; EnumMembers<ReduceOp>::find(op, &o)) return o;
  if (py::isinstance<py::str>(op)) return parse_reduce_op(op.cast<std::string>());
  if (py::isinstance<ReduceOp>(op)) return op.cast<ReduceOp>();
  throw ConfigError("op must be a chipmesh.ReduceOp or one of \"sum\", \"prod\", \"max\", \"min\", got " +
                    py::repr(op).cast<std::string>());
}
AllreduceAlgo to_algo(const py::object& algo) {
  if (AllreduceAlgo a; EnumMembers<AllreduceAlgo>::find(algo, &a)) return a;
  if (py::isinstance<py::str>(algo)) return parse_allreduce_algo(algo.cast<std::string>());
  if (py::isinstance<AllreduceAlgo>(algo)) return algo.cast<AllreduceAlgo>();
  throw ConfigError("algo must be a chipmesh.AllreduceAlgo or one of \"auto\", \"onephase\", \"twophase\", \"ring\", "
                    "got " + py::repr(algo).cast<std::string>());
}

// One device address per domain rank: a sequence of ints (numpy integers
// too). ConfigError for a negative address; TypeError for anything else.
// A list or tuple is read in place (no iterator), and an int converts with
// one call; the comparisons that name a bad value run only for one.
std::vector<uint64_t> to_addrs(const py::handle& obj, const char* what) {
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) || !py::isinstance<py::iterable>(obj))
    throw py::type_error(std::string(what) + " must be a buffer name (str) or a list of int device addresses, one per "
                         "domain rank; got " + py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
  const auto seq = py::reinterpret_steal<py::object>(PySequence_Fast(obj.ptr(), what));
  if (!seq) throw py::error_already_set();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
  std::vector<uint64_t> out;
  out.reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    auto at = [&] { return std::string(what) + "[" + std::to_string(i) + "]"; };
    PyObject* idx = PyNumber_Index(items[i]);
    if (!idx) {
      PyErr_Clear();
      throw py::type_error(at() + " must be an int device address, got " +
                           py::repr(py::handle(items[i])).cast<std::string>());
    }
    const auto v = py::reinterpret_steal<py::int_>(idx);
    const unsigned long long a = PyLong_AsUnsignedLongLong(idx);
    if (a == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
      PyErr_Clear();
      if (PyObject_RichCompareBool(idx, py::int_(0).ptr(), Py_LT) == 1)
        throw ConfigError(at() + " is a negative address (" + py::repr(v).cast<std::string>() + ")");
      throw ConfigError(at() + " does not fit in 64 bits");
    }
    out.push_back(a);
  }
  return out;
}

// The two forms of in_ / out: both buffer names (resolved per member by the
// C++ API) or both address lists. Calls by_name(in, out) or by_addr(in, out)
// with the GIL released.
template <typename ByName, typename ByAddr>
void dispatch_io(const char* what, const py::object& in, const py::object& out, ByName&& by_name, ByAddr&& by_addr) {
  const bool in_name = py::isinstance<py::str>(in), out_name = py::isinstance<py::str>(out);
  if (in_name && out_name) {
    const auto i = in.cast<std::string>(), o = out.cast<std::string>();
    blocking([&] { by_name(i, o); });
    return;
  }
  if (in_name != out_name)
    throw ConfigError(std::string("Orchestrator.") + what +
                      ": in_ and out must both be buffer names (str) or both lists of device addresses");
  const auto i = to_addrs(in, "in_"), o = to_addrs(out, "out");
  blocking([&] { by_addr(i, o); });
}

std::string repr(const DomainContext& c) {
  return "DomainContext(chip=" + std::to_string(c.chip) + ", domain_rank=" + std::to_string(c.domain_rank) +
         ", domain_size=" + std::to_string(c.domain_size) + ", device_ctx=" + std::to_string(c.device_ctx) +
         ", local_window_base=" + std::to_string(c.local_window_base) +
         ", actual_window_size=" + std::to_string(c.actual_window_size) +
         ", buffer_ptrs=" + py::repr(py::cast(c.buffer_ptrs)).cast<std::string>() + ")";
}

}  // namespace

void register_orchestrator(py::module_& m) {
  py::class_<DomainContext>(m, "DomainContext", "One member chip's view of a communication domain.")
      .def_readonly("chip", &DomainContext::chip, "The chip (index into the Worker's device_ids).")
      .def_readonly("domain_rank", &DomainContext::domain_rank, "Its rank in the domain (dense, in the order of chips).")
      .def_readonly("domain_size", &DomainContext::domain_size, "Members of the domain.")
      .def_readonly("device_ctx", &DomainContext::device_ctx, "Device address of the member's CommContext.")
      .def_readonly("local_window_base", &DomainContext::local_window_base, "Device address of its window.")
      .def_readonly("actual_window_size", &DomainContext::actual_window_size, "Window bytes granted.")
      .def_readonly("buffer_ptrs", &DomainContext::buffer_ptrs, "Buffer name -> device address (dict).")
      .def("__repr__", [](const DomainContext& c) { return repr(c); });

  py::class_<CommDomain> domain_class(m, "CommDomain", py::dynamic_attr(),
                         "A communication domain: a communicator over some of a Worker's chips, one window per "
                         "member (docs/collectives.md). A value handle: copies refer to the same domain. Get one "
                         "from Worker.world() or Orchestrator.allocate_domain(); pass it to the Orchestrator's collectives.");
  domain_class
      .def_property_readonly("name", &CommDomain::name, "The domain's name (\"world\" for Worker.world()).")
      .def_property_readonly("chips", &CommDomain::chips, "Domain rank -> chip index (a list).")
      .def_property_readonly("size", &CommDomain::size, "Members of the domain.")
      .def_property_readonly("allocation_id", &CommDomain::allocation_id, "Id of this allocation (0 for world).")
      .def_property_readonly("released", &CommDomain::released, "True once the domain has been released.")
      .def("context", [](const CommDomain& d, int chip) { return d.context(chip); }, py::arg("chip"),
           "The DomainContext of a member, by chip index (as in device_ids); ConfigError if it is not a member.")
      .def("rank_of", &CommDomain::rank_of, py::arg("chip"), "Domain rank of a chip, -1 if it is not a member.")
      .def_property_readonly("spans_hosts", &CommDomain::spans_hosts,
                             "True for a domain over chips of several hosts (docs/multi-host.md); chips, size and "
                             "rank_of are then this host's members.")
      .def_property_readonly("global_size", &CommDomain::global_size, "Members of every host (size on one host).")
      .def("global_rank_of", &CommDomain::global_rank_of, py::arg("chip"),
           "Global domain rank of a member chip of this host (members of lower hosts first for world()), -1 if "
           "it is not a member.")
      .def("__len__", &CommDomain::size, "Members of the domain.")
      .def("__eq__",
           [](const CommDomain& a, const py::object& b) {
             return py::isinstance<CommDomain>(b) && a.state() == b.cast<const CommDomain&>().state();
           })
      .def("__hash__", [](const CommDomain& d) { return std::hash<const void*>{}(d.state().get()); })
      .def("__repr__", [](const CommDomain& d) {
        if (!d.state()) return std::string("CommDomain(<none>)");
        return "CommDomain(name=" + py::repr(py::str(d.name())).cast<std::string>() +
               ", chips=" + py::repr(py::cast(d.chips())).cast<std::string>() +
               ", allocation_id=" + std::to_string(d.allocation_id()) +
               (d.released() ? ", released=True" : "") + ")";
      });
  // A domain from Orchestrator.allocate_domain is also a context manager:
  // __exit__ releases it through the Orchestrator that made it (kept on the
  // instance as _orchestrator; world() has none and is never released).
  domain_class
      .def("__enter__", [](const py::object& self) { return self; })
      .def(
          "__exit__",
          [](const py::object& self, const py::object&, const py::object&, const py::object&) {
            if (py::hasattr(self, "_orchestrator")) self.attr("_orchestrator").attr("release_domain")(self);
            return false;
          },
          "Releases the domain (Orchestrator.release_domain); an exception in the block propagates unchanged.");

  py::class_<PyOrchestrator>(m, "Orchestrator", "Handed to Worker.run's function: submits tasks.")
      .def(
          "submit",
          [](PyOrchestrator& o, int chip, const Task& t) { blocking([&] { o.get().submit(chip, t); }); },
          py::arg("chip"), py::arg("task"), "One task on one chip (chip = index into device_ids).")
      .def(
          "submit_group",
          [](PyOrchestrator& o, const std::vector<int>& chips, const py::object& tasks) {
            if (py::isinstance<Task>(tasks)) {
              const Task t = tasks.cast<Task>();
              blocking([&] { o.get().submit_group(chips, t); });
            } else {
              const auto list = tasks.cast<std::vector<Task>>();
              blocking([&] { o.get().submit_group(chips, list); });
            }
          },
          py::arg("chips"), py::arg("tasks"),
          "One task per chip (a list, 1:1 with chips) or the same Task on every chip, dispatched all-or-nothing.")
      .def(
          "flush_outputs",
          [](PyOrchestrator& o, const std::vector<int>& chips) { blocking([&] { o.get().flush_outputs(chips); }); },
          py::arg("chips"),
          "Copies each chip's store_to_host buffers to host staging after its earlier tasks (for tasks with "
          "flush_outputs=False); refused (ChipError) on a chip whose last task failed.")
      .def(
          "wait", [](PyOrchestrator& o) { blocking([&] { o.get().wait(); }); },
          "Blocks until every task submitted so far is done; ChipError on the first failure.")
      .def(
          "allocate_domain",
          [](const py::object& self, const std::string& name, const std::vector<int>& chips, int64_t window_size,
             const std::vector<ChipBufferSpec>& buffers) {
            PyOrchestrator& o = self.cast<PyOrchestrator&>();
            const size_t window = to_size(window_size, "window_size");
            CommDomain d;
            blocking([&] { d = o.get().allocate_domain(name, chips, window, buffers); });
            py::object obj = py::cast(d);
            obj.attr("_orchestrator") = self;
            return obj;
          },
          py::arg("name"), py::arg("chips"), py::arg("window_size"), py::arg("buffers") = std::vector<ChipBufferSpec>{},
          "A new communication domain over `chips` (dense ranks in that order), each member with its own window "
          "of at least window_size bytes and the `buffers` carved from it (load_from_host / store_to_host are a "
          "ConfigError). Blocks until every member joined. Usable as a context manager that releases it on exit; "
          "domains still live when run()'s function returns or raises are released by run(). ConfigError for a "
          "live name or bad arguments; ChipError naming a member that failed or died.")
      .def(
          "release_domain",
          [](PyOrchestrator& o, CommDomain& d) { blocking([&] { o.get().release_domain(d); }); }, py::arg("domain"),
          "Destroys the domain's communicator on every live member and frees its name; idempotent. ChipError "
          "naming a member that failed (the domain is released regardless).")
      // Collectives over a domain (include/chipmesh/worker.h, docs/collectives.md). Each is checked
      // (ConfigError before anything is dispatched), dispatched all-or-nothing on the domain's chips and
      // returns at once; wait() or the end of run() waits.
      .def(
          "allreduce",
          [](PyOrchestrator& o, const CommDomain& d0, const py::object& in, const py::object& out, int64_t count,
             const py::object& dtype, const py::object& op, const py::object& algo) {
            const CommDomain d = d0;
            const size_t n = to_size(count, "count");
            const DataType dt = to_dtype(dtype);
            const ReduceOp rop = to_op(op);
            const AllreduceAlgo al = to_algo(algo);
            dispatch_io(
                "allreduce", in, out, [&](const std::string& i, const std::string& x) { o.get().allreduce(d, i, x, n, dt, rop, al); },
                [&](const std::vector<uint64_t>& i, const std::vector<uint64_t>& x) { o.get().allreduce(d, i, x, n, dt, rop, al); });
          },
          py::arg("domain"), py::arg("in_"), py::arg("out"), py::arg("count"), py::arg("dtype"), py::arg("op"),
          py::arg("algo") = AllreduceAlgo::AUTO,
          "Every member's out (count elements) = the members' in_ reduced with op. in_ / out: buffer names (str, "
          "resolved per member) or lists of device addresses, one per domain rank: in the members' windows (at "
          "the same window offsets) or in Worker.malloc memory (moved through the windows in chunks); in_ == out "
          "is in place. dtype: a name, numpy dtype or DataType; op: a ReduceOp "
          "or \"sum\", \"prod\", \"max\", \"min\"; algo: an AllreduceAlgo or its name. ConfigError for bad arguments.")
      .def(
          "allgather",
          [](PyOrchestrator& o, const CommDomain& d0, const py::object& in, const py::object& out,
             int64_t count_per_rank, const py::object& dtype) {
            const CommDomain d = d0;
            const size_t n = to_size(count_per_rank, "count_per_rank");
            const DataType dt = to_dtype(dtype);
            dispatch_io(
                "allgather", in, out, [&](const std::string& i, const std::string& x) { o.get().allgather(d, i, x, n, dt); },
                [&](const std::vector<uint64_t>& i, const std::vector<uint64_t>& x) { o.get().allgather(d, i, x, n, dt); });
          },
          py::arg("domain"), py::arg("in_"), py::arg("out"), py::arg("count_per_rank"), py::arg("dtype"),
          "Every member's out holds domain.size * count_per_rank elements: block j is rank j's in_ (count_per_rank). "
          "in_ / out: buffer names or lists of device addresses, one per domain rank.")
      .def(
          "reduce_scatter",
          [](PyOrchestrator& o, const CommDomain& d0, const py::object& in, const py::object& out,
             int64_t count_per_rank, const py::object& dtype, const py::object& op) {
            const CommDomain d = d0;
            const size_t n = to_size(count_per_rank, "count_per_rank");
            const DataType dt = to_dtype(dtype);
            const ReduceOp rop = to_op(op);
            dispatch_io(
                "reduce_scatter", in, out,
                [&](const std::string& i, const std::string& x) { o.get().reduce_scatter(d, i, x, n, dt, rop); },
                [&](const std::vector<uint64_t>& i, const std::vector<uint64_t>& x) { o.get().reduce_scatter(d, i, x, n, dt, rop); });
          },
          py::arg("domain"), py::arg("in_"), py::arg("out"), py::arg("count_per_rank"), py::arg("dtype"),
          py::arg("op"),
          "in_ holds domain.size * count_per_rank elements on every member; rank r's out (count_per_rank) = block r "
          "of every in_, reduced with op in rank order.")
      .def(
          "broadcast",
          [](PyOrchestrator& o, const CommDomain& d0, const py::object& in, const py::object& out, int64_t count,
             const py::object& dtype, int root) {
            const CommDomain d = d0;
            const size_t n = to_size(count, "count");
            const DataType dt = to_dtype(dtype);
            dispatch_io(
                "broadcast", in, out, [&](const std::string& i, const std::string& x) { o.get().broadcast(d, i, x, n, dt, root); },
                [&](const std::vector<uint64_t>& i, const std::vector<uint64_t>& x) { o.get().broadcast(d, i, x, n, dt, root); });
          },
          py::arg("domain"), py::arg("in_"), py::arg("out"), py::arg("count"), py::arg("dtype"), py::arg("root"),
          "Every member's out (count elements) = in_ of root (a domain rank; ConfigError outside the domain).")
      .def(
          "reduce",
          [](PyOrchestrator& o, const CommDomain& d0, const py::object& in, const py::object& out, int64_t count,
             const py::object& dtype, const py::object& op, int root) {
            const CommDomain d = d0;
            const size_t n = to_size(count, "count");
            const DataType dt = to_dtype(dtype);
            const ReduceOp rop = to_op(op);
            dispatch_io(
                "reduce", in, out, [&](const std::string& i, const std::string& x) { o.get().reduce(d, i, x, n, dt, rop, root); },
                [&](const std::vector<uint64_t>& i, const std::vector<uint64_t>& x) { o.get().reduce(d, i, x, n, dt, rop, root); });
          },
          py::arg("domain"), py::arg("in_"), py::arg("out"), py::arg("count"), py::arg("dtype"), py::arg("op"),
          py::arg("root"),
          "root's out (count elements) = every member's in_ reduced with op in rank order; out is significant on "
          "the root only (root: a domain rank).")
      .def(
          "all_to_all",
          [](PyOrchestrator& o, const CommDomain& d0, const py::object& in, const py::object& out,
             int64_t count_per_peer, const py::object& dtype) {
            const CommDomain d = d0;
            const size_t n = to_size(count_per_peer, "count_per_peer");
            const DataType dt = to_dtype(dtype);
            dispatch_io(
                "all_to_all", in, out, [&](const std::string& i, const std::string& x) { o.get().all_to_all(d, i, x, n, dt); },
                [&](const std::vector<uint64_t>& i, const std::vector<uint64_t>& x) { o.get().all_to_all(d, i, x, n, dt); });
          },
          py::arg("domain"), py::arg("in_"), py::arg("out"), py::arg("count_per_peer"), py::arg("dtype"),
          "in_ and out hold domain.size * count_per_peer elements; block j of rank r's out = block r of rank j's in_.")
      .def(
          "barrier",
          [](PyOrchestrator& o, const CommDomain& d0) {
            const CommDomain d = d0;
            blocking([&] { o.get().barrier(d); });
          },
          py::arg("domain"), "Each member's barrier task returns once every member has entered it.");
}

}  // namespace chipmesh::py_ext

// Element types, the bring-up configuration, the bootstrap mailbox and the
// collectives' typed builders.
#include <cstring>
#include <sstream>

#include "chipmesh/bootstrap_channel.h"
#include "chipmesh/collectives.h"
#include "chipmesh/types.h"
#include "common.h"
#include "enum_members.h"

namespace chipmesh::py_ext {

// ---------------------------------------------------------------------------
// Conversions

namespace {

bool immutable_type(const py::handle& obj) {
#ifdef Py_TPFLAGS_IMMUTABLETYPE
  return PyType_Check(obj.ptr()) &&
         PyType_HasFeature(reinterpret_cast<PyTypeObject*>(obj.ptr()), Py_TPFLAGS_IMMUTABLETYPE);
#else
  (void)obj;
  return false;  // Python < 3.10: no such flag, no caching of types
#endif
}

}  // namespace

DataType to_dtype(const py::handle& obj) {
  // numpy's own conversion costs ~2 us a call, more than the collective it
  // describes: the last numpy dtype or immutable type (np.float32)
  // converted is kept, with a reference, and known by identity. (A class
  // of the user's may carry a `dtype` attribute that changes.)
  static PyObject* last = nullptr;
  static DataType last_dtype{};
  if (DataType d; EnumMembers<DataType>::find(obj, &d)) return d;
  if (obj.ptr() == last) return last_dtype;
  if (py::isinstance<py::str>(obj)) return dtype_from_name(obj.cast<std::string>());
  if (py::isinstance<DataType>(obj)) return obj.cast<DataType>();
  std::string name;
  py::object numpy_dtype;
  try {
    numpy_dtype = py::module_::import("numpy").attr("dtype");
    name = numpy_dtype(obj).attr("name").cast<std::string>();
  } catch (const py::error_already_set&) {
    throw ConfigError("dtype must be a name (\"float32\", \"bfloat16\", ...), a numpy dtype or a chipmesh.DataType, got " +
                      py::repr(obj).cast<std::string>());
  }
  const DataType d = dtype_from_name(name);
  if (immutable_type(obj) || py::isinstance(obj, numpy_dtype)) {
    Py_XDECREF(last);
    last = obj.inc_ref().ptr();
    last_dtype = d;
  }
  return d;
}

BufferView::BufferView(const py::handle& obj, bool writable, const char* what) {
  const int flags = PyBUF_ANY_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj.ptr(), &view_, flags) == 0) return;
  PyErr_Clear();
  const std::string type = py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
  if (!PyObject_CheckBuffer(obj.ptr()))
    throw py::type_error(std::string(what) +
                         " must be an int device address or an object with the buffer protocol (bytes, bytearray, "
                         "memoryview, numpy array), got " + type);
  // Tell which requirement failed.
  Py_buffer probe{};
  if (PyObject_GetBuffer(obj.ptr(), &probe, PyBUF_FULL_RO) == 0) {
    const bool contiguous = PyBuffer_IsContiguous(&probe, 'A') != 0;
    const bool readonly = probe.readonly != 0;
    PyBuffer_Release(&probe);
    if (!contiguous)
      throw ConfigError(std::string(what) + " (" + type +
                        ") is not contiguous; pass a contiguous array (numpy.ascontiguousarray)");
    if (writable && readonly)
      throw ConfigError(std::string(what) + " (" + type + ") is read-only; a writable buffer is needed");
  }
  PyErr_Clear();
  throw ConfigError(std::string(what) + " (" + type + ") cannot be used as a contiguous" +
                    (writable ? " writable" : "") + " buffer");
}

BufferView::~BufferView() { PyBuffer_Release(&view_); }

size_t BufferView::resolve(const py::object& nbytes, const char* what) const {
  if (nbytes.is_none()) return size();
  const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
  if (n > size())
    throw ConfigError(std::string(what) + " holds " + std::to_string(size()) + " bytes, fewer than nbytes = " +
                      std::to_string(n));
  return n;
}

namespace {

std::string normalize_shm_name(std::string name) {
  if (!name.empty() && name[0] != '/') name.insert(name.begin(), '/');
  return name;
}

std::string quoted(const std::string& s) { return py::repr(py::str(s)).cast<std::string>(); }

std::string repr(const ChipCommBootstrapConfig& c) {
  std::ostringstream o;
  o << "ChipCommBootstrapConfig(rank=" << c.rank << ", nranks=" << c.nranks
    << ", rootinfo_path=" << quoted(c.rootinfo_path) << ", window_size=" << c.window_size << ")";
  return o.str();
}
std::string repr(const ChipBufferSpec& b) {
  std::ostringstream o;
  o << "ChipBufferSpec(name=" << quoted(b.name) << ", dtype='" << dtype_name(b.dtype) << "', count=" << b.count
    << ", nbytes=" << b.nbytes << ", placement=" << quoted(b.placement)
    << ", load_from_host=" << (b.load_from_host ? "True" : "False")
    << ", store_to_host=" << (b.store_to_host ? "True" : "False") << ")";
  return o.str();
}
std::string repr(const HostBufferStaging& h) {
  return "HostBufferStaging(name=" + quoted(h.name) + ", shm_name=" + quoted(h.shm_name) +
         ", size=" + std::to_string(h.size) + ")";
}

// A channel over Python-owned memory keeps the owner alive.
struct PyChannel {
  ChipBootstrapChannel channel;
  py::object owner;  // None for a raw address
};

void* channel_address(const py::object& mailbox, py::object* owner) {
  if (py::isinstance<py::int_>(mailbox)) {
    const auto addr = mailbox.cast<uint64_t>();
    if (addr == 0) throw ConfigError("ChipBootstrapChannel: address is 0");
    if (addr % 8 != 0) throw ConfigError("ChipBootstrapChannel: address " + std::to_string(addr) + " is not 8-byte aligned");
    return reinterpret_cast<void*>(static_cast<uintptr_t>(addr));
  }
  BufferView view(mailbox, true, "ChipBootstrapChannel mailbox");
  if (view.size() < CHIP_BOOTSTRAP_MAILBOX_SIZE)
    throw ConfigError("ChipBootstrapChannel: the mailbox holds " + std::to_string(view.size()) + " bytes, it needs " +
                      std::to_string(CHIP_BOOTSTRAP_MAILBOX_SIZE));
  if (reinterpret_cast<uintptr_t>(view.data()) % 8 != 0)
    throw ConfigError("ChipBootstrapChannel: the mailbox buffer is not 8-byte aligned");
  *owner = mailbox;
  return view.data();
}

}  // namespace

void register_types(py::module_& m) {
  m.attr("CHIP_BOOTSTRAP_MAILBOX_SIZE") = CHIP_BOOTSTRAP_MAILBOX_SIZE;
  m.attr("CHIP_BOOTSTRAP_MAX_BUFFERS") = CHIP_BOOTSTRAP_MAX_BUFFERS;
  m.attr("CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE") = CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE;

  py::enum_<DataType>(m, "DataType", "Element type of buffers and tensors (chipmesh::DataType).")
      .value("FLOAT32", DataType::FLOAT32)
      .value("FLOAT16", DataType::FLOAT16)
      .value("BFLOAT16", DataType::BFLOAT16)
      .value("INT8", DataType::INT8)
      .value("INT16", DataType::INT16)
      .value("INT32", DataType::INT32)
      .value("INT64", DataType::INT64)
      .value("UINT8", DataType::UINT8)
      .value("UINT16", DataType::UINT16)
      .value("UINT32", DataType::UINT32)
      .value("UINT64", DataType::UINT64)
      .value("FLOAT64", DataType::FLOAT64);
  EnumMembers<DataType>::record(m.attr("DataType"));
  m.def(
      "dtype_size", [](const py::object& d) { return dtype_size(to_dtype(d)); }, py::arg("dtype"),
      "Bytes per element of a dtype (a name, a numpy dtype or a DataType).");
  m.def(
      "dtype_name", [](const py::object& d) { return std::string(dtype_name(to_dtype(d))); }, py::arg("dtype"),
      "The chipmesh name of a dtype (\"float32\", \"bfloat16\", ...).");
  m.def(
      "to_dtype", [](const py::object& d) { return to_dtype(d); }, py::arg("dtype"),
      "The DataType of a name, a numpy dtype or a DataType; ConfigError (a ValueError) when unknown.");

  py::enum_<ChipBootstrapMailboxState>(m, "ChipBootstrapMailboxState",
                                       "State word of a bootstrap mailbox: IDLE, SUCCESS or ERROR.")
      .value("IDLE", ChipBootstrapMailboxState::IDLE)
      .value("SUCCESS", ChipBootstrapMailboxState::SUCCESS)
      .value("ERROR", ChipBootstrapMailboxState::ERROR);

  py::class_<ChipCommBootstrapConfig>(m, "ChipCommBootstrapConfig",
                                      "The communicator a chip joins; window_size is a request the platform may "
                                      "round up.")
      .def(py::init([](int rank, int nranks, std::string rootinfo_path, int64_t window_size) {
             return ChipCommBootstrapConfig{rank, nranks, std::move(rootinfo_path), to_size(window_size, "window_size")};
           }),
           py::arg("rank") = 0, py::arg("nranks") = 1, py::arg("rootinfo_path") = "", py::arg("window_size") = 0)
      .def_readwrite("rank", &ChipCommBootstrapConfig::rank, "This chip's rank, 0 .. nranks-1.")
      .def_readwrite("nranks", &ChipCommBootstrapConfig::nranks, "Ranks in the communicator.")
      .def_readwrite("rootinfo_path", &ChipCommBootstrapConfig::rootinfo_path,
                     "File through which the ranks find each other (rank 0 publishes it); leave it empty in a "
                     "Worker's configs to meet in the Worker's shared memory (nothing on disk).")
      .def_property(
          "window_size", [](const ChipCommBootstrapConfig& c) { return c.window_size; },
          [](ChipCommBootstrapConfig& c, int64_t v) { c.window_size = to_size(v, "window_size"); },
          "Requested window bytes per rank.")
      .def("__repr__", [](const ChipCommBootstrapConfig& c) { return repr(c); });

  py::class_<ChipBufferSpec>(m, "ChipBufferSpec",
                             "A named buffer carved out of the chip's window; nbytes must equal count * itemsize "
                             "(None: computed).")
      .def(py::init([](std::string name, const py::object& dtype, int64_t count, const py::object& nbytes,
                       std::string placement, bool load_from_host, bool store_to_host) {
             ChipBufferSpec b;
             b.name = std::move(name);
             b.dtype = to_dtype(dtype);
             b.count = to_size(count, "count");
             const size_t expected = b.count * dtype_size(b.dtype);
             b.nbytes = nbytes.is_none() ? expected : to_size(nbytes.cast<int64_t>(), "nbytes");
             if (b.nbytes != expected)
               throw ConfigError("ChipBufferSpec '" + b.name + "': nbytes " + std::to_string(b.nbytes) +
                                 " != count " + std::to_string(b.count) + " * " +
                                 std::to_string(dtype_size(b.dtype)) + " (" + std::string(dtype_name(b.dtype)) + ")");
             b.placement = std::move(placement);
             b.load_from_host = load_from_host;
             b.store_to_host = store_to_host;
             return b;
           }),
           py::arg("name"), py::arg("dtype"), py::arg("count"), py::arg("nbytes") = py::none(),
           py::arg("placement") = "window", py::arg("load_from_host") = false, py::arg("store_to_host") = false)
      .def_readwrite("name", &ChipBufferSpec::name, "Buffer name, unique in a config.")
      .def_property(
          "dtype", [](const ChipBufferSpec& b) { return b.dtype; },
          [](ChipBufferSpec& b, const py::object& d) { b.dtype = to_dtype(d); }, "Element type (a DataType).")
      .def_property(
          "count", [](const ChipBufferSpec& b) { return b.count; },
          [](ChipBufferSpec& b, int64_t v) { b.count = to_size(v, "count"); }, "Elements.")
      .def_property(
          "nbytes", [](const ChipBufferSpec& b) { return b.nbytes; },
          [](ChipBufferSpec& b, int64_t v) { b.nbytes = to_size(v, "nbytes"); }, "Bytes: count * itemsize.")
      .def_readwrite("placement", &ChipBufferSpec::placement, "Where the buffer lives; only \"window\" exists.")
      .def_readwrite("load_from_host", &ChipBufferSpec::load_from_host,
                     "Filled at bring-up from host_inputs[name].")
      .def_readwrite("store_to_host", &ChipBufferSpec::store_to_host,
                     "Copied to host_outputs[name] after each task (Worker) or store_to_host() (ChipWorker).")
      .def("__repr__", [](const ChipBufferSpec& b) { return repr(b); });

  py::class_<HostBufferStaging>(m, "HostBufferStaging",
                                "A named POSIX shared-memory region on the host side of a buffer. shm_name may "
                                "come from multiprocessing.shared_memory.SharedMemory(...).name (no leading '/').")
      .def(py::init([](std::string name, std::string shm_name, int64_t size) {
             return HostBufferStaging{std::move(name), normalize_shm_name(std::move(shm_name)), to_size(size, "size")};
           }),
           py::arg("name"), py::arg("shm_name"), py::arg("size"))
      .def_readwrite("name", &HostBufferStaging::name, "The buffer this staging belongs to.")
      .def_property(
          "shm_name", [](const HostBufferStaging& h) { return h.shm_name; },
          [](HostBufferStaging& h, std::string v) { h.shm_name = normalize_shm_name(std::move(v)); },
          "Shared-memory name, with its leading '/'.")
      .def_property(
          "size", [](const HostBufferStaging& h) { return h.size; },
          [](HostBufferStaging& h, int64_t v) { h.size = to_size(v, "size"); }, "Bytes; the buffer's nbytes.")
      .def("__repr__", [](const HostBufferStaging& h) { return repr(h); });

  py::class_<ChipBootstrapConfig>(m, "ChipBootstrapConfig",
                                  "Bring-up configuration of one chip. The list attributes are copied on read and "
                                  "on assignment: assign a new list to change them.")
      .def(py::init([](std::optional<ChipCommBootstrapConfig> comm, std::vector<ChipBufferSpec> buffers,
                       std::vector<HostBufferStaging> host_inputs, std::vector<HostBufferStaging> host_outputs) {
             return ChipBootstrapConfig{std::move(comm), std::move(buffers), std::move(host_inputs),
                                        std::move(host_outputs)};
           }),
           py::arg("comm") = py::none(), py::arg("buffers") = std::vector<ChipBufferSpec>{},
           py::arg("host_inputs") = std::vector<HostBufferStaging>{},
           py::arg("host_outputs") = std::vector<HostBufferStaging>{})
      .def_readwrite("comm", &ChipBootstrapConfig::comm, "The communicator (None: no communicator, no buffers).")
      .def_readwrite("buffers", &ChipBootstrapConfig::buffers, "Buffers carved from the window, in order.")
      .def_readwrite("host_inputs", &ChipBootstrapConfig::host_inputs, "Stagings of load_from_host buffers.")
      .def_readwrite("host_outputs", &ChipBootstrapConfig::host_outputs, "Stagings of store_to_host buffers.")
      .def("input_staging", &ChipBootstrapConfig::input_staging, py::arg("name"),
           "The input staging of buffer `name`; ConfigError when absent.")
      .def("output_staging", &ChipBootstrapConfig::output_staging, py::arg("name"),
           "The output staging of buffer `name`; ConfigError when absent.")
      .def("validate", [](const ChipBootstrapConfig& c) { validate_bootstrap_config(c); },
           "Checks the whole config as bootstrap_context's first step does; ConfigError naming the problem.")
      .def("__repr__", [](const ChipBootstrapConfig& c) {
        std::string s = "ChipBootstrapConfig(comm=" + (c.comm ? repr(*c.comm) : std::string("None")) + ", buffers=[";
        for (size_t i = 0; i < c.buffers.size(); ++i) s.append(i ? ", " : "").append(repr(c.buffers[i]));
        s += "], host_inputs=[";
        for (size_t i = 0; i < c.host_inputs.size(); ++i) s.append(i ? ", " : "").append(repr(c.host_inputs[i]));
        s += "], host_outputs=[";
        for (size_t i = 0; i < c.host_outputs.size(); ++i) s.append(i ? ", " : "").append(repr(c.host_outputs[i]));
        return s + "])";
      });

  py::class_<ChipBootstrapResult>(m, "ChipBootstrapResult", "What bootstrap_context returns and publishes.")
      .def(py::init<>())
      .def_readwrite("device_ctx", &ChipBootstrapResult::device_ctx, "Device address of the CommContext (0: none).")
      .def_readwrite("local_window_base", &ChipBootstrapResult::local_window_base, "This rank's window.")
      .def_readwrite("actual_window_size", &ChipBootstrapResult::actual_window_size,
                     "Window bytes granted (>= the request).")
      .def_readwrite("buffer_ptrs", &ChipBootstrapResult::buffer_ptrs,
                     "Device address of each buffer, 1:1 with the config's buffers (list of int).")
      .def("__repr__", [](const ChipBootstrapResult& r) {
        return "ChipBootstrapResult(device_ctx=" + std::to_string(r.device_ctx) +
               ", local_window_base=" + std::to_string(r.local_window_base) +
               ", actual_window_size=" + std::to_string(r.actual_window_size) + ", buffer_ptrs=" +
               py::repr(py::cast(r.buffer_ptrs)).cast<std::string>() + ")";
      });

  py::class_<BootstrapTimings>(m, "BootstrapTimings", "Where a bring-up spent its time, in ms.")
      .def_readonly("comm_init_ms", &BootstrapTimings::comm_init_ms, "Communicator creation.")
      .def_readonly("windows_ms", &BootstrapTimings::windows_ms, "Window allocation.")
      .def_readonly("staging_ms", &BootstrapTimings::staging_ms, "Host input loading.");

  py::class_<PyChannel>(m, "ChipBootstrapChannel",
                        "The one-shot bootstrap mailbox over CHIP_BOOTSTRAP_MAILBOX_SIZE bytes of (usually shared) "
                        "memory: an int address, or a writable buffer such as an mmap, kept alive by the channel.")
      .def(py::init([](const py::object& addr, int64_t max_buffer_count) {
             py::object owner = py::none();
             void* base = channel_address(addr, &owner);
             return PyChannel{ChipBootstrapChannel(base, to_size(max_buffer_count, "max_buffer_count")), owner};
           }),
           py::arg("addr"), py::arg("max_buffer_count"))
      .def("reset", [](PyChannel& c) { c.channel.reset(); }, "Clears the payload and publishes IDLE.")
      .def(
          "write_success",
          [](PyChannel& c, uint64_t device_ctx, uint64_t base, uint64_t size, const std::vector<uint64_t>& ptrs) {
            c.channel.write_success(device_ctx, base, size, ptrs);
          },
          py::arg("device_ctx"), py::arg("local_window_base"), py::arg("actual_window_size"), py::arg("buffer_ptrs"),
          "Publishes SUCCESS with the payload; ConfigError for more pointers than max_buffer_count.")
      .def(
          "write_error", [](PyChannel& c, int32_t code, const std::string& msg) { c.channel.write_error(code, msg); },
          py::arg("code"), py::arg("message"), "Publishes ERROR; the message is cut to 1023 bytes.")
      .def(
          "wait_published",
          [](PyChannel& c, double timeout_s) {
            const auto ns = std::chrono::nanoseconds(static_cast<int64_t>(std::max(0.0, timeout_s) * 1e9));
            return blocking([&] { return c.channel.wait_published(ns); });
          },
          py::arg("timeout_s"), "Blocks until the state leaves IDLE or the timeout passes; returns the state.")
      .def_property_readonly("state", [](const PyChannel& c) { return c.channel.state(); }, "IDLE, SUCCESS or ERROR.")
      .def_property_readonly("error_code", [](const PyChannel& c) { return c.channel.error_code(); }, "Non-zero after ERROR.")
      .def_property_readonly("error_message", [](const PyChannel& c) { return c.channel.error_message(); },
                             "\"<Kind>: <message>\" after ERROR.")
      .def_property_readonly("device_ctx", [](const PyChannel& c) { return c.channel.device_ctx(); }, "Published device_ctx.")
      .def_property_readonly("local_window_base", [](const PyChannel& c) { return c.channel.local_window_base(); }, "Published window base.")
      .def_property_readonly("actual_window_size", [](const PyChannel& c) { return c.channel.actual_window_size(); }, "Published window size.")
      .def_property_readonly("buffer_ptrs", [](const PyChannel& c) { return c.channel.buffer_ptrs(); },
                             "List of int, clamped to max_buffer_count.")
      .def_property_readonly("timings", [](const PyChannel& c) { return c.channel.timings(); }, "Bring-up timings written with SUCCESS.")
      .def_property_readonly("max_buffer_count", [](const PyChannel& c) { return c.channel.max_buffer_count(); }, "Capacity of buffer_ptrs.")
      .def_property_readonly(
          "addr", [](const PyChannel& c) { return reinterpret_cast<uintptr_t>(c.channel.mailbox()); },
          "Address of the mailbox page.");

  // --- collectives (include/chipmesh/collectives.h) ---
  py::enum_<ReduceOp>(m, "ReduceOp", "Reduction operator of a collective.")
      .value("SUM", ReduceOp::SUM)
      .value("PROD", ReduceOp::PROD)
      .value("MAX", ReduceOp::MAX)
      .value("MIN", ReduceOp::MIN);
  EnumMembers<ReduceOp>::record(m.attr("ReduceOp"));
  py::enum_<AllreduceAlgo>(m, "AllreduceAlgo", "Allreduce algorithm; AUTO picks by message size.")
      .value("AUTO", AllreduceAlgo::AUTO)
      .value("ONEPHASE", AllreduceAlgo::ONEPHASE)
      .value("TWOPHASE", AllreduceAlgo::TWOPHASE)
      .value("RING", AllreduceAlgo::RING);
  EnumMembers<AllreduceAlgo>::record(m.attr("AllreduceAlgo"));
  m.def(
      "parse_reduce_op", [](const std::string& s) { return parse_reduce_op(s); }, py::arg("name"),
      "ReduceOp of \"sum\", \"prod\", \"max\", \"min\"; ConfigError otherwise.");
  m.def(
      "parse_allreduce_algo", [](const std::string& s) { return parse_allreduce_algo(s); }, py::arg("name"),
      "AllreduceAlgo of \"auto\", \"onephase\", \"twophase\", \"ring\"; ConfigError otherwise.");
  m.def(
      "allreduce_task",
      [](uint64_t in, uint64_t out, int64_t count, const py::object& dtype, const py::object& op,
         const py::object& algo, uint32_t nranks) {
        const ReduceOp o = py::isinstance<py::str>(op) ? parse_reduce_op(op.cast<std::string>()) : op.cast<ReduceOp>();
        const AllreduceAlgo a =
            py::isinstance<py::str>(algo) ? parse_allreduce_algo(algo.cast<std::string>()) : algo.cast<AllreduceAlgo>();
        return allreduce_task(in, out, to_size(count, "count"), to_dtype(dtype), o, a, nranks);
      },
      py::arg("in_addr"), py::arg("out_addr"), py::arg("count"), py::arg("dtype"), py::arg("op") = "sum",
      py::arg("algo") = "auto", py::arg("nranks") = 2,
      "One chip's Task of an allreduce with the built-in kernel (in and out must not overlap); submit one per "
      "chip with submit_group. op and algo: enums or their names; nranks (the communicator's size) only informs "
      "the choice of \"auto\".");
}

}  // namespace chipmesh::py_ext

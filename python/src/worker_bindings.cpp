// Worker, its Orchestrator, ChipContext, TensorArg and Task; Ctrl-C during
// init() and run().
//
// Ctrl-C: init() and run() run on the calling thread with the GIL released,
// so Python's SIGINT handler cannot run until they return. While they run
// on the main thread, a pipe is Python's signal wakeup fd
// (signal.set_wakeup_fd) and a watcher thread (one per process, started on
// first use) reads it: on SIGINT it calls
// Worker::interrupt(), which terminates the chips, so the blocking call
// fails promptly. The binding then closes the worker (nothing is left in
// /dev/shm) and runs the signal handlers due, which raise KeyboardInterrupt
// in the caller.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "common/process.h"

#include <pybind11/numpy.h>
#include "common.h"
#include "enum_members.h"

namespace chipmesh::py_ext {
namespace {

// The thread Python runs signal handlers on (the main thread of the main
// interpreter), the only one that may set the wakeup fd. Its id is read
// from `threading` once per process (os.fork() from a thread makes that
// thread the child's main thread); each call then compares thread ids, two
// Python calls fewer per init() and run().
bool on_main_thread() {
  if (PyInterpreterState_Get() != PyInterpreterState_Main()) return false;
  static pid_t read_in = 0;  // the process that read main_ident
  static unsigned long main_ident = 0;
  if (const pid_t now = process::this_pid(); read_in != now) {
    static py::handle threading = py::module_::import("threading").release();
    main_ident = threading.attr("main_thread")().attr("ident").cast<unsigned long>();
    read_in = now;
  }
  return PyThread_get_thread_ident() == main_ident;
}

// signal.set_wakeup_fd, looked up once: every init() and run() sets and
// restores the wakeup fd, and an import of a loaded module still goes
// through the import machinery (~0.3 us here each time).
py::handle set_wakeup_fd() {
  static py::handle fn = py::object(py::module_::import("signal").attr("set_wakeup_fd")).release();
  return fn;
}

// The reader of Python's signal wakeup fd while an init() or run() blocks on
// the main thread: one thread per process, started on first use (and again
// in a forked child, which has no threads), idle in poll() between calls.
// Each call arms it for its Worker; on SIGINT it interrupts every armed one.
class InterruptWatcher {
 public:
  static InterruptWatcher& get() {
    static InterruptWatcher* w = new InterruptWatcher;  // never destroyed: the thread outlives main()
    return *w;
  }

  // A call in flight: armed from construction to destruction (GIL held).
  class Arm {
   public:
    explicit Arm(Worker& w) : worker_(w) {
      if (!on_main_thread()) return;
      InterruptWatcher& iw = get();
      if (!iw.start()) return;  // no watcher: Ctrl-C waits for the call
      try {
        old_fd_ = set_wakeup_fd()(iw.write_fd_, py::arg("warn_on_full_buffer") = false)
                      .cast<int>();
      } catch (const py::error_already_set&) {
        return;  // e.g. a subinterpreter
      }
      iw.old_fd_.store(old_fd_);
      std::lock_guard<std::mutex> lock(iw.mu_);
      iw.armed_.push_back(this);
      armed_ = true;
    }
    ~Arm() {
      if (!armed_) return;
      InterruptWatcher& iw = get();
      try {
        set_wakeup_fd()(old_fd_);
      } catch (const py::error_already_set&) {
        // old_fd_ was closed meanwhile by its owner: leave none
        try {
          set_wakeup_fd()(-1);
        } catch (const py::error_already_set&) {
        }
      }
      iw.drain();  // a signal that arrived as the call returned
      iw.old_fd_.store(-1);
      std::lock_guard<std::mutex> lock(iw.mu_);
      std::erase(iw.armed_, this);
    }
    Arm(const Arm&) = delete;
    Arm& operator=(const Arm&) = delete;
    bool interrupted() const { return interrupted_.load(); }

   private:
    friend class InterruptWatcher;
    Worker& worker_;
    int old_fd_ = -1;
    bool armed_ = false;
    std::atomic<bool> interrupted_{false};
  };

 private:
  bool start() {
    if (pid_ == process::this_pid()) return true;
    // First use, or a forked child: the parent's thread is not here.
    if (read_fd_ >= 0) {
      ::close(read_fd_);
      ::close(write_fd_);
    }
    read_fd_ = write_fd_ = -1;
    armed_.clear();
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    pid_ = process::this_pid();
    std::thread([this] { loop(); }).detach();
    return true;
  }

  void loop() {
    pollfd p{read_fd_, POLLIN, 0};
    for (;;) {
      if (poll(&p, 1, -1) < 0 && errno != EINTR) return;
      drain();
    }
  }

  void drain() {
    std::lock_guard<std::mutex> drain_lock(drain_mu_);
    unsigned char buf[64];
    for (;;) {
      const ssize_t n = read(read_fd_, buf, sizeof(buf));
      if (n <= 0) return;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != SIGINT) continue;
        std::lock_guard<std::mutex> lock(mu_);
        for (Arm* a : armed_)
          if (!a->interrupted_.exchange(true)) a->worker_.interrupt();
      }
      // Whoever set a wakeup fd before us (asyncio) still hears of them.
      const int old = old_fd_.load();
      if (old >= 0 && write(old, buf, static_cast<size_t>(n)) < 0) {
        // a full or closed fd of someone else: as Python itself would, drop them
      }
    }
  }

  pid_t pid_ = 0;
  int read_fd_ = -1, write_fd_ = -1;
  std::atomic<int> old_fd_{-1};
  std::mutex mu_;        // armed_
  std::mutex drain_mu_;  // one reader at a time
  std::vector<Arm*> armed_;
};

// init() or run(): see the comment at the top of this file.
template <typename F>
void interruptible(Worker& w, F&& fn) {
  std::exception_ptr err;
  bool interrupted = false;
  {
    InterruptWatcher::Arm watch(w);
    {
      py::gil_scoped_release nogil;
      try {
        fn();
      } catch (...) {
        err = std::current_exception();
      }
    }
  }
  // After the disarm, which reads a signal that came as the call returned.
  interrupted = w.interrupted();
  if (interrupted) {
    {
      py::gil_scoped_release nogil;
      try {
        w.close();
      } catch (...) {
        // the chips were terminated on purpose; their deaths are no news
      }
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // KeyboardInterrupt
  }
  if (err) {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    std::rethrow_exception(err);
  }
}

// The Orchestrator handed to run()'s function; refuses use after run().
struct PyOrchestrator {
  Orchestrator* orch = nullptr;
  Orchestrator& get() const {
    if (!orch) throw Error("Error", "Orchestrator used after its run() returned");
    return *orch;
  }
};

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

WorkerConfig make_config(int level, const py::object& device_ids, const std::string& platform,
                         const py::object& configs, double timeout_s) {
  if (level != 3)
    throw ConfigError("Worker: level " + std::to_string(level) +
                      " is not supported; level=3 (a host process with one process per chip) is the only level");
  WorkerConfig cfg;
  cfg.platform = platform;
  if (!configs.is_none()) cfg.chip_bootstrap_configs = configs.cast<std::vector<ChipBootstrapConfig>>();
  if (!device_ids.is_none()) {
    cfg.device_ids = device_ids.cast<std::vector<int>>();
  } else if (!cfg.chip_bootstrap_configs.empty()) {
    for (size_t i = 0; i < cfg.chip_bootstrap_configs.size(); ++i) cfg.device_ids.push_back(static_cast<int>(i));
  } else {
    throw ConfigError("Worker: give device_ids (or chip_bootstrap_configs, one per device 0..N-1)");
  }
  if (!(timeout_s > 0)) throw ConfigError("Worker: bootstrap_timeout_s must be > 0");
  cfg.bootstrap_timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  return cfg;
}


// --- collectives over a domain -------------------------------------------

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

// A uint8 numpy array over Worker-owned staging; `owner` (the Python
// Worker) is its base, so the Worker outlives the array.
py::array staging_array(const py::object& owner, SharedMemory& s) {
  return py::array(py::dtype("uint8"), {static_cast<py::ssize_t>(s.size())}, {py::ssize_t{1}}, s.data(), owner);
}

}  // namespace

void register_worker(py::module_& m) {
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
          "resolved per member) or lists of device addresses, one per domain rank, inside the members' windows at "
          "the same window offsets; in_ == out is in place. dtype: a name, numpy dtype or DataType; op: a ReduceOp "
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

  py::class_<Worker>(m, "Worker",
                     "The parent of a group of chips, one process per chip (level 3). Usable as a context manager: "
                     "`with Worker(...) as w:` closes on exit.")
      .def(py::init([](int level, const py::object& device_ids, const std::string& platform,
                       const py::object& configs, double timeout_s, const std::string& cluster) {
             WorkerConfig cfg = make_config(level, device_ids, platform, configs, timeout_s);
             cfg.cluster = cluster;
             return std::make_unique<Worker>(std::move(cfg));
           }),
           py::arg("level") = 3, py::arg("device_ids") = py::none(), py::arg("platform") = "sim",
           py::arg("chip_bootstrap_configs") = py::none(), py::arg("bootstrap_timeout_s") = 120.0,
           py::arg("cluster") = "")
      .def(
          "init", [](Worker& w) { interruptible(w, [&] { w.init(); }); },
          "Forks the chips and waits for their bring-up; ChipError naming the first chip that failed (every chip is "
          "then torn down). Ctrl-C stops it, tears down and raises KeyboardInterrupt. The fork shares this "
          "process's private memory copy-on-write with every chip: arrays written before init() slow it down "
          "(page tables copied per chip), their next write after it copies every page, and the copies stay while "
          "the chips live. Create large arrays after init(), in shared memory (numpy.frombuffer over "
          "mmap.mmap(-1, nbytes), multiprocessing.shared_memory, stage_input / stage_output), which fork neither "
          "copies nor protects, or leave them out of the chips with exclude_from_chips(). Any thread may call it "
          "(the chips are forked by a thread of the Worker's own, which lives until close()).")
      .def_property_readonly(
          "chip_contexts",
          [](const Worker& w) {
            try {
              return w.chip_contexts();
            } catch (const ConfigError& e) {
              throw Error("Error", std::string("Worker.chip_contexts is available after init() (and before close()): ") +
                                       e.what());
            }
          },
          "One ChipContext per chip, after init().")
      .def(
          "exclude_from_chips",
          [](Worker& w, const py::object& memory, const py::object& nbytes) {
            if (py::isinstance<py::int_>(memory)) {
              if (nbytes.is_none())
                throw ConfigError("Worker.exclude_from_chips: nbytes is required when memory is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              w.exclude_from_chips(reinterpret_cast<const void*>(static_cast<uintptr_t>(memory.cast<uint64_t>())), n);
              return;
            }
            BufferView view(memory, false, "memory");
            w.exclude_from_chips(view.data(), view.resolve(nbytes, "memory"));
          },
          py::arg("memory"), py::arg("nbytes") = py::none(), py::keep_alive<1, 2>(),
          "Before init(): leaves host memory no chip needs (a numpy array or any contiguous buffer, kept alive by "
          "the Worker; or an int address with nbytes) out of the chips' forks: its whole pages cost bring-up "
          "nothing and its next write after init() is a plain write, held once. A chip that touches it dies "
          "(ChipError).")
      .def(
          "stage_input",
          [](py::object self, int chip, const std::string& buffer, int64_t nbytes) {
            return staging_array(self, self.cast<Worker&>().stage_input(chip, buffer, to_size(nbytes, "nbytes")));
          },
          py::arg("chip"), py::arg("buffer"), py::arg("nbytes"),
          "Before init(): unnamed host staging of nbytes the Worker owns (nothing in /dev/shm, so no kill leaves "
          "it), loaded into `buffer` of `chip` at bring-up (load_from_host). Returns a writable uint8 numpy array "
          "over it: fill it before init().")
      .def(
          "stage_output",
          [](py::object self, int chip, const std::string& buffer, int64_t nbytes) {
            return staging_array(self, self.cast<Worker&>().stage_output(chip, buffer, to_size(nbytes, "nbytes")));
          },
          py::arg("chip"), py::arg("buffer"), py::arg("nbytes"),
          "Before init(): unnamed host staging of nbytes the Worker owns, where `buffer` of `chip` is flushed after "
          "each successful task (store_to_host). Returns a uint8 numpy array over it: read it after run().")
      .def(
          "world", [](const Worker& w) { return w.world(); },
          "The bring-up communicator of chip_bootstrap_configs as a CommDomain (name \"world\", allocation_id 0, "
          "chips in rank order; names resolve to the bootstrap buffers), after init(); ConfigError if there is none.")
      .def(
          "run",
          [](Worker& w, const py::function& fn) {
            interruptible(w, [&] {
              w.run([&](Orchestrator& o) {
                py::gil_scoped_acquire gil;
                py::object handle = py::cast(PyOrchestrator{&o});
                try {
                  fn(handle);
                } catch (...) {
                  handle.cast<PyOrchestrator&>().orch = nullptr;
                  throw;
                }
                handle.cast<PyOrchestrator&>().orch = nullptr;
              });
            });
          },
          py::arg("fn"),
          "Calls fn(orch) and returns once every task it submitted is done; ChipError on the first failure. Ctrl-C "
          "stops it, tears the chips down and raises KeyboardInterrupt.")
      .def(
          "malloc", [](Worker& w, int chip, int64_t n) { return blocking([&] { return w.malloc(chip, to_size(n, "nbytes")); }); },
          py::arg("chip"), py::arg("nbytes"), "Allocates device memory on a chip; returns its address.")
      .def(
          "free", [](Worker& w, int chip, uint64_t p) { blocking([&] { w.free(chip, p); }); }, py::arg("chip"),
          py::arg("ptr"), "Frees memory from malloc().")
      .def(
          "copy_to",
          [](Worker& w, int chip, uint64_t dst, const py::object& src, const py::object& nbytes) {
            if (py::isinstance<py::int_>(src)) {
              if (nbytes.is_none()) throw ConfigError("Worker.copy_to: nbytes is required when src is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              const auto addr = src.cast<uint64_t>();
              blocking([&] { w.copy_to(chip, dst, reinterpret_cast<const void*>(static_cast<uintptr_t>(addr)), n); });
              return;
            }
            BufferView view(src, false, "src");
            const size_t n = view.resolve(nbytes, "src");
            blocking([&] { w.copy_to(chip, dst, view.data(), n); });
          },
          py::arg("chip"), py::arg("dst"), py::arg("src"), py::arg("nbytes") = py::none(),
          "Host to a chip's device memory: src is a buffer (numpy array, bytes, ...; no intermediate copy) or an int "
          "host address with nbytes.")
      .def(
          "copy_from",
          [](Worker& w, int chip, const py::object& dst, uint64_t src, const py::object& nbytes) {
            if (py::isinstance<py::int_>(dst)) {
              if (nbytes.is_none()) throw ConfigError("Worker.copy_from: nbytes is required when dst is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              const auto addr = dst.cast<uint64_t>();
              blocking([&] { w.copy_from(chip, reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), src, n); });
              return;
            }
            BufferView view(dst, true, "dst");
            const size_t n = view.resolve(nbytes, "dst");
            blocking([&] { w.copy_from(chip, view.data(), src, n); });
          },
          py::arg("chip"), py::arg("dst"), py::arg("src"), py::arg("nbytes") = py::none(),
          "A chip's device memory to host: dst is a writable contiguous buffer (no intermediate copy) or an int host "
          "address with nbytes. The lines it reads stay shared with the chip, whose next write to them is slower: "
          "read an output that kernels rewrite every step through stage_output and a flush instead.")
      .def("close", [](Worker& w) { blocking([&] { w.close(); }); },
           "Shuts the chips down, flushes outputs and reaps them; idempotent.")
      .def("interrupt", &Worker::interrupt,
           "Terminates the chips of a running init() or run() from another thread; close() afterwards.")
      .def_property_readonly("bringup_phases_ms", &Worker::bringup_phases_ms,
                             "Bring-up time of the last init() by phase (ms): setup (until the first fork), fork "
                             "(until the last), comm_init, windows, staging, handshake, total.")
      .def_property_readonly("num_chips", &Worker::num_chips, "Chips of this worker (len(device_ids)).")
      .def("chip_pid", &Worker::chip_pid, py::arg("chip"), "Process id of a chip (-1 before init()).")
      .def_property_readonly("num_hosts", &Worker::num_hosts,
                             "Hosts of the job: 1 on one host; in a cluster (cluster=\"mpi\"), after init().")
      .def_property_readonly("host_rank", &Worker::host_rank, "This host's rank in the job (0 on one host).")
      .def_property_readonly("num_global_chips", &Worker::num_global_chips, "Chips of every host of the job.")
      .def("global_chip", &Worker::global_chip, py::arg("chip"),
           "Global index of a local chip: the chips of the lower hosts plus its index here.")
      .def("__enter__", [](py::object self) { return self; })
      .def(
          "__exit__",
          [](Worker& w, const py::object&, const py::object&, const py::object&) {
            blocking([&] { w.close(); });
            return false;
          },
          py::arg("exc_type"), py::arg("exc"), py::arg("tb"));
}

}  // namespace chipmesh::py_ext

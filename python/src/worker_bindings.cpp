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
#include <mutex>
#include <thread>
#include <vector>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "common.h"

namespace chipmesh::py_ext {
namespace {

bool on_main_thread() {
  static py::handle threading = py::module_::import("threading").release();
  return threading.attr("current_thread")().is(threading.attr("main_thread")());
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
        old_fd_ = py::module_::import("signal").attr("set_wakeup_fd")(iw.write_fd_, py::arg("warn_on_full_buffer") = false)
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
        py::module_::import("signal").attr("set_wakeup_fd")(old_fd_);
      } catch (const py::error_already_set&) {
        // old_fd_ was closed meanwhile by its owner: leave none
        try {
          py::module_::import("signal").attr("set_wakeup_fd")(-1);
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
    if (pid_ == getpid()) return true;
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
    pid_ = getpid();
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
                       const py::object& scalars) {
             return Task{std::move(kernel), std::move(library), std::move(tensors), to_scalars(scalars)};
           }),
           py::arg("kernel"), py::arg("library") = "", py::arg("tensors") = std::vector<TensorArg>{},
           py::arg("scalars") = py::list())
      .def_readwrite("kernel", &Task::kernel, "Exported kernel function name.")
      .def_readwrite("library", &Task::library, "Kernel library path; \"\" for the built-in kernels.")
      .def_readwrite("tensors", &Task::tensors, "List of TensorArg (copied on read and assignment).")
      .def_property(
          "scalars", [](const Task& t) { return t.scalars; },
          [](Task& t, const py::object& s) { t.scalars = to_scalars(s); }, "List of int (uint64).")
      .def("__repr__", [](const Task& t) {
        return "Task(kernel=" + py::repr(py::str(t.kernel)).cast<std::string>() +
               ", library=" + py::repr(py::str(t.library)).cast<std::string>() +
               ", tensors=" + py::repr(py::cast(t.tensors)).cast<std::string>() +
               ", scalars=" + py::repr(py::cast(t.scalars)).cast<std::string>() + ")";
      });

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
          "wait", [](PyOrchestrator& o) { blocking([&] { o.get().wait(); }); },
          "Blocks until every task submitted so far is done; ChipError on the first failure.");

  py::class_<Worker>(m, "Worker",
                     "The parent of a group of chips, one process per chip (level 3). Usable as a context manager: "
                     "`with Worker(...) as w:` closes on exit.")
      .def(py::init([](int level, const py::object& device_ids, const std::string& platform,
                       const py::object& configs, double timeout_s) {
             return std::make_unique<Worker>(make_config(level, device_ids, platform, configs, timeout_s));
           }),
           py::arg("level") = 3, py::arg("device_ids") = py::none(), py::arg("platform") = "sim",
           py::arg("chip_bootstrap_configs") = py::none(), py::arg("bootstrap_timeout_s") = 120.0)
      .def(
          "init", [](Worker& w) { interruptible(w, [&] { w.init(); }); },
          "Forks the chips and waits for their bring-up; ChipError naming the first chip that failed (every chip is "
          "then torn down). Ctrl-C stops it, tears down and raises KeyboardInterrupt.")
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
          "address with nbytes.")
      .def("close", [](Worker& w) { blocking([&] { w.close(); }); },
           "Shuts the chips down, flushes outputs and reaps them; idempotent.")
      .def("interrupt", &Worker::interrupt,
           "Terminates the chips of a running init() or run() from another thread; close() afterwards.")
      .def_property_readonly("bringup_phases_ms", &Worker::bringup_phases_ms,
                             "Bring-up time of the last init() by phase (ms): fork, comm_init, windows, staging, "
                             "handshake, total.")
      .def_property_readonly("num_chips", &Worker::num_chips, "Chips of this worker (len(device_ids)).")
      .def("chip_pid", &Worker::chip_pid, py::arg("chip"), "Process id of a chip (-1 before init()).")
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

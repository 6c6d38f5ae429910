// Worker: bring-up, run(), device memory and copies, staging, close().
// Ctrl-C during init() and run(): interrupt_watcher.h.
#include <memory>
#include <string>
#include <vector>

#include <pybind11/numpy.h>

#include "chipmesh/worker.h"
#include "common.h"
#include "interrupt_watcher.h"
#include "py_orchestrator.h"
#include "py_worker.h"

namespace chipmesh::py_ext {
namespace {

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

// A uint8 numpy array over Worker-owned staging; `owner` (the Python
// Worker) is its base, so the Worker outlives the array.
py::array staging_array(const py::object& owner, SharedMemory& s) {
  return py::array(py::dtype("uint8"), {static_cast<py::ssize_t>(s.size())}, {py::ssize_t{1}}, s.data(), owner);
}

}  // namespace

void register_worker(py::module_& m) {
  py::class_<PyWorker>(m, "Worker",
                     "The parent of a group of chips, one process per chip (level 3). Usable as a context manager: "
                     "`with Worker(...) as w:` closes on exit. Calls from several threads take turns, one at a time; "
                     "run() holds the Worker for its whole function (whose own calls to it go through), so a thread "
                     "that function waits for must not call the Worker.")
      .def(py::init([](int level, const py::object& device_ids, const std::string& platform,
                       const py::object& configs, double timeout_s, const std::string& cluster) {
             WorkerConfig cfg = make_config(level, device_ids, platform, configs, timeout_s);
             cfg.cluster = cluster;
             return std::make_unique<PyWorker>(std::move(cfg));
           }),
           py::arg("level") = 3, py::arg("device_ids") = py::none(), py::arg("platform") = "sim",
           py::arg("chip_bootstrap_configs") = py::none(), py::arg("bootstrap_timeout_s") = 120.0,
           py::arg("cluster") = "")
      .def(
          "init", [](PyWorker& w) { interruptible(w, [&] { w.init(); }); },
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
          [](PyWorker& w) {
            try {
              return locked(w, [&] { return w.chip_contexts(); });  // a copy, made under the lock
            } catch (const ConfigError& e) {
              throw Error("Error", std::string("Worker.chip_contexts is available after init() (and before close()): ") +
                                       e.what());
            }
          },
          "One ChipContext per chip, after init().")
      .def(
          "exclude_from_chips",
          [](PyWorker& w, const py::object& memory, const py::object& nbytes) {
            if (py::isinstance<py::int_>(memory)) {
              if (nbytes.is_none())
                throw ConfigError("Worker.exclude_from_chips: nbytes is required when memory is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              const auto* at = reinterpret_cast<const void*>(static_cast<uintptr_t>(memory.cast<uint64_t>()));
              locked(w, [&] { w.exclude_from_chips(at, n); });
              return;
            }
            BufferView view(memory, false, "memory");
            const size_t n = view.resolve(nbytes, "memory");
            locked(w, [&] { w.exclude_from_chips(view.data(), n); });
          },
          py::arg("memory"), py::arg("nbytes") = py::none(), py::keep_alive<1, 2>(),
          "Before init(): leaves host memory no chip needs (a numpy array or any contiguous buffer, kept alive by "
          "the Worker; or an int address with nbytes) out of the chips' forks: its whole pages cost bring-up "
          "nothing and its next write after init() is a plain write, held once. A chip that touches it dies "
          "(ChipError).")
      .def(
          "stage_input",
          [](py::object self, int chip, const std::string& buffer, int64_t nbytes) {
            auto& w = self.cast<PyWorker&>();
            const size_t n = to_size(nbytes, "nbytes");
            return staging_array(self, locked(w, [&]() -> SharedMemory& { return w.stage_input(chip, buffer, n); }));
          },
          py::arg("chip"), py::arg("buffer"), py::arg("nbytes"),
          "Before init(): unnamed host staging of nbytes the Worker owns (nothing in /dev/shm, so no kill leaves "
          "it), loaded into `buffer` of `chip` at bring-up (load_from_host). Returns a writable uint8 numpy array "
          "over it: fill it before init().")
      .def(
          "stage_output",
          [](py::object self, int chip, const std::string& buffer, int64_t nbytes) {
            auto& w = self.cast<PyWorker&>();
            const size_t n = to_size(nbytes, "nbytes");
            return staging_array(self, locked(w, [&]() -> SharedMemory& { return w.stage_output(chip, buffer, n); }));
          },
          py::arg("chip"), py::arg("buffer"), py::arg("nbytes"),
          "Before init(): unnamed host staging of nbytes the Worker owns, where `buffer` of `chip` is flushed after "
          "each successful task (store_to_host). Returns a uint8 numpy array over it: read it after run().")
      .def(
          "world", [](PyWorker& w) { return locked(w, [&] { return w.world(); }); },
          "The bring-up communicator of chip_bootstrap_configs as a CommDomain (name \"world\", allocation_id 0, "
          "chips in rank order; names resolve to the bootstrap buffers), after init(); ConfigError if there is none.")
      .def(
          "run",
          [](PyWorker& w, const py::function& fn) {
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
          "malloc",
          [](PyWorker& w, int chip, int64_t n) {
            const size_t bytes = to_size(n, "nbytes");
            return locked(w, [&] { return w.malloc(chip, bytes); });
          },
          py::arg("chip"), py::arg("nbytes"), "Allocates device memory on a chip; returns its address.")
      .def(
          "free", [](PyWorker& w, int chip, uint64_t p) { locked(w, [&] { w.free(chip, p); }); }, py::arg("chip"),
          py::arg("ptr"), "Frees memory from malloc(); 0 does nothing (as free(NULL)).")
      .def(
          "copy_to",
          [](PyWorker& w, int chip, uint64_t dst, const py::object& src, const py::object& nbytes) {
            if (py::isinstance<py::int_>(src)) {
              if (nbytes.is_none()) throw ConfigError("Worker.copy_to: nbytes is required when src is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              const auto addr = src.cast<uint64_t>();
              locked(w, [&] { w.copy_to(chip, dst, reinterpret_cast<const void*>(static_cast<uintptr_t>(addr)), n); });
              return;
            }
            BufferView view(src, false, "src");
            const size_t n = view.resolve(nbytes, "src");
            locked(w, [&] { w.copy_to(chip, dst, view.data(), n); });
          },
          py::arg("chip"), py::arg("dst"), py::arg("src"), py::arg("nbytes") = py::none(),
          "Host to a chip's device memory: src is a buffer (numpy array, bytes, ...; no intermediate copy) or an int "
          "host address with nbytes.")
      .def(
          "copy_from",
          [](PyWorker& w, int chip, const py::object& dst, uint64_t src, const py::object& nbytes) {
            if (py::isinstance<py::int_>(dst)) {
              if (nbytes.is_none()) throw ConfigError("Worker.copy_from: nbytes is required when dst is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              const auto addr = dst.cast<uint64_t>();
              locked(w, [&] { w.copy_from(chip, reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), src, n); });
              return;
            }
            BufferView view(dst, true, "dst");
            const size_t n = view.resolve(nbytes, "dst");
            locked(w, [&] { w.copy_from(chip, view.data(), src, n); });
          },
          py::arg("chip"), py::arg("dst"), py::arg("src"), py::arg("nbytes") = py::none(),
          "A chip's device memory to host: dst is a writable contiguous buffer (no intermediate copy) or an int host "
          "address with nbytes. The lines it reads stay shared with the chip, whose next write to them is slower: "
          "read an output that kernels rewrite every step through stage_output and a flush instead.")
      .def("close", [](PyWorker& w) { locked(w, [&] { w.close(); }); },
           "Shuts the chips down, flushes outputs and reaps them; idempotent.")
      .def("interrupt", &Worker::interrupt,
           "Terminates the chips of a running init() or run() from another thread; close() afterwards.")
      .def_property_readonly("bringup_phases_ms",
                             [](PyWorker& w) { return locked(w, [&] { return w.bringup_phases_ms(); }); },
                             "Bring-up time of the last init() by phase (ms): setup (until the first fork), fork "
                             "(until the last), comm_init, windows, staging, handshake, total.")
      .def_property_readonly("num_chips", &Worker::num_chips, "Chips of this worker (len(device_ids)).")
      .def(
          "chip_pid", [](PyWorker& w, int chip) { return locked(w, [&] { return w.chip_pid(chip); }); },
          py::arg("chip"), "Process id of a chip (-1 before init()).")
      .def_property_readonly("num_hosts", &Worker::num_hosts,
                             "Hosts of the job: 1 on one host; in a cluster (cluster=\"mpi\"), after init().")
      .def_property_readonly("host_rank", &Worker::host_rank, "This host's rank in the job (0 on one host).")
      .def_property_readonly("num_global_chips", &Worker::num_global_chips, "Chips of every host of the job.")
      .def("global_chip", &Worker::global_chip, py::arg("chip"),
           "Global index of a local chip: the chips of the lower hosts plus its index here.")
      .def("__enter__", [](py::object self) { return self; })
      .def(
          "__exit__",
          [](PyWorker& w, const py::object&, const py::object&, const py::object&) {
            locked(w, [&] { w.close(); });
            return false;
          },
          py::arg("exc_type"), py::arg("exc"), py::arg("tb"));
}

}  // namespace chipmesh::py_ext

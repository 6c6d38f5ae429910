// ChipWorker: one chip driven from this process (the per-rank harness
// style: one forked process per rank, each with its own ChipWorker).
#include "chipmesh/chip_worker.h"
#include "common.h"

namespace chipmesh::py_ext {
void register_chip_worker(py::module_& m) {
  py::class_<ChipWorker>(m, "ChipWorker",
                         "One chip: binds a platform plugin, drives its device and communicator, and runs the "
                         "one-shot bring-up bootstrap_context. Usable in processes forked by multiprocessing.")
      .def(py::init<>())
      .def(
          "init", [](ChipWorker& w, const std::string& platform) { blocking([&] { w.init(platform); }); },
          py::arg("platform") = "sim",
          "Loads the platform plugin: a name (\"sim\") or a path; DeviceError naming every place tried.")
      .def(
          "set_device", [](ChipWorker& w, int id) { blocking([&] { w.set_device(id); }); }, py::arg("device_id"),
          "Binds this process to a device.")
      .def("reset_device", [](ChipWorker& w) { blocking([&] { w.reset_device(); }); }, "Resets the current device.")
      .def("finalize", [](ChipWorker& w) { blocking([&] { w.finalize(); }); },
           "Releases the platform (call shutdown_bootstrap() first).")
      .def(
          "malloc", [](ChipWorker& w, int64_t n) { return blocking([&] { return w.malloc(to_size(n, "nbytes")); }); },
          py::arg("nbytes"), "Allocates device memory; returns its address (int).")
      .def(
          "free", [](ChipWorker& w, uint64_t p) { blocking([&] { w.free(p); }); }, py::arg("ptr"),
          "Frees memory from malloc().")
      .def(
          "copy_to",
          [](ChipWorker& w, uint64_t dst, const py::object& src, const py::object& nbytes) {
            if (py::isinstance<py::int_>(src)) {
              if (nbytes.is_none()) throw ConfigError("ChipWorker.copy_to: nbytes is required when src is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              const auto addr = src.cast<uint64_t>();
              blocking([&] { w.copy_to(dst, reinterpret_cast<const void*>(static_cast<uintptr_t>(addr)), n); });
              return;
            }
            BufferView view(src, false, "src");
            const size_t n = view.resolve(nbytes, "src");
            blocking([&] { w.copy_to(dst, view.data(), n); });
          },
          py::arg("dst"), py::arg("src"), py::arg("nbytes") = py::none(),
          "Host to device: src is an int host address (nbytes required) or any buffer (bytes, bytearray, "
          "memoryview, numpy array; nbytes defaults to its size). No intermediate copy.")
      .def(
          "copy_from",
          [](ChipWorker& w, const py::object& dst, uint64_t src, const py::object& nbytes) {
            if (py::isinstance<py::int_>(dst)) {
              if (nbytes.is_none())
                throw ConfigError("ChipWorker.copy_from: nbytes is required when dst is an address");
              const size_t n = to_size(nbytes.cast<int64_t>(), "nbytes");
              const auto addr = dst.cast<uint64_t>();
              blocking([&] { w.copy_from(reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), src, n); });
              return;
            }
            BufferView view(dst, true, "dst");
            const size_t n = view.resolve(nbytes, "dst");
            blocking([&] { w.copy_from(view.data(), src, n); });
          },
          py::arg("dst"), py::arg("src"), py::arg("nbytes") = py::none(),
          "Device to host: dst is an int host address (nbytes required) or a writable contiguous buffer (nbytes "
          "defaults to its size). No intermediate copy.")
      .def(
          "comm_init",
          [](ChipWorker& w, int rank, int nranks, const std::string& path) {
            return blocking([&] { return w.comm_init(rank, nranks, path); });
          },
          py::arg("rank"), py::arg("nranks"), py::arg("rootinfo_path"),
          "Joins a communicator (blocks until every rank arrived); returns its handle.")
      .def(
          "comm_alloc_windows",
          [](ChipWorker& w, uint64_t h, int64_t size) {
            return blocking([&] { return w.comm_alloc_windows(h, to_size(size, "window_size")); });
          },
          py::arg("comm"), py::arg("window_size"), "Allocates every rank's window; returns device_ctx.")
      .def(
          "comm_get_local_window_base",
          [](ChipWorker& w, uint64_t h) { return blocking([&] { return w.comm_get_local_window_base(h); }); },
          py::arg("comm"), "This rank's window address.")
      .def(
          "comm_get_window_size",
          [](ChipWorker& w, uint64_t h) { return blocking([&] { return w.comm_get_window_size(h); }); },
          py::arg("comm"), "The actual window size.")
      .def(
          "comm_barrier", [](ChipWorker& w, uint64_t h) { blocking([&] { w.comm_barrier(h); }); }, py::arg("comm"),
          "Blocks until every rank reached the barrier (GIL released).")
      .def(
          "comm_destroy", [](ChipWorker& w, uint64_t h) { blocking([&] { w.comm_destroy(h); }); }, py::arg("comm"),
          "Destroys a communicator.")
      .def(
          "bootstrap_context",
          [](ChipWorker& w, int device_id, const ChipBootstrapConfig& cfg, const py::object& channel) {
            ChipBootstrapChannel* ch = nullptr;
            std::optional<ChipBootstrapChannel> local;
            if (!channel.is_none()) {
              const auto addr = channel.attr("addr").cast<uintptr_t>();
              const auto max = channel.attr("max_buffer_count").cast<size_t>();
              local.emplace(reinterpret_cast<void*>(addr), max);
              ch = &*local;
            }
            return blocking([&] { return w.bootstrap_context(device_id, cfg, ch); });
          },
          py::arg("device_id"), py::arg("cfg"), py::arg("channel") = py::none(),
          "The one-shot bring-up: validate, set device, communicator, carve buffers, load host inputs, publish. "
          "On failure publishes \"<Kind>: <message>\" on the channel and raises.")
      .def("store_to_host", [](ChipWorker& w) { blocking([&] { w.store_to_host(); }); },
           "Copies every store_to_host buffer into its output staging.")
      .def("shutdown_bootstrap", [](ChipWorker& w) { blocking([&] { w.shutdown_bootstrap(); }); },
           "Destroys the communicator of bootstrap_context; idempotent.")
      .def(
          "set_job_token", [](ChipWorker& w, std::string t) { w.set_job_token(std::move(t)); }, py::arg("token"),
          "Job token of the communicators created from now on.")
      .def(
          "set_comm_timeout",
          [](ChipWorker& w, double s) {
            if (!(s > 0)) throw ConfigError("comm timeout must be > 0 seconds");
            w.set_comm_timeout(std::chrono::milliseconds(static_cast<int64_t>(s * 1000)));
          },
          py::arg("seconds"), "Deadline of every wait of the communicators created from now on.")
      .def_property_readonly("initialized", &ChipWorker::initialized, "True after init().")
      .def_property_readonly("bootstrap_comm", &ChipWorker::bootstrap_comm,
                             "Communicator handle of bootstrap_context (0: none).")
      .def_property_readonly("last_bootstrap_timings", &ChipWorker::last_bootstrap_timings,
                             "Timings of the last bootstrap_context.");
}

}  // namespace chipmesh::py_ext

#include "worker/worker_support.h"

namespace chipmesh::testing {

WorkerConfig comm_config(int n, const std::string& rootinfo, size_t window, const std::vector<ChipBufferSpec>& buffers) {
  WorkerConfig cfg;
  for (int i = 0; i < n; ++i) {
    cfg.device_ids.push_back(i);
    ChipBootstrapConfig c;
    c.comm = ChipCommBootstrapConfig{i, n, rootinfo, window};
    c.buffers = buffers;
    cfg.chip_bootstrap_configs.push_back(c);
  }
  return cfg;
}

Task task(const std::string& kernel, std::vector<TensorArg> tensors, std::vector<uint64_t> scalars,
          const std::string& library) {
  Task t;
  t.kernel = kernel;
  t.library = library;
  t.tensors = std::move(tensors);
  t.scalars = std::move(scalars);
  return t;
}

}  // namespace chipmesh::testing

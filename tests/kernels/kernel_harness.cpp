#include "kernel_harness.h"

#include <dlfcn.h>

#include <stdexcept>
#include <utility>

#include "chipmesh/kernel_device.h"

namespace chipmesh::testing {

chipmesh_kernel_entry builtin_kernel(const char* symbol) {
  static const std::string path = std::string(CHIPMESH_TEST_LIB_DIR) + "/libchipmesh_kernels.so";
  static void* const handle = [] {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) throw std::runtime_error("dlopen " + path + ": " + dlerror());
    return h;
  }();
  auto entry = reinterpret_cast<chipmesh_kernel_entry>(dlsym(handle, symbol));
  if (!entry) throw std::runtime_error(std::string(symbol) + " missing in " + path);
  return entry;
}

SimRank::SimRank(int rank_, int n_, const std::string& rootinfo, size_t buffer_bytes, const std::string& first_name,
                 const std::string& second_name)
    : rank(rank_), n(n_) {
  w.init("sim");
  ChipBootstrapConfig cfg;
  cfg.comm = ChipCommBootstrapConfig{rank, n, rootinfo, 2 * buffer_bytes};
  cfg.buffers.push_back({first_name, DataType::UINT8, buffer_bytes, buffer_bytes});
  cfg.buffers.push_back({second_name, DataType::UINT8, buffer_bytes, buffer_bytes});
  res = w.bootstrap_context(rank, cfg);
  ctx = reinterpret_cast<const CommContext*>(res.device_ctx);
  first = res.buffer_ptrs.at(0);
  second = res.buffer_ptrs.at(1);
}

SimRank::~SimRank() {
  try {
    w.shutdown_bootstrap();
    w.finalize();
  } catch (...) {
  }
}

chipmesh_tensor tensor(uint64_t addr, DataType t, const std::vector<uint64_t>& shape) {
  chipmesh_tensor x{};
  x.addr = addr;
  x.dtype = static_cast<uint32_t>(t);
  x.ndim = static_cast<uint32_t>(shape.size());
  for (size_t d = 0; d < shape.size() && d < CHIPMESH_KERNEL_MAX_DIMS; ++d) x.shape[d] = shape[d];
  return x;
}

KernelCall::KernelCall(const CommContext* ctx, std::vector<chipmesh_tensor> t, std::vector<uint64_t> s,
                       std::chrono::nanoseconds timeout)
    : tensors(std::move(t)), scalars(std::move(s)) {
  args.abi_version = CHIPMESH_KERNEL_ABI_VERSION;
  args.device_id = ctx ? static_cast<int32_t>(ctx->rankId) : 0;
  args.comm = ctx;
  args.tensors = tensors.data();
  args.num_tensors = static_cast<uint32_t>(tensors.size());
  args.scalars = scalars.data();
  args.num_scalars = static_cast<uint32_t>(scalars.size());
  args.deadline_ns = device::now_ns() + static_cast<uint64_t>(timeout.count());
  args.abort = &abort_word;
  args.error = error;
}

int KernelCall::run(ChipWorker& w, chipmesh_kernel_entry fn) {
  return w.launch(reinterpret_cast<chipmesh_kernel_fn>(fn), &args);
}

}  // namespace chipmesh::testing

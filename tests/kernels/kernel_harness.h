// What the kernel tests share: the built-in kernels library (the build's
// own, opened once), one sim rank with a communicator and two window
// buffers, and a kernel call with its own argument block, abort word and
// error buffer. The ranks themselves are forked by support/fork_ranks.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "chipmesh/chip_worker.h"
#include "chipmesh/kernel.h"
#include "chipmesh/types.h"

namespace chipmesh::testing {

// The entry point `symbol` of the built libchipmesh_kernels.so; throws
// naming the symbol and the path when it is missing.
chipmesh_kernel_entry builtin_kernel(const char* symbol);

// One sim rank: a communicator whose window holds two buffers of
// `buffer_bytes` each, back to back (`first`, then `second`).
struct SimRank {
  ChipWorker w;
  ChipBootstrapResult res;
  const CommContext* ctx = nullptr;
  uint64_t first = 0;
  uint64_t second = 0;
  int rank = 0;
  int n = 1;

  SimRank(int rank, int n, const std::string& rootinfo, size_t buffer_bytes, const std::string& first_name,
          const std::string& second_name);
  ~SimRank();
  SimRank(const SimRank&) = delete;
  SimRank& operator=(const SimRank&) = delete;
};

chipmesh_tensor tensor(uint64_t addr, DataType t, const std::vector<uint64_t>& shape);

// A kernel call: tensors and scalars, a deadline `timeout` from now, and
// its own abort word and error buffer.
struct KernelCall {
  std::vector<chipmesh_tensor> tensors;
  std::vector<uint64_t> scalars;
  chipmesh_kernel_args args{};
  uint32_t abort_word = 0;
  char error[CHIPMESH_KERNEL_ERROR_SIZE] = {};

  KernelCall(const CommContext* ctx, std::vector<chipmesh_tensor> t, std::vector<uint64_t> s,
             std::chrono::nanoseconds timeout = std::chrono::seconds(60));
  KernelCall(const KernelCall&) = delete;
  KernelCall& operator=(const KernelCall&) = delete;
  int run(ChipWorker& w, chipmesh_kernel_entry fn);
};

}  // namespace chipmesh::testing

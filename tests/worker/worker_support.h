// Shared pieces of the Worker tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "chipmesh/worker.h"

namespace chipmesh::testing {

inline const std::string kLibDir = CHIPMESH_TEST_LIB_DIR;
inline const std::string kTestKernels = kLibDir + "/libchipmesh_test_kernels.so";

// n chips on devices 0..n-1, a communicator over all of them meeting at
// `rootinfo`, each window `window` bytes, each chip with `buffers`.
WorkerConfig comm_config(int n, const std::string& rootinfo, size_t window,
                         const std::vector<ChipBufferSpec>& buffers = {});

Task task(const std::string& kernel, std::vector<TensorArg> tensors = {}, std::vector<uint64_t> scalars = {},
          const std::string& library = kTestKernels);

// The message of the ChipError `body` throws ("" and a test failure if none).
template <typename F>
std::string chip_error_of(F&& body);

// True once every pid is gone (exited; zombies count as gone), or false
// at the deadline. Uses pidfds: no polling of /proc.
bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds deadline);

// Child processes of `pid` (from /proc/<pid>/task/<pid>/children).
std::vector<pid_t> children_of(pid_t pid);

}  // namespace chipmesh::testing

#include <gtest/gtest.h>

template <typename F>
std::string chipmesh::testing::chip_error_of(F&& body) {
  try {
    body();
  } catch (const ChipError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a ChipError, got: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a ChipError, nothing was thrown";
  return {};
}

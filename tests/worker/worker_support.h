// Shared pieces of the Worker tests.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "chipmesh/worker.h"
#include "support/fork_ranks.h"  // wait_gone, children_of

namespace chipmesh::testing {

inline const std::string kLibDir = CHIPMESH_TEST_LIB_DIR;
inline const std::string kTestKernels = kLibDir + "/libchipmesh_test_kernels.so";

// n chips on devices 0..n-1, a communicator over all of them meeting at
// `rootinfo`, each window `window` bytes, each chip with `buffers`.
WorkerConfig comm_config(int n, const std::string& rootinfo, size_t window,
                         const std::vector<ChipBufferSpec>& buffers = {});

Task task(const std::string& kernel, std::vector<TensorArg> tensors = {}, std::vector<uint64_t> scalars = {},
          const std::string& library = kTestKernels);

// `one`: the first CPU of `all` alone.
void first_cpu_of(const cpu_set_t& all, cpu_set_t& one);

// For the stacking tests: this process's CPU mask in `all` and its first
// CPU alone in `one`; false when it has fewer than two CPUs.
bool two_cpus_or_more(cpu_set_t& all, cpu_set_t& one);
// The CPU process `pid` last ran on (/proc).
int last_cpu(pid_t pid);
// Runs work(stacked) with both `chips` pinned to the CPU of `one`, sets
// them free (`allowed`), then work(step) until they last ran on different
// CPUs or `limit` units have run; expects them apart then, and records the
// units run after setting them free as the test property `units` (the
// name of a unit: "allreduces").
void expect_apart_after_work(const pid_t (&chips)[2], const cpu_set_t& allowed, const cpu_set_t& one, int stacked,
                             int step, int limit, const std::function<void(int)>& work, const char* units);

// The message of the error of type E `body` throws ("" and a test failure
// if none; a test failure naming it if another error).
template <typename E, typename F>
std::string error_of(F&& body);
// The message of the ChipError `body` throws.
template <typename F>
std::string chip_error_of(F&& body) {
  return error_of<ChipError>(std::forward<F>(body));
}
// The message of the ConfigError `body` throws.
template <typename F>
std::string config_error_of(F&& body) {
  return error_of<ConfigError>(std::forward<F>(body));
}

}  // namespace chipmesh::testing

#include <gtest/gtest.h>

template <typename E, typename F>
std::string chipmesh::testing::error_of(F&& body) {
  const char* kind = std::is_same_v<E, ChipError>     ? "ChipError"
                     : std::is_same_v<E, ConfigError> ? "ConfigError"
                                                      : "error";
  try {
    body();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a " << kind << ", got: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a " << kind << ", nothing was thrown";
  return {};
}

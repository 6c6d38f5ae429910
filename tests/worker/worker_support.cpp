#include "worker/worker_support.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>

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

bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  for (pid_t pid : pids) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) continue;  // already gone
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    struct pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
    close(fd);
    if (rc != 1) return false;
  }
  return true;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  for (pid_t c; f >> c;) out.push_back(c);
  return out;
}

}  // namespace chipmesh::testing

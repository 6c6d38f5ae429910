#include "fork_floor.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace chipmesh::bench {

double fork_floor_ms(int n) {
  std::vector<pid_t> pids;
  pids.reserve(static_cast<size_t>(n));
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) {
      const int err = errno;
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      throw std::runtime_error(std::string("fork floor: fork failed: ") + std::strerror(err));
    }
    pids.push_back(pid);
  }
  for (pid_t p : pids)
    while (waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
    }
  return ms_between(t0, Clock::now());
}

}  // namespace chipmesh::bench

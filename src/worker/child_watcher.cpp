#include "worker/child_watcher.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chipmesh/errors.h"

namespace chipmesh::worker {

ChildWatcher::ChildWatcher(std::vector<pid_t> pids, SharedHeader* header)
    : pids_(std::move(pids)), header_(header), dead_(new std::atomic<bool>[pids_.size()]), status_(pids_.size(), 0) {
  for (size_t i = 0; i < pids_.size(); ++i) dead_[i].store(false);
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) throw DeviceError(std::string("eventfd failed: ") + strerror(errno));
  for (pid_t pid : pids_) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
      for (int open_fd : pidfds_) close(open_fd);
      close(stop_fd_);
      throw DeviceError("pidfd_open(" + std::to_string(pid) + ") failed: " + strerror(errno));
    }
    pidfds_.push_back(fd);
  }
  thread_ = std::thread([this] { loop(); });
}

ChildWatcher::~ChildWatcher() {
  uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) {
    // eventfd writes of 1 cannot fail short of a bug; nothing to do
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : pidfds_) close(fd);
  close(stop_fd_);
}

bool ChildWatcher::all_dead() const {
  for (size_t i = 0; i < pids_.size(); ++i)
    if (!dead(i)) return false;
  return true;
}

std::string ChildWatcher::cause(size_t chip) const {
  int status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status = status_[chip];
  }
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

void ChildWatcher::loop() {
  size_t alive = pids_.size();
  while (alive > 0) {
    std::vector<pollfd> fds{{stop_fd_, POLLIN, 0}};
    std::vector<size_t> which;
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (dead(i)) continue;
      fds.push_back({pidfds_[i], POLLIN, 0});
      which.push_back(i);
    }
    if (poll(fds.data(), fds.size(), -1) < 0) continue;  // EINTR
    if (fds[0].revents) return;
    for (size_t k = 1; k < fds.size(); ++k) {
      if (!fds[k].revents) continue;
      size_t i = which[k - 1];
      int status = 0;
      if (waitpid(pids_[i], &status, 0) != pids_[i]) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        status_[i] = status;
      }
      dead_[i].store(true, std::memory_order_release);
      --alive;
      notify_parent(header_);
    }
  }
}

}  // namespace chipmesh::worker

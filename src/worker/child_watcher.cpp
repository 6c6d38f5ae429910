#include "worker/child_watcher.h"

#include <signal.h>
#include <errno.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <system_error>

#include "chipmesh/errors.h"
#include "common/oom_kills.h"
#include "common/process.h"
#include "logging/log.h"

namespace chipmesh::worker {
namespace {

// The statuses of a chip that a terminating signal's handler ended
// (chip_process.cpp: 128 + SIGTERM, SIGINT or SIGHUP).
bool after_cleanup_signal(int code) {
  return code == 128 + SIGTERM || code == 128 + SIGINT || code == 128 + SIGHUP;
}

}  // namespace

ChildWatcher::ChildWatcher(std::vector<pid_t> pids, SharedHeader* header, std::vector<const ChipShared*> chips)
    : pids_(std::move(pids)),
      header_(header),
      chips_(std::move(chips)),
      dead_(new std::atomic<bool>[pids_.size()]),
      status_(pids_.size(), 0),
      reaped_elsewhere_(pids_.size(), false),
      oom_kills_at_death_(pids_.size()) {
  for (size_t i = 0; i < pids_.size(); ++i) dead_[i].store(false);
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) throw DeviceError(std::string("eventfd failed: ") + strerror(errno));
  for (pid_t pid : pids_) {
    int fd = process::open_pidfd(pid);
    if (fd < 0) {
      const int err = errno;
      for (int open_fd : pidfds_) close(open_fd);
      pidfds_.clear();
      if (err == ENOSYS || err == EPERM) {
        CHIPMESH_INFO(WORKER, "pidfd_open is not available (%s): the chips' exits are polled every %d ms",
                      strerror(err), kPollMs);
        polling_ = true;
        break;
      }
      close(stop_fd_);
      errno = err;
      throw DeviceError("pidfd_open(" + std::to_string(pid) + ") failed: " + strerror(err));
    }
    pidfds_.push_back(fd);
  }
  if (!polling_) {  // [0] the stop eventfd, [1 + i] chip i's pidfd (loop())
    pollfds_.push_back({stop_fd_, POLLIN, 0});
    for (int fd : pidfds_) pollfds_.push_back({fd, POLLIN, 0});
  }
  try {
    thread_ = std::thread([this] {
      // Read here, off the parent's path (a /proc read, some 20 us).
      const auto at_start = oom_kills::count();
      {
        std::lock_guard<std::mutex> lock(mu_);
        oom_kills_at_start_ = at_start;
      }
      polling_ ? loop_polling() : loop();
    });
  } catch (const std::system_error& e) {  // out of tasks (RLIMIT_NPROC), say
    for (int fd : pidfds_) close(fd);
    close(stop_fd_);
    errno = e.code().value();
    throw DeviceError(std::string("cannot start the watcher thread: ") + strerror(errno));
  }
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

std::string ChildWatcher::cause(size_t chip, const std::string& during) const {
  int status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (reaped_elsewhere_[chip])
      return "exited" + during + " (status unknown: reaped by someone else, e.g. SIGCHLD ignored or another waitpid)";
    status = status_[chip];
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    std::string text = "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")" + during;
    // The chip's last words, when it left them for this signal (written
    // before the signal number, which it stored with release).
    if (chip < chips_.size() && chips_[chip] && chips_[chip]->fault_signo.load(std::memory_order_acquire) == sig) {
      const char* report = chips_[chip]->fault_report;
      text += ": " + std::string(report, strnlen(report, sizeof(chips_[chip]->fault_report)));
    }
    if (sig == SIGKILL) text += oom_note(chip);
    return text;
  }
  const int code = WEXITSTATUS(status);
  std::string text = "exited with status " + std::to_string(code) + during;
  if (after_cleanup_signal(code))
    text += std::string(" (after ") + strsignal(code - 128) + ": the chip removed what it owned and exited)";
  return text;
}

bool ChildWatcher::exited_by_itself(size_t chip) const {
  if (!dead(chip)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  return !reaped_elsewhere_[chip] && WIFEXITED(status_[chip]) && !after_cleanup_signal(WEXITSTATUS(status_[chip]));
}

std::string ChildWatcher::oom_note(size_t chip) const {
  std::optional<uint64_t> before, after;
  {
    std::lock_guard<std::mutex> lock(mu_);
    before = oom_kills_at_start_;
    after = oom_kills_at_death_[chip];
  }
  if (!before || !after) return "";
  if (*after == *before)
    return " (not by the kernel's OOM killer: /proc/vmstat oom_kill stayed at " + std::to_string(*after) + ")";
  const uint64_t kills = *after - *before;
  return ": the kernel's OOM killer killed " + std::to_string(kills) + (kills == 1 ? " process" : " processes") +
         " between bring-up and this chip's death (/proc/vmstat oom_kill " + std::to_string(*before) + " -> " +
         std::to_string(*after) +
         "): most likely this chip ran out of memory (the kernel log, `dmesg`, names each process it killed and "
         "its memory cgroup)";
}

bool ChildWatcher::died_uncleanly(size_t chip) const {
  if (!dead(chip)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  return reaped_elsewhere_[chip] || WIFSIGNALED(status_[chip]);
}

void ChildWatcher::loop() {
  // Allocates nothing (the constructor made the pollfd set): a bad_alloc on
  // this thread, in a process at its memory limit (`ulimit -v`), would end
  // the program instead of failing the call that ran out.
  size_t alive = pids_.size();
  while (alive > 0) {
    if (::poll(pollfds_.data(), pollfds_.size(), -1) <= 0) continue;  // EINTR
    if (pollfds_[0].revents) return;  // stop_fd_
    for (size_t i = 0; i < pids_.size(); ++i) {
      pollfd& p = pollfds_[1 + i];
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      // The pidfd says the chip has exited whoever reaps it. If the host
      // program ignores SIGCHLD (the kernel reaps) or another thread called
      // waitpid(-1) first, waitpid fails with ECHILD: the chip is still dead,
      // only its status is lost. (Skipping it would spin on the readable pidfd.)
      int status = 0;
      pid_t got;
      do got = waitpid(pids_[i], &status, 0);
      while (got < 0 && errno == EINTR);
      record(i, status, got == pids_[i]);
      p.fd = -1;  // poll skips it from now on
      --alive;
    }
  }
}

void ChildWatcher::loop_polling() {
  size_t alive = pids_.size();
  while (alive > 0) {
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (dead(i)) continue;
      int status = 0;
      const pid_t got = waitpid(pids_[i], &status, WNOHANG);
      if (got == 0 || (got < 0 && errno == EINTR)) continue;  // running (or ask again next round)
      record(i, status, got == pids_[i]);  // ECHILD: reaped by someone else, as in loop()
      --alive;
    }
    if (alive == 0) return;
    struct pollfd stop{stop_fd_, POLLIN, 0};
    if (::poll(&stop, 1, kPollMs) > 0) return;
  }
}

void ChildWatcher::record(size_t i, int status, bool reaped_here) {
  std::optional<uint64_t> oom_kills;
  if (reaped_here && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) oom_kills = oom_kills::count();
  {
    std::lock_guard<std::mutex> lock(mu_);
    oom_kills_at_death_[i] = oom_kills;
    status_[i] = status;
    reaped_elsewhere_[i] = !reaped_here;
  }
  dead_[i].store(true, std::memory_order_release);
  notify_parent(header_);
}

}  // namespace chipmesh::worker

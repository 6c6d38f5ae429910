#include "support/fork_ranks.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <exception>
#include <fstream>
#include <thread>

#include "common/process.h"

namespace chipmesh::testing {
namespace {

constexpr size_t kMessageBytes = 4096;
char* t_my_slot = nullptr;  // set in each child after fork
std::set<pid_t>& pid_registry() {
  static std::set<pid_t> pids;
  return pids;
}

void report(char* slot, const char* text) {
  std::strncpy(slot, text, kMessageBytes - 1);
  slot[kMessageBytes - 1] = '\0';
}

}  // namespace

const std::set<pid_t>& forked_pids() { return pid_registry(); }

void rank_note(const std::string& text) {
  if (t_my_slot) report(t_my_slot, text.c_str());
}

std::string RankOutcome::describe() const {
  std::ostringstream os;
  os << "rank " << rank << " (pid " << pid << "): ";
  if (timed_out) os << "killed at the deadline";
  else if (exited) os << "exit " << exit_code;
  else os << "signal " << signal << " (" << strsignal(signal) << ")";
  if (!message.empty()) os << ": " << message;
  return os.str();
}

std::vector<RankOutcome> fork_ranks(int n, const std::function<void(int)>& body,
                                    std::chrono::milliseconds deadline) {
  // One message slot per rank in memory the children share with us.
  size_t bytes = kMessageBytes * static_cast<size_t>(std::max(n, 1));
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) throw std::runtime_error("fork_ranks: mmap failed");
  char* slots = static_cast<char*>(map);

  std::vector<RankOutcome> out(static_cast<size_t>(n));
  std::vector<int> pidfds(static_cast<size_t>(n), -1);
  std::fflush(nullptr);  // no doubled stdio buffers in children
  for (int r = 0; r < n; ++r) {
    pid_t pid = fork();
    if (pid < 0) {
      for (int k = 0; k < r; ++k) kill(out[k].pid, SIGKILL);
      throw std::runtime_error("fork_ranks: fork failed");
    }
    if (pid == 0) {
      t_my_slot = slots + r * kMessageBytes;
      int code = 0;
      try {
        body(r);
      } catch (const std::exception& e) {
        report(slots + r * kMessageBytes, e.what());
        code = 1;
      } catch (...) {
        report(slots + r * kMessageBytes, "unknown exception");
        code = 1;
      }
      std::fflush(nullptr);
      _exit(code);  // skip gtest's and the parent's atexit handlers
    }
    out[r].rank = r;
    out[r].pid = pid;
    pid_registry().insert(pid);
    pidfds[r] = process::open_pidfd(pid);
  }

  auto end = std::chrono::steady_clock::now() + deadline;
  int remaining = n;
  std::vector<bool> done(static_cast<size_t>(n), false);
  std::vector<int> watched = pidfds;  // -1 once reaped
  while (remaining > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    for (size_t i : process::wait_exits(watched, std::min(left, std::chrono::milliseconds(1000)))) {
      const int r = static_cast<int>(i);
      watched[i] = -1;
      int status = 0;
      if (waitpid(out[r].pid, &status, 0) == out[r].pid) {
        out[r].exited = WIFEXITED(status);
        out[r].exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        out[r].signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      }
      done[r] = true;
      --remaining;
    }
  }
  for (int r = 0; r < n; ++r) {
    if (!done[r]) {
      kill(out[r].pid, SIGKILL);
      waitpid(out[r].pid, nullptr, 0);
      out[r].timed_out = true;
      out[r].signal = SIGKILL;
    }
    if (pidfds[r] >= 0) close(pidfds[r]);
    out[r].message = std::string(slots + r * kMessageBytes);
  }
  munmap(map, bytes);
  return out;
}

bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  for (pid_t pid : pids) {
    int fd = process::open_pidfd(pid);
    if (fd < 0) continue;  // already gone
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    bool exited = !process::wait_exits({fd}, std::max(left, std::chrono::milliseconds(0))).empty();
    close(fd);
    if (!exited) return false;
  }
  return true;
}

bool wait_for_entry(const std::string& dir, const std::function<bool()>& done, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  const int in = inotify_init1(IN_CLOEXEC);
  // Watch first, then look: an entry made in between is seen either way.
  const bool watching = in >= 0 && inotify_add_watch(in, dir.c_str(), IN_CREATE | IN_MOVED_TO) >= 0;
  bool found = done();
  alignas(inotify_event) char buf[4096];
  while (!found) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    struct pollfd p{in, POLLIN, 0};
    if (!watching) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // no watch: look again
    else if (poll(&p, 1, static_cast<int>(left.count())) == 1) (void)!read(in, buf, sizeof buf);
    found = done();
  }
  if (in >= 0) close(in);
  return found;
}

bool wait_file(const std::string& path, std::chrono::milliseconds deadline) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  return wait_for_entry(dir, [&] { return access(path.c_str(), F_OK) == 0; }, deadline);
}

std::string no_inotify_reason() {
  const int in = inotify_init1(IN_CLOEXEC);
  if (in >= 0) {
    close(in);
    return "";
  }
  return std::string("no inotify instance to be had (fs.inotify.max_user_instances taken by other processes?): ") +
         std::strerror(errno);
}

std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  for (pid_t c; f >> c;) out.push_back(c);
  return out;
}

bool wait_asleep_in_futex(pid_t tid, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  do {
    if (futex_word_waited_on(tid) != 0) return true;
    sched_yield();
  } while (std::chrono::steady_clock::now() < end);
  return false;
}

uintptr_t futex_word_waited_on(pid_t tid) {
  std::ifstream f("/proc/" + std::to_string(tid) + "/syscall");
  long nr = -1;
  std::string word;
  if (!(f >> nr >> word) || nr != SYS_futex) return 0;
  return static_cast<uintptr_t>(std::stoull(word, nullptr, 16));
}

::testing::AssertionResult all_ok(const std::vector<RankOutcome>& outcomes) {
  std::ostringstream os;
  bool ok = true;
  for (const auto& o : outcomes) {
    if (!o.ok()) {
      ok = false;
      os << "\n  " << o.describe();
    }
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "ranks failed:" << os.str();
}

}  // namespace chipmesh::testing

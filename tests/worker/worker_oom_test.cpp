// A chip the kernel's OOM killer ends dies of SIGKILL, like a kill -9; its
// ChipError must say it was most likely out of memory, and nothing may stay
// behind. The chip runs in a memory cgroup of its own, small enough for its
// kernel to exceed (root with a writable memory controller only: skipped
// elsewhere).
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/worker.h"
#include "support/fork_ranks.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::string text;
  std::getline(f, text);
  return text;
}

// A memory cgroup below this process's own, limited to `limit` bytes (and
// no swap); removed when it goes (it must be empty by then).
class MemoryCgroup {
 public:
  explicit MemoryCgroup(size_t limit) {
    std::ifstream self("/proc/self/cgroup");
    std::string v1, v2;
    for (std::string line; std::getline(self, line);) {
      // "4:memory:/path" (cgroup v1) or "0::/path" (v2)
      const size_t a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      const std::string controllers = line.substr(a + 1, b - a - 1);
      if (controllers == "memory") v1 = line.substr(b + 1);
      if (line.compare(0, 3, "0::") == 0) v2 = line.substr(b + 1);
    }
    const std::string name = "/chipmesh_oom_test_" + std::to_string(getpid());
    std::string limit_file, swap_file, swap_value;
    if (!v1.empty() && access(("/sys/fs/cgroup/memory" + v1).c_str(), W_OK) == 0) {
      dir_ = "/sys/fs/cgroup/memory" + v1 + name;
      limit_file = "memory.limit_in_bytes";
      swap_file = "memory.memsw.limit_in_bytes";  // memory + swap: the same limit, so no swap
      swap_value = std::to_string(limit);
    } else if (!v2.empty() && access(("/sys/fs/cgroup" + v2 + "/cgroup.subtree_control").c_str(), W_OK) == 0) {
      // The memory controller must be on for children; fails where this
      // cgroup holds processes of its own (cgroup v2's "no internal processes").
      write_file("/sys/fs/cgroup" + v2 + "/cgroup.subtree_control", "+memory");
      dir_ = "/sys/fs/cgroup" + v2 + name;
      limit_file = "memory.max";
      swap_file = "memory.swap.max";
      swap_value = "0";
    } else {
      why_not_ = "no writable memory cgroup (v1 '" + v1 + "', v2 '" + v2 + "')";
      return;
    }
    if (mkdir(dir_.c_str(), 0755) != 0) {
      why_not_ = "mkdir " + dir_ + ": " + std::strerror(errno);
      dir_.clear();
      return;
    }
    if (!write_file(dir_ + "/" + limit_file, std::to_string(limit)) ||
        read_file(dir_ + "/" + limit_file) != std::to_string(limit)) {
      why_not_ = "cannot set " + dir_ + "/" + limit_file;
      return;
    }
    write_file(dir_ + "/" + swap_file, swap_value);  // absent without swap accounting: fine
  }
  ~MemoryCgroup() {
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  // Empty when usable.
  const std::string& why_not() const { return why_not_; }
  // Moves the calling process into it (its children follow).
  bool enter() const { return write_file(dir_ + "/cgroup.procs", std::to_string(getpid())); }

 private:
  std::string dir_;
  std::string why_not_;
};

TEST(WorkerOomKill, AChipTheOomKillerEndsSaysItRanOutOfMemory) {
  // 256 MiB for the test process and its chips; chip 1 touches up to 8 GiB.
  MemoryCgroup cgroup(size_t{256} << 20);
  if (!cgroup.why_not().empty()) GTEST_SKIP() << cgroup.why_not();
  auto outcomes = fork_ranks(1, [&](int) {
    CM_REQUIRE(cgroup.enter()) << "cannot enter the memory cgroup: " << std::strerror(errno);
    Worker w(comm_config(2, "", 4096));
    w.init();
    const pid_t victim = w.chip_pid(1);
    const std::string msg = chip_error_of(
        [&] { w.run([&](Orchestrator& o) { o.submit(1, task("test_exhaust_memory", {}, {uint64_t{8} << 30})); }); });
    rank_note(msg);
    CM_REQUIRE(contains(msg, "chip 1 (device 1, pid " + std::to_string(victim) + ")")) << msg;
    CM_REQUIRE(contains(msg, "killed by signal 9 (Killed) while running kernel 'test_exhaust_memory': the kernel's OOM "
                             "killer killed "))
        << msg;
    CM_REQUIRE(contains(msg, "most likely this chip ran out of memory")) << msg;
    // The other chip goes on.
    w.run([&](Orchestrator& o) { o.submit(0, task("test_noop")); });
    w.close();
  });
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].ok()) << outcomes[0].describe();
  RecordProperty("error", outcomes[0].message);
}

}  // namespace
}  // namespace chipmesh::testing

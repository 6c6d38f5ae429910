// A /dev/shm that fills up after bring-up. Windows are allocated at first
// touch (bring-up checks the free space, it does not reserve it), so the
// chip whose kernel first writes a page another job took dies of SIGBUS:
// its ChipError must say that, and nothing may stay behind. Runs in a
// private mount namespace with a small tmpfs of its own on /dev/shm (root
// only: skipped elsewhere).
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/worker.h"
#include "support/fork_ranks.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

[[maybe_unused]] bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

constexpr const char* kSkip = "skip: ";

// Fills the file system of `path` until it has no room left.
void fill(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  CM_REQUIRE(fd >= 0) << path << ": " << std::strerror(errno);
  std::vector<char> chunk(64 << 10, 1);
  while (write(fd, chunk.data(), chunk.size()) > 0) {
  }
  CM_REQUIRE(errno == ENOSPC) << "filling " << path << ": " << std::strerror(errno);
  close(fd);
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

TEST(WorkerFullShm, AChipMeetingAFullDevShmSaysSo) {
  auto outcomes = fork_ranks(1, [](int) {
    // A /dev/shm of 8 MiB seen by this process and its chips only.
    if (unshare(CLONE_NEWNS) != 0)
      return rank_note(kSkip + std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno));
    CM_REQUIRE(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0) << std::strerror(errno);
    if (mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=8m") != 0)
      return rank_note(kSkip + std::string("mount tmpfs on /dev/shm: ") + std::strerror(errno));
    const size_t window = size_t{2} << 20;
    const size_t count = window / sizeof(float);
    std::string msg;
    {
      Worker w(comm_config(2, "", window, {{"x", DataType::FLOAT32, count, window}}));
      w.init();  // 2 windows of 2 MiB fit; their pages are not allocated yet
      fill("/dev/shm/another_job");
      try {
        w.run([&](Orchestrator& o) { o.allreduce(w.world(), "x", "x", count, DataType::FLOAT32, ReduceOp::SUM); });
      } catch (const ChipError& e) {
        msg = e.what();
      }
      CM_REQUIRE(!msg.empty()) << "the allreduce into windows /dev/shm cannot back did not fail";
      w.close();
    }
    rank_note(msg);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)  // their handlers end the chip their own way
    CM_REQUIRE(contains(msg, "killed by signal 7 (Bus error) while running kernel 'chipmesh_allreduce': SIGBUS (no page "
                             "can back the address) at 0x"))
        << msg;
    CM_REQUIRE(contains(msg, " in /dev/shm/chipmesh_")) << msg;
    CM_REQUIRE(contains(msg, "; /dev/shm has ")) << msg;
#endif
    CM_REQUIRE(unlink("/dev/shm/another_job") == 0) << std::strerror(errno);
    const auto left = entries("/dev/shm");
    CM_REQUIRE(left.empty()) << left.size() << " objects left in /dev/shm, the first " << left.front();
  });
  ASSERT_EQ(outcomes.size(), 1u);
  if (outcomes[0].ok() && outcomes[0].message.rfind(kSkip, 0) == 0) GTEST_SKIP() << outcomes[0].message;
  EXPECT_TRUE(outcomes[0].ok()) << outcomes[0].describe();
  RecordProperty("error", outcomes[0].message);
}

}  // namespace
}  // namespace chipmesh::testing

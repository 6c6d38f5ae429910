// process helpers: a process's own start time is read once and cached, and a
// forked child reports its own, never its parent's cached one.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include <gtest/gtest.h>

#include "common/process.h"

namespace chipmesh::testing {
namespace {

TEST(ProcessStartTime, OwnIsCachedAndAForkedChildReportsItsOwn) {
  const uint64_t mine = process::start_time(getpid());
  ASSERT_NE(mine, 0u);
  EXPECT_EQ(process::start_time(getpid()), process::info(getpid()).start_time);
  // Start times tick every 10 ms or so: fork until a child starts on a later
  // tick than ours, so that our cached value would be wrong for it. Each
  // child waits on a pipe before it looks.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::vector<pid_t> others;
  pid_t later = -1;
  int go[2] = {-1, -1};
  while (later < 0 && std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(pipe(go), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(go[1]);
      char c = 0;
      if (read(go[0], &c, 1) != 1 || c != 'y') _exit(0);
      _exit(process::start_time(getpid()) == process::info(getpid()).start_time &&
                    process::start_time(getpid()) != mine
                ? 0
                : 1);
    }
    close(go[0]);
    if (process::info(child).start_time != mine) {
      later = child;
      ASSERT_EQ(write(go[1], "y", 1), 1);
    } else {
      others.push_back(child);
    }
    close(go[1]);  // the others read EOF and exit
  }
  for (pid_t p : others) waitpid(p, nullptr, 0);
  ASSERT_GT(later, 0) << "no child started on a later clock tick within 30 s";
  int status = 0;
  ASSERT_EQ(waitpid(later, &status, 0), later);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child saw its parent's start time";
}

}  // namespace
}  // namespace chipmesh::testing

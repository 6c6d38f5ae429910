// fd_path: the "/proc/<pid>/fd/<fd>" names of anonymous shared memory. A
// name that does not parse is never taken for an inherited descriptor, and
// a chip that cannot recognise its own window file would copy a staged input
// onto itself (correct data, a copy too many), so the parse is checked on
// its own here.
#include <unistd.h>

#include <climits>
#include <string>

#include <gtest/gtest.h>

#include "common/fd_path.h"
#include "support/fork_ranks.h"

namespace chipmesh::testing {
namespace {

TEST(FdPath, FormatThenParseGivesTheSamePidAndFd) {
  for (auto [pid, fd] : {std::pair{1, 0}, std::pair{4242, 17}, std::pair{INT_MAX, INT_MAX}}) {
    const std::string name = fd_path::format(pid, fd);
    int p = -1, f = -1;
    ASSERT_TRUE(fd_path::parse(name, &p, &f)) << name;
    EXPECT_EQ(p, pid) << name;
    EXPECT_EQ(f, fd) << name;
  }
  EXPECT_EQ(fd_path::format(12, 3), "/proc/12/fd/3");
}

TEST(FdPath, AnythingElseIsRejectedAndLeavesTheOutputsAlone) {
  for (const char* bad : {"", "/proc/", "/proc/12", "/proc/12/fd/", "/proc/12/fd/3/", "/proc/12/fd/3x", "/proc/x/fd/3",
                          "/proc/-12/fd/3", "/proc/12/fd/-3", "/proc/+12/fd/3", "/proc/ 12/fd/3", "/proc/12/fd/ 3",
                          "/proc//fd/3", "/proc/12/fds/3", "proc/12/fd/3", "/chipmesh_12_0",
                          "/proc/99999999999/fd/3", "/proc/12/fd/99999999999", "/proc/self/fd/3"}) {
    int p = -7, f = -7;
    EXPECT_FALSE(fd_path::parse(bad, &p, &f)) << bad;
    EXPECT_EQ(p, -7) << bad;
    EXPECT_EQ(f, -7) << bad;
  }
}

// A name of this process or of its parent is held here; a name of a child
// (or of any other process) is not, nor pid 0.
TEST(FdPath, HeldHereByThisProcessAndItsChildrenOnly) {
  EXPECT_TRUE(fd_path::held_here(getpid()));
  EXPECT_TRUE(fd_path::held_here(getppid()));
  EXPECT_FALSE(fd_path::held_here(0));
  const int test_pid = getpid();
  auto outcomes = fork_ranks(1, [&](int) {
    CM_REQUIRE(fd_path::held_here(test_pid)) << "the parent's names";
    CM_REQUIRE(fd_path::held_here(getpid())) << "its own names";
  });
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  EXPECT_FALSE(fd_path::held_here(outcomes[0].pid)) << "a child's names are not held by its parent";
}

}  // namespace
}  // namespace chipmesh::testing

// process helpers: a process's own start time is read once and cached, and a
// forked child reports its own, never its parent's cached one.
#include <unistd.h>

#include <chrono>

#include <gtest/gtest.h>

#include "common/process.h"
#include "support/fork_ranks.h"

namespace chipmesh::testing {
namespace {

TEST(ProcessStartTime, OwnIsCachedAndAForkedChildReportsItsOwn) {
  const uint64_t mine = process::start_time(getpid());  // cached from here on
  ASSERT_NE(mine, 0u);
  EXPECT_EQ(process::start_time(getpid()), process::info(getpid()).start_time);
  // Start times tick every 10 ms or so: fork until a child starts on a later
  // tick than ours, where our cached value would be wrong for it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool later_tick = false;
  while (!later_tick && std::chrono::steady_clock::now() < deadline) {
    auto outcomes = fork_ranks(1, [&](int) {
      const uint64_t own = process::info(getpid()).start_time;  // read, not cached
      if (own == mine) return rank_note("same tick");
      CM_REQUIRE(process::start_time(getpid()) == own) << "the child got its parent's start time " << mine;
    });
    ASSERT_TRUE(all_ok(outcomes));
    later_tick = outcomes[0].message != "same tick";
  }
  EXPECT_TRUE(later_tick) << "no child started on a later clock tick within 30 s";
}

}  // namespace
}  // namespace chipmesh::testing

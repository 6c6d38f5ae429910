// oom_kills: the OOM killer's count in /proc/vmstat, which tells a chip the
// OOM killer ended from one killed by kill -9 (worker/child_watcher.h).
#include <string>

#include <gtest/gtest.h>

#include "common/oom_kills.h"

namespace chipmesh::testing {
namespace {

TEST(OomKills, TheOomKillLineIsReadWhereverItStands) {
  EXPECT_EQ(oom_kills::parse("oom_kill 0\n"), 0u);
  EXPECT_EQ(oom_kills::parse("nr_free_pages 123\noom_kill 42\nnuma_pte_updates 7\n"), 42u);
  EXPECT_EQ(oom_kills::parse("nr_free_pages 123\noom_kill 18446744073709551615"), UINT64_MAX);  // no final newline
  // Lines that only begin alike are other counters.
  EXPECT_EQ(oom_kills::parse("oom_kill_disable 1\noom_kill 3\n"), 3u);
}

TEST(OomKills, NoLineOrABadValueReadsAsUnknown) {
  EXPECT_FALSE(oom_kills::parse(""));
  EXPECT_FALSE(oom_kills::parse("nr_free_pages 123\n"));
  EXPECT_FALSE(oom_kills::parse("oom_kill \n"));
  EXPECT_FALSE(oom_kills::parse("oom_kill 12x\n"));
}

TEST(OomKills, ThisMachinesCountReadsWhereProcHasIt) {
  const auto count = oom_kills::count();
  if (!count) GTEST_SKIP() << "/proc/vmstat has no oom_kill line here";
  const auto again = oom_kills::count();
  ASSERT_TRUE(again);
  EXPECT_GE(*again, *count);  // a counter since boot
}

}  // namespace
}  // namespace chipmesh::testing

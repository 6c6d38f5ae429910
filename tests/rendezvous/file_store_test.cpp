// The rendezvous store interface through its file implementation: atomic
// publish, trust checks, waits with a deadline, compare-and-remove, and the
// temp-file names a cleaner recognises.
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "rendezvous/file_store.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

using rendezvous::Bytes;
using rendezvous::FileStore;
using namespace std::chrono_literals;

Bytes bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }
bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

TEST(FileStore, SetThenCheckRoundTripsAndReplaces) {
  ScratchDir dir;
  FileStore store(dir.path().string());
  std::string why;
  EXPECT_FALSE(store.check("k", &why).has_value());
  EXPECT_EQ(why, "no file yet");
  store.set("k", bytes("first"));
  EXPECT_EQ(store.check("k", &why), bytes("first"));
  store.set("k", bytes("second value"));
  EXPECT_EQ(store.check("k", &why), bytes("second value"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"k"}) << "no temp file is left after a set";
  std::remove(store.path("k").c_str());
}

TEST(FileStore, OnlyARegularFileIsAValue) {
  ScratchDir dir;
  FileStore store(dir.path().string());
  ASSERT_EQ(mkdir(store.path("d").c_str(), 0700), 0);
  std::string why;
  EXPECT_FALSE(store.check("d", &why).has_value());
  EXPECT_EQ(why, "not a regular file");
  ASSERT_EQ(symlink("/etc/hostname", store.path("l").c_str()), 0);
  EXPECT_FALSE(store.check("l", &why).has_value()) << "a link is never followed";
  rmdir(store.path("d").c_str());
  std::remove(store.path("l").c_str());
}

TEST(FileStore, SetNeverReplacesALinkOrADirectory) {
  // Replacing a user's symlink with our file would later delete it.
  ScratchDir dir;
  FileStore store(dir.path().string());
  const std::string target = dir.file("target");
  { std::ofstream(target) << "keep"; }
  ASSERT_EQ(symlink(target.c_str(), store.path("l").c_str()), 0);
  try {
    store.set("l", bytes("value"));
    ADD_FAILURE() << "set replaced a symbolic link";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), store.path("l") + "' exists and is a symbolic link")) << e.what();
  }
  struct stat st;
  ASSERT_EQ(lstat(store.path("l").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the link is still there";
  ASSERT_EQ(mkdir(store.path("d").c_str(), 0700), 0);
  EXPECT_THROW(store.set("d", bytes("value")), ConfigError);
  EXPECT_EQ(dir.entries().size(), 3u) << "no temp file is left";
  std::remove(store.path("l").c_str());
  std::remove(target.c_str());
  rmdir(store.path("d").c_str());
}

TEST(FileStore, WaitReturnsTheValueAnotherProcessSets) {
  ScratchDir dir;
  auto outcomes = fork_ranks(2, [&](int rank) {
    FileStore store(dir.path().string());
    if (rank == 0) {
      store.set("rootinfo", bytes("hello"));
      return;
    }
    Bytes v = store.wait("rootinfo", 30s, [](const Bytes&, std::string*) { return true; }, "test");
    CM_REQUIRE(v == bytes("hello"));
  });
  EXPECT_TRUE(all_ok(outcomes));
  std::remove((dir.path() / "rootinfo").c_str());
}

// Makes this process one that can have no inotify instance, as when the
// user's fs.inotify.max_user_instances (128 by default) are all taken by
// other processes: a user namespace of its own (mapping this uid to itself)
// whose instance limit is 0. Returns why it could not, or "".
std::string leave_no_inotify_instance() {
  const std::string uid = std::to_string(geteuid());
  if (unshare(CLONE_NEWUSER) != 0) return std::string("unshare(CLONE_NEWUSER): ") + std::strerror(errno);
  if (!(std::ofstream("/proc/self/uid_map") << uid << " " << uid << " 1\n"))
    return "cannot write /proc/self/uid_map";
  if (!(std::ofstream("/proc/sys/user/max_inotify_instances") << "0\n"))
    return "cannot write /proc/sys/user/max_inotify_instances";
  const int fd = inotify_init1(IN_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    return "inotify_init1 still succeeds";
  }
  return "";
}

// A waiter that can get no inotify instance (the user's are all taken) still
// gets the value, by polling, and a missing directory is still an error.
TEST(FileStore, WaitWithoutAnInotifyInstanceStillGetsTheValue) {
  ScratchDir dir;
  auto* waiting = static_cast<std::atomic<int>*>(
      mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(waiting, MAP_FAILED);
  new (waiting) std::atomic<int>(0);
  auto outcomes = fork_ranks(2, [&](int rank) {
    FileStore store(dir.path().string());
    if (rank == 0) {
      const auto until = std::chrono::steady_clock::now() + 30s;
      while (waiting->load() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      if (waiting->load() == 2) return;  // the waiter could not be made so: skipped
      CM_REQUIRE(waiting->load() == 1) << "the waiter never started waiting";
      store.set("rootinfo", bytes("hello"));
      return;
    }
    const std::string why_not = leave_no_inotify_instance();
    if (!why_not.empty()) {
      waiting->store(2);
      rank_note("skipped: " + why_not);
      return;
    }
    try {
      FileStore(dir.file("missing")).wait("k", 1s, [](const Bytes&, std::string*) { return true; }, "test");
      CM_REQUIRE(false) << "a wait in a missing directory did not fail";
    } catch (const ConfigError& e) {
      CM_REQUIRE(contains(e.what(), dir.file("missing"))) << e.what();
    }
    waiting->store(1);
    Bytes v = store.wait("rootinfo", 30s, [](const Bytes&, std::string*) { return true; }, "test");
    CM_REQUIRE(v == bytes("hello"));
  });
  const std::string note = outcomes[1].message;
  munmap(waiting, sizeof(std::atomic<int>));
  std::remove((dir.path() / "rootinfo").c_str());
  ASSERT_TRUE(all_ok(outcomes));
  if (note.rfind("skipped: ", 0) == 0) GTEST_SKIP() << note;
}

TEST(FileStore, WaitTimesOutNamingTheFileAndTheLastReason) {
  ScratchDir dir;
  FileStore store(dir.path().string());
  try {
    store.wait("absent", 100ms, [](const Bytes&, std::string*) { return true; }, "rank 1 of 2");
    FAIL() << "wait returned without a value";
  } catch (const TimeoutError& e) {
    EXPECT_TRUE(contains(e.what(), "rank 1 of 2 timed out after 100 ms")) << e.what();
    EXPECT_TRUE(contains(e.what(), store.path("absent"))) << e.what();
    EXPECT_TRUE(contains(e.what(), "no file yet")) << e.what();
  }
  store.set("refused", bytes("stale"));
  try {
    store.wait("refused", 100ms, [](const Bytes&, std::string* why) { *why = "its writer is gone"; return false; },
               "rank 1 of 2");
    FAIL() << "a refused value was returned";
  } catch (const TimeoutError& e) {
    EXPECT_TRUE(contains(e.what(), "its writer is gone")) << e.what();
  }
  std::remove(store.path("refused").c_str());
}

TEST(FileStore, RemoveIfLeavesAValueThatIsNotOurs) {
  ScratchDir dir;
  FileStore store(dir.path().string());
  store.set("k", bytes("theirs"));
  store.remove_if("k", [](const Bytes& v) { return v == bytes("ours"); });
  EXPECT_EQ(dir.entries().size(), 1u);
  store.remove_if("k", [](const Bytes& v) { return v == bytes("theirs"); });
  EXPECT_TRUE(dir.entries().empty());
  store.remove_if("absent", [](const Bytes&) { return true; });  // no throw
}

TEST(FileStore, LocalNamesAreTheTempFileThenTheFile) {
  FileStore store("/some/dir");
  auto names = store.local_names("rootinfo");
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[1], "/some/dir/rootinfo");
  EXPECT_EQ(names[0], store.temp_path("rootinfo"));
  const std::string temp_name = names[0].substr(names[0].rfind('/') + 1);
  EXPECT_EQ(FileStore::temp_owner(temp_name), getpid());
}

TEST(FileStore, TempOwnerReadsOnlyWellFormedTempNames) {
  EXPECT_EQ(FileStore::temp_owner("rootinfo.tmp.4242.00000000deadbeef"), 4242);
  EXPECT_EQ(FileStore::temp_owner("my.root.info.tmp.17.00000000deadbeef"), 17);
  for (const char* bad : {"rootinfo.tmp.4242.deadbeef", "rootinfo", "rootinfo.tmp..00000000deadbeef",
                          "rootinfo.tmp.0.00000000deadbeef", "rootinfo.tmp.12x.00000000deadbeef",
                          "rootinfo.tmp.4242.00000000deadbeeg", ".tmp.4242.00000000deadbeef"})
    EXPECT_FALSE(FileStore::temp_owner(bad).has_value()) << bad;
}

TEST(MakeStore, AFilePathIsAFileStoreKeyedByItsName) {
  rendezvous::Opened o = rendezvous::make_store("/tmp/x/rootinfo");
  EXPECT_EQ(o.key, "rootinfo");
  EXPECT_TRUE(contains(o.store->describe(o.key), "'/tmp/x/rootinfo'"));
  EXPECT_THROW(rendezvous::make_store(""), ConfigError);
  EXPECT_THROW(rendezvous::make_store("/tmp/x/"), ConfigError);
}

}  // namespace
}  // namespace chipmesh::testing

// SharedMemory: named POSIX shm for host staging. Every name starts with
// "/chipmesh" and every test removes what it created (the leak listener
// fails a test that leaves /dev/shm/chipmesh* behind).
#include "chipmesh/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "support/fork_ranks.h"

namespace chipmesh {
namespace {

namespace cmt = chipmesh::testing;

// A unique name per call, removed at scope exit even when an assertion fails.
class ShmName {
 public:
  ShmName() {
    static int counter = 0;
    name_ = "/chipmesh_test_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
  }
  ~ShmName() { shm_unlink(name_.c_str()); }
  ShmName(const ShmName&) = delete;
  ShmName& operator=(const ShmName&) = delete;
  const std::string& str() const { return name_; }
  operator const std::string&() const { return name_; }

 private:
  std::string name_;
};

bool exists(const std::string& name) { return access(("/dev/shm" + name).c_str(), F_OK) == 0; }

void fill(SharedMemory& shm, uint8_t seed) {
  auto* p = static_cast<uint8_t*>(shm.data());
  for (size_t i = 0; i < shm.size(); ++i) p[i] = static_cast<uint8_t>(seed + i * 31);
}

bool holds(const SharedMemory& shm, uint8_t seed) {
  const auto* p = static_cast<const uint8_t*>(shm.data());
  for (size_t i = 0; i < shm.size(); ++i)
    if (p[i] != static_cast<uint8_t>(seed + i * 31)) return false;
  return true;
}

// Permissions of the mapping that contains `addr`, e.g. "r--s", from
// /proc/self/maps (checks read-only without provoking a fault).
std::string mapping_perms(const void* addr) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto a = reinterpret_cast<uintptr_t>(addr);
  while (std::getline(maps, line)) {
    std::istringstream is(line);
    std::string range, perms;
    is >> range >> perms;
    auto dash = range.find('-');
    uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (a >= lo && a < hi) return perms;
  }
  return "";
}

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

TEST(SharedMemory, CreateAndAttachSeeTheSameBytes) {
  ShmName name;
  auto a = SharedMemory::create(name, 8192);
  EXPECT_TRUE(a.is_open());
  EXPECT_EQ(a.name(), name.str());
  EXPECT_EQ(a.size(), 8192u);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(mapping_perms(a.data()).substr(0, 2), "rw");
  fill(a, 3);

  auto b = SharedMemory::attach(name, /*writable=*/true);
  EXPECT_EQ(b.size(), 8192u);
  EXPECT_NE(b.data(), a.data());
  EXPECT_TRUE(holds(b, 3));
  fill(b, 9);  // and back the other way
  EXPECT_TRUE(holds(a, 9));
  a.unlink();
  EXPECT_FALSE(exists(name));
}

TEST(SharedMemory, DataVisibleAcrossFork) {
  ShmName name;
  auto parent = SharedMemory::create(name, 4096);
  fill(parent, 5);
  auto outcomes = cmt::fork_ranks(1, [&](int) {
    // A chip process attaches by name, reads the input, writes a reply.
    auto in = SharedMemory::attach(name);
    CM_REQUIRE(in.size() == 4096) << in.size();
    CM_REQUIRE(holds(in, 5));
    auto out = SharedMemory::attach(name, /*writable=*/true);
    static_cast<uint8_t*>(out.data())[0] = 0xab;
    // Detaching in the child must leave the object for the parent.
  });
  ASSERT_TRUE(cmt::all_ok(outcomes));
  EXPECT_EQ(static_cast<uint8_t*>(parent.data())[0], 0xab);
  EXPECT_TRUE(exists(name));
  parent.unlink();
}

// An unnamed region: nothing in /dev/shm, found by its /proc name in this
// process, in a forked child (the inherited descriptor) and after the
// creator closed its copy only while a mapping holds it.
TEST(SharedMemory, AnonymousRegionIsSharedWithChildrenAndNamesNothing) {
  std::set<std::string> before;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) before.insert(e.path().filename());
  auto parent = SharedMemory::create_anonymous("test", 10000);  // not a page multiple
  EXPECT_TRUE(parent.is_anonymous());
  EXPECT_EQ(parent.name().rfind("/proc/" + std::to_string(getpid()) + "/fd/", 0), 0u) << parent.name();
  std::set<std::string> after;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) after.insert(e.path().filename());
  EXPECT_EQ(before, after) << "an anonymous region appeared in /dev/shm";
  fill(parent, 5);
  {
    auto again = SharedMemory::attach(parent.name());
    EXPECT_EQ(again.size(), 10000u);
    EXPECT_TRUE(holds(again, 5));
  }
  auto outcomes = cmt::fork_ranks(1, [&](int) {
    auto in = SharedMemory::attach(parent.name());
    CM_REQUIRE(in.size() == 10000 && holds(in, 5)) << in.size();
    auto out = SharedMemory::attach(parent.name(), /*writable=*/true);
    static_cast<uint8_t*>(out.data())[9999] = 0xab;
  });
  ASSERT_TRUE(cmt::all_ok(outcomes));
  EXPECT_EQ(static_cast<uint8_t*>(parent.data())[9999], 0xab);
  parent.unlink();  // nothing named: a no-op
  EXPECT_EQ(SharedMemory::create_anonymous("empty", 0).size(), 0u);
  EXPECT_THROW(SharedMemory::attach("/proc/1/fd/x"), DeviceError);
}

TEST(SharedMemory, AttachReadOnlyMapsWithoutWrite) {
  ShmName name;
  auto a = SharedMemory::create(name, 4096);
  fill(a, 1);
  auto ro = SharedMemory::attach(name);
  EXPECT_EQ(ro.size(), 4096u);
  EXPECT_TRUE(holds(ro, 1));
  EXPECT_EQ(mapping_perms(ro.data()).substr(0, 2), "r-");
  auto rw = SharedMemory::attach(name, true);
  EXPECT_EQ(mapping_perms(rw.data()).substr(0, 2), "rw");
  a.unlink();
}

TEST(SharedMemory, SizeZeroHasNoMapping) {
  ShmName name;
  auto a = SharedMemory::create(name, 0);
  EXPECT_TRUE(a.is_open());
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.data(), nullptr);
  auto b = SharedMemory::attach(name);
  EXPECT_TRUE(b.is_open());
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.data(), nullptr);
  a.unlink();
}

TEST(SharedMemory, CreateOnExistingNameFailsAndKeepsIt) {
  ShmName name;
  auto a = SharedMemory::create(name, 4096);
  fill(a, 7);
  std::string what = error_of<DeviceError>([&] { SharedMemory::create(name, 100); });
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  EXPECT_NE(what.find("100"), std::string::npos) << what;
  EXPECT_TRUE(exists(name));
  auto b = SharedMemory::attach(name);
  EXPECT_EQ(b.size(), 4096u);
  EXPECT_TRUE(holds(b, 7));
  a.unlink();
}

TEST(SharedMemory, RemoveIfOwnLeavesAnotherUsersObject) {
  ShmName mine, theirs;
  auto a = SharedMemory::create(mine, 4096);
  EXPECT_TRUE(SharedMemory::remove_if_own(mine));
  EXPECT_FALSE(exists(mine));
  EXPECT_FALSE(SharedMemory::remove_if_own(mine)) << "nothing left to remove";
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give an object to another user";
  auto b = SharedMemory::create(theirs, 4096);
  const int fd = shm_open(theirs.str().c_str(), O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  const int chowned = fchown(fd, 4242, 4242);
  close(fd);
  ASSERT_EQ(chowned, 0);
  EXPECT_FALSE(SharedMemory::remove_if_own(theirs)) << "root removed another user's object";
  EXPECT_TRUE(exists(theirs));
  b.unlink();
}

TEST(SharedMemory, FailedCreateRemovesWhatItMade) {
  ShmName name;
  // SIZE_MAX is a negative off_t (ftruncate fails); 2^62 cannot be mapped.
  for (size_t size : {SIZE_MAX, size_t{1} << 62}) {
    std::string what = error_of<DeviceError>([&] { SharedMemory::create(name, size); });
    EXPECT_NE(what.find(name.str()), std::string::npos) << what;
    EXPECT_NE(what.find(std::to_string(size)), std::string::npos) << what;
    EXPECT_FALSE(exists(name)) << size;
  }
}

// A region larger than /dev/shm fails at create with the reason, instead of
// being handed out sparse and SIGBUSing its first writer.
TEST(SharedMemory, LargerThanDevShmFailsAtCreateNamingTheFreeSpace) {
  struct statvfs fs{};
  ASSERT_EQ(statvfs("/dev/shm", &fs), 0);
  const size_t size = static_cast<size_t>(fs.f_blocks) * fs.f_frsize + (size_t{1} << 20);
  ShmName name;
  std::string what = error_of<DeviceError>([&] { SharedMemory::create(name, size); });
  EXPECT_NE(what.find("posix_fallocate"), std::string::npos) << what;
  EXPECT_NE(what.find(std::to_string(size)), std::string::npos) << what;
  EXPECT_NE(what.find("bytes free"), std::string::npos) << what;
  EXPECT_FALSE(exists(name));
}

TEST(SharedMemory, BadNamesRejected) {
  const std::string bad[] = {"", "/", "noslash", "chipmesh_x", "/chipmesh/x", "//chipmesh",
                             "/" + std::string(255, 'c'), std::string("/chip\0mesh", 10)};
  for (const auto& n : bad) {
    EXPECT_THROW(SharedMemory::create(n, 16), ConfigError) << "'" << n << "'";
    EXPECT_THROW(SharedMemory::attach(n), ConfigError) << "'" << n << "'";
  }
  std::string what = error_of<ConfigError>([] { SharedMemory::create("/a/b", 1); });
  EXPECT_NE(what.find("/a/b"), std::string::npos) << what;

  // 255 characters in all is the longest accepted name.
  std::string longest = "/chipmesh_" + std::to_string(getpid()) + "_";
  longest.resize(255, 'L');
  auto a = SharedMemory::create(longest, 16);
  a.unlink();
  EXPECT_FALSE(exists(longest));
}

TEST(SharedMemory, AttachMissingNamesIt) {
  ShmName name;
  std::string what = error_of<DeviceError>([&] { SharedMemory::attach(name); });
  EXPECT_EQ(what, "shared memory '" + name.str() + "' does not exist (attach)");
  EXPECT_THROW(SharedMemory::attach(name, true), DeviceError);
}

TEST(SharedMemory, MoveLeavesSourceEmpty) {
  ShmName name;
  auto a = SharedMemory::create(name, 4096);
  fill(a, 2);
  void* data = a.data();

  SharedMemory b(std::move(a));
  EXPECT_FALSE(a.is_open());
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_TRUE(a.name().empty());
  EXPECT_NO_THROW(a.close());
  EXPECT_NO_THROW(a.unlink());  // a moved-from handle names nothing
  EXPECT_TRUE(exists(name));
  EXPECT_TRUE(b.is_open());
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.name(), name.str());
  EXPECT_TRUE(holds(b, 2));

  // Assigning over an open handle closes the old mapping and takes the new.
  ShmName other;
  auto c = SharedMemory::create(other, 128);
  c = std::move(b);
  EXPECT_FALSE(b.is_open());
  EXPECT_EQ(c.data(), data);
  EXPECT_EQ(c.size(), 4096u);
  EXPECT_TRUE(holds(c, 2));
  EXPECT_TRUE(exists(other)) << "move-assignment must not unlink the old object";

  SharedMemory d;
  EXPECT_FALSE(d.is_open());
  d = std::move(c);
  EXPECT_EQ(d.name(), name.str());
  d.unlink();
  SharedMemory::attach(other).unlink();
}

TEST(SharedMemory, CloseIsIdempotentAndKeepsTheName) {
  ShmName name;
  auto a = SharedMemory::create(name, 4096);
  a.close();
  EXPECT_FALSE(a.is_open());
  EXPECT_EQ(a.data(), nullptr);
  a.close();
  EXPECT_FALSE(a.is_open());
  EXPECT_TRUE(exists(name));
  a.unlink();  // unlink after close still knows the name
  EXPECT_FALSE(exists(name));
}

TEST(SharedMemory, DestructorDoesNotUnlink) {
  ShmName name;
  {
    auto a = SharedMemory::create(name, 4096);
    fill(a, 4);
  }
  auto b = SharedMemory::attach(name);
  EXPECT_TRUE(holds(b, 4));
  b.unlink();
}

TEST(SharedMemory, UnlinkThenAttachFailsButMappingStays) {
  ShmName name;
  auto a = SharedMemory::create(name, 4096);
  a.unlink();
  EXPECT_THROW(SharedMemory::attach(name), DeviceError);
  EXPECT_NO_THROW(a.unlink());  // ENOENT is not an error
  fill(a, 6);                   // the mapping outlives the name
  EXPECT_TRUE(holds(a, 6));
}

TEST(SharedMemory, RefusesObjectOwnedByAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown an shm object";
  ShmName name;
  int fd = shm_open(name.str().c_str(), O_CREAT | O_EXCL | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fchown(fd, 4242, static_cast<gid_t>(-1)), 0);
  close(fd);
  std::string what = error_of<DeviceError>([&] { SharedMemory::attach(name); });
  EXPECT_NE(what.find(name.str()), std::string::npos) << what;
  EXPECT_NE(what.find("4242"), std::string::npos) << what;
  EXPECT_NE(what.find("uid 0"), std::string::npos) << what;
}

}  // namespace
}  // namespace chipmesh

// Communication domains: allocate_domain / release_domain inside Worker::run,
// their contexts and names, domains live together (disjoint and
// overlapping) with collectives on them checked against a host reference,
// release by run(), and a member killed during allocate. The leak listener
// checks /dev/shm after every test; each test also checks that no private
// rootinfo directory of a domain is left behind.
#include <poll.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "knobs/knobs.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"
#include "worker/job_dirs.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

// This process's private rootinfo directories of one kind ("domain" or
// "job") where the Worker makes them.
size_t private_dirs(const std::string& kind) {
  std::error_code ec;
  size_t n = 0;
  const std::string prefix = "chipmesh-" + kind + "-" + std::to_string(getpid()) + "-";
  for (const auto& e : std::filesystem::directory_iterator(worker::private_dir_base(), ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
  return n;
}
size_t domain_dirs() { return private_dirs("domain"); }

// Every test: nothing of ours in /dev/shm (the listener checks too) and no
// domain directory more than before.
class DomainsTest : public ::testing::Test {
 protected:
  void SetUp() override { dirs_before_ = domain_dirs(); }
  void TearDown() override {
    EXPECT_EQ(domain_dirs(), dirs_before_) << "a domain's rootinfo directory was left behind";
  }
  size_t dirs_before_ = 0;
};

WorkerConfig plain_config(int n) {
  WorkerConfig cfg;
  for (int i = 0; i < n; ++i) cfg.device_ids.push_back(i);
  return cfg;
}

constexpr size_t kCount = 1000;  // elements per buffer
const std::vector<ChipBufferSpec> kBuffers = {{"a", DataType::INT32, kCount, kCount * 4},
                                             {"b", DataType::INT32, 4 * kCount, 16 * kCount}};
constexpr size_t kWindow = 20 * kCount + 4096;

int32_t val(int rank, size_t i, int salt) { return static_cast<int32_t>((rank * 31 + static_cast<int>(i) * 7 + salt * 3) % 101) - 50; }

void fill(Worker& w, const CommDomain& d, const std::string& buf, int salt, size_t count = kCount) {
  for (int chip : d.chips()) {
    const DomainContext& c = d.context(chip);
    std::vector<int32_t> v(count);
    for (size_t i = 0; i < count; ++i) v[i] = val(c.domain_rank, i, salt);
    w.copy_to(chip, c.buffer_ptrs.at(buf), v.data(), v.size() * 4);
  }
}

std::vector<int32_t> read(Worker& w, const CommDomain& d, int chip, const std::string& buf, size_t count) {
  std::vector<int32_t> v(count);
  w.copy_from(chip, v.data(), d.context(chip).buffer_ptrs.at(buf), count * 4);
  return v;
}

// allreduce SUM of "a" into "b" (first kCount elements) after fill(salt).
void expect_allreduce(Worker& w, const CommDomain& d, int salt, int times = 1) {
  for (int chip : d.chips()) {
    auto got = read(w, d, chip, "b", kCount);
    for (size_t i = 0; i < kCount; ++i) {
      int64_t want = 0;
      for (int r = 0; r < d.size(); ++r) want += val(r, i, salt);
      for (int t = 1; t < times; ++t) want *= d.size();
      ASSERT_EQ(got[i], want) << "domain " << d.name() << " chip " << chip << " element " << i;
    }
  }
}

// fill(salt), allreduce SUM of "a" into "b" on `d`, wait, check.
void reduce_and_check(Worker& w, Orchestrator& o, const CommDomain& d, int salt) {
  fill(w, d, "a", salt);
  o.allreduce(d, "a", "b", kCount, DataType::INT32, ReduceOp::SUM);
  o.wait();
  expect_allreduce(w, d, salt);
}

// A run that allocates `name` over `chips` and reduces on it: after a
// failure, the Worker goes on and the name is free again.
void reduce_in_a_new_run(Worker& w, const std::string& name, const std::vector<int>& chips, int salt) {
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain(name, chips, kWindow, kBuffers);
    reduce_and_check(w, o, d, salt);
  });
}

TEST_F(DomainsTest, DistinctContextsDenseRanksWithoutBootstrapConfigs) {
  Worker w(plain_config(4));
  w.init();
  EXPECT_THROW(w.world(), ConfigError);
  CommDomain kept;
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("tp", {2, 0, 3}, kWindow, kBuffers);
    kept = d;
    EXPECT_EQ(d.name(), "tp");
    EXPECT_EQ(d.size(), 3);
    EXPECT_EQ(d.chips(), (std::vector<int>{2, 0, 3}));
    EXPECT_GE(d.allocation_id(), 1u);
    EXPECT_FALSE(d.released());
    std::set<int> ranks;
    int expected_rank = 0;
    for (int chip : d.chips()) {
      const DomainContext& c = d.context(chip);
      EXPECT_EQ(c.chip, chip);
      EXPECT_EQ(c.domain_rank, expected_rank++);
      EXPECT_EQ(d.rank_of(chip), c.domain_rank);
      EXPECT_EQ(c.domain_size, 3);
      EXPECT_NE(c.device_ctx, 0u);
      EXPECT_GE(c.actual_window_size, kWindow);
      ranks.insert(c.domain_rank);
      ASSERT_EQ(c.buffer_ptrs.size(), 2u);
      EXPECT_EQ(c.buffer_ptrs.at("a"), c.local_window_base);
      EXPECT_EQ(c.buffer_ptrs.at("b"), c.local_window_base + kCount * 4);
      // the window is zero
      std::vector<unsigned char> bytes(kWindow, 0xff);
      w.copy_from(chip, bytes.data(), c.local_window_base, kWindow);
      EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](unsigned char b) { return b == 0; }));
    }
    EXPECT_EQ(ranks.size(), 3u);
    // Device addresses are per chip: two domains on one chip differ.
    CommDomain other = o.allocate_domain("other", {0, 2}, kWindow, kBuffers);
    for (int chip : {0, 2}) {
      EXPECT_NE(other.context(chip).device_ctx, d.context(chip).device_ctx);
      EXPECT_NE(other.context(chip).local_window_base, d.context(chip).local_window_base);
    }
    EXPECT_EQ(other.context(0).domain_rank, 0);
    EXPECT_EQ(d.context(0).domain_rank, 1);
    EXPECT_THROW(d.context(1), ConfigError);
    EXPECT_EQ(d.rank_of(1), -1);
    reduce_and_check(w, o, d, 1);
    CommDomain copy = d;
    o.release_domain(d);
    EXPECT_TRUE(d.released());
    EXPECT_TRUE(copy.released());
    o.release_domain(copy);  // idempotent
    EXPECT_THROW(o.allreduce(copy, "a", "b", kCount, DataType::INT32, ReduceOp::SUM), ConfigError);
  });
  EXPECT_TRUE(kept.released());
  w.close();
}

// Directories created in `dir` while `body` runs, seen by an inotify watch
// (a directory made and removed within init() still counts).
std::vector<std::string> dirs_created_during(const std::string& dir, const std::function<void()>& body) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_GE(inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_ONLYDIR), 0) << dir;
  body();
  std::vector<std::string> made;
  alignas(inotify_event) char buf[4096];
  for (ssize_t len; (len = ::read(fd, buf, sizeof buf)) > 0;)
    for (char* p = buf; p < buf + len;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      if ((ev->mask & IN_ISDIR) && ev->len > 0) made.emplace_back(ev->name);
      p += sizeof(inotify_event) + ev->len;
    }
  close(fd);
  return made;
}

// An empty rootinfo_path: the bring-up meets in the Worker's shared memory
// (no directory, no file at any point, so no kill can leave one), as
// domains do; with CHIPMESH_RENDEZVOUS_DIR set, in a private directory
// there that is gone when init() returns.
TEST_F(DomainsTest, TheBringUpMeetsInSharedMemoryUnlessTheRendezvousDirectoryIsSet) {
  if (const std::string why = no_inotify_reason(); !why.empty()) GTEST_SKIP() << why;
  struct Restore {
    ~Restore() { knobs::reload(); }
  } restore;
  WorkerConfig cfg = plain_config(2);
  for (int r = 0; r < 2; ++r) {
    ChipBootstrapConfig b;
    b.comm = ChipCommBootstrapConfig{r, 2, "", 1 << 16};  // the Worker's own rendezvous
    cfg.chip_bootstrap_configs.push_back(b);
  }
  auto bring_up_and_reduce = [&] {
    Worker w(cfg);
    w.init();
    w.run([&](Orchestrator& o) {
      CommDomain d = o.allocate_domain("d", {1, 0}, kWindow, kBuffers);
      reduce_and_check(w, o, d, 1);
      o.release_domain(d);
    });
    w.close();
  };
  const std::string job_prefix = "chipmesh-job-" + std::to_string(getpid()) + "-";
  auto jobs = [&](const std::vector<std::string>& made) {
    return std::count_if(made.begin(), made.end(), [&](const std::string& n) { return n.rfind(job_prefix, 0) == 0; });
  };
  knobs::reload();
  if (knobs::is_set(knobs::Id::RendezvousDir)) GTEST_SKIP() << "CHIPMESH_RENDEZVOUS_DIR is set in the environment";
  EXPECT_EQ(jobs(dirs_created_during(worker::private_dir_base(), bring_up_and_reduce)), 0)
      << "the default bring-up made a rootinfo directory in " << worker::private_dir_base();

  ScratchDir scratch;
  knobs::set_for_process(knobs::Id::RendezvousDir, scratch.path().string());
  EXPECT_EQ(jobs(dirs_created_during(scratch.path().string(), bring_up_and_reduce)), 1)
      << "CHIPMESH_RENDEZVOUS_DIR is set, yet the bring-up made no directory there";
  EXPECT_TRUE(scratch.entries().empty()) << "something was left in " << scratch.path();
}

// With CHIPMESH_RENDEZVOUS_DIR set, the bring-up's private rootinfo
// directory (an empty rootinfo_path) goes there, and a directory that
// cannot hold one is a DeviceError naming it. Domains need no directory at
// all: their members meet in the Worker's shared memory
// (src/rendezvous/memory_store.h), wherever the knob points.
TEST_F(DomainsTest, DomainsMeetInSharedMemoryAndOnlyTheBringUpUsesTheRendezvousDirectory) {
  struct statfs fs{};
  if (::statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC && ::access("/dev/shm", W_OK | X_OK) == 0) {
    EXPECT_EQ(worker::private_dir_base(), "/dev/shm");
  }
  struct Restore {
    ~Restore() { knobs::reload(); }
  } restore;
  ScratchDir scratch;
  const std::string missing = (scratch.path() / "absent").string();
  knobs::set_for_process(knobs::Id::RendezvousDir, missing);
  WorkerConfig job = plain_config(2);
  for (int r = 0; r < 2; ++r) {
    ChipBootstrapConfig b;
    b.comm = ChipCommBootstrapConfig{r, 2, "", 1 << 16};  // the Worker's private directory
    job.chip_bootstrap_configs.push_back(b);
  }
  try {
    Worker bad(job);
    bad.init();
    ADD_FAILURE() << "init made its rootinfo directory in a directory that does not exist";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find(missing + "/chipmesh-job-"), std::string::npos) << e.what();
  }
  Worker w(plain_config(2));
  w.init();
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("d", {0, 1}, kWindow, kBuffers);  // the knob names no directory: no matter
    reduce_and_check(w, o, d, 2);
    o.release_domain(d);
    knobs::set_for_process(knobs::Id::RendezvousDir, scratch.path().string());
    EXPECT_EQ(worker::private_dir_base(), scratch.path().string());
    CommDomain e = o.allocate_domain("e", {1, 0}, kWindow, kBuffers);
    EXPECT_TRUE(scratch.entries().empty()) << "a domain's allocation left something in " << scratch.path();
    o.release_domain(e);
  });
  w.close();
  EXPECT_TRUE(scratch.entries().empty()) << "something was left in " << scratch.path();
}

// Control objects ("chipmesh_*_c") a chip maps: the sim transport makes one
// only for a communicator that got no control area of the Worker's table.
size_t control_objects_mapped(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find("/dev/shm/chipmesh_") != std::string::npos && line.find("_c (deleted)") != std::string::npos) ++n;
  return n;
}

// The Worker lends each communicator one of the table's 8 control areas
// (the bring-up's included) and takes it back at release: past 8 live
// communicators the platform makes control objects of its own, and every
// domain works either way; released areas are lent again.
TEST_F(DomainsTest, ControlAreasAreLentUpToEightLiveCommunicatorsThenObjectsTakeOver) {
  WorkerConfig cfg = plain_config(2);
  for (int r = 0; r < 2; ++r) {
    ChipBootstrapConfig b;
    b.comm = ChipCommBootstrapConfig{r, 2, "", 1 << 16};  // the bring-up holds area 0
    cfg.chip_bootstrap_configs.push_back(b);
  }
  Worker w(cfg);
  w.init();
  auto objects = [&] { return control_objects_mapped(w.chip_pid(0)) + control_objects_mapped(w.chip_pid(1)); };
  EXPECT_EQ(objects(), 0u);
  w.run([&](Orchestrator& o) {
    std::vector<CommDomain> live;
    for (int i = 0; i < 9; ++i) live.push_back(o.allocate_domain(std::string("d") + std::to_string(i), {i % 2, 1 - i % 2}, kWindow, kBuffers));
    // 7 areas were left for 9 domains: the last two made objects, one per member each.
    EXPECT_EQ(objects(), 4u);
    for (size_t i = 0; i < live.size(); ++i) reduce_and_check(w, o, live[i], 40 + static_cast<int>(i));
    for (CommDomain& d : live) o.release_domain(d);
    EXPECT_EQ(objects(), 0u);
    live.clear();
    for (int i = 0; i < 7; ++i) live.push_back(o.allocate_domain(std::string("e") + std::to_string(i), {1, 0}, kWindow, kBuffers));
    EXPECT_EQ(objects(), 0u) << "released control areas were not lent again";
    for (size_t i = 0; i < live.size(); ++i) reduce_and_check(w, o, live[i], 60 + static_cast<int>(i));
  });
  w.close();
}

TEST_F(DomainsTest, BadArgumentsAreConfigErrorsBeforeAnything) {
  Worker w(plain_config(3));
  w.init();
  w.run([&](Orchestrator& o) {
    EXPECT_THROW(o.allocate_domain("", {0, 1}, kWindow), ConfigError);
    EXPECT_THROW(o.allocate_domain("x", {}, kWindow), ConfigError);
    EXPECT_THROW(o.allocate_domain("x", {0, 0}, kWindow), ConfigError);
    EXPECT_THROW(o.allocate_domain("x", {0, 3}, kWindow), ConfigError);
    EXPECT_THROW(o.allocate_domain("x", {0, 1}, 0), ConfigError);
    EXPECT_THROW(o.allocate_domain("x", {0, 1}, 100, kBuffers), ConfigError);  // buffers overflow the window
    ChipBufferSpec in{"in", DataType::FLOAT32, 4, 16};
    in.load_from_host = true;
    const std::string loading = config_error_of([&] { o.allocate_domain("x", {0, 1}, kWindow, {in}); });
    EXPECT_NE(loading.find("load_from_host"), std::string::npos) << loading;
    EXPECT_NE(loading.find("'in'"), std::string::npos) << loading;
    EXPECT_THROW(o.allocate_domain("x", {0, 1}, kWindow, {{"bad", DataType::INT32, 4, 15}}), ConfigError);
    // Nothing was made: the name is free.
    CommDomain d = o.allocate_domain("x", {0, 1}, kWindow);
    EXPECT_EQ(d.size(), 2);
  });
  w.close();
}

TEST_F(DomainsTest, WorldAndADomainOverTheSameChips) {
  ScratchDir scratch;
  Worker w(comm_config(3, scratch.file("rootinfo"), kWindow, kBuffers));
  w.init();
  const CommDomain& world = w.world();
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("same", world.chips(), kWindow, kBuffers);
    EXPECT_NE(d.allocation_id(), world.allocation_id());
    for (int chip : d.chips()) {
      EXPECT_EQ(d.context(chip).domain_rank, world.context(chip).domain_rank);
      EXPECT_NE(d.context(chip).device_ctx, world.context(chip).device_ctx);
      EXPECT_NE(d.context(chip).local_window_base, world.context(chip).local_window_base);
    }
    fill(w, world, "a", 2);
    fill(w, d, "a", 3);
    o.allreduce(world, "a", "b", kCount, DataType::INT32, ReduceOp::SUM);
    o.allreduce(d, "a", "b", kCount, DataType::INT32, ReduceOp::SUM);
    o.wait();
    expect_allreduce(w, world, 2);
    expect_allreduce(w, d, 3);
    EXPECT_THROW(o.allocate_domain("world", {0, 1}, kWindow), ConfigError);
    CommDomain wcopy = world;
    EXPECT_THROW(o.release_domain(wcopy), ConfigError);
  });
  w.close();
}

TEST_F(DomainsTest, LiveNameRejectedAndReusedAfterRelease) {
  Worker w(plain_config(3));
  w.init();
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("pair", {0, 1}, kWindow, kBuffers);
    const std::string live = config_error_of([&] { o.allocate_domain("pair", {1, 2}, kWindow); });
    EXPECT_NE(live.find("'pair'"), std::string::npos) << "a live name allocated again: " << live;
    const uint64_t first = d.allocation_id();
    o.release_domain(d);
    CommDomain again = o.allocate_domain("pair", {1, 2}, kWindow, kBuffers);
    EXPECT_NE(again.allocation_id(), first);
    EXPECT_TRUE(d.released());
    EXPECT_FALSE(again.released());
    reduce_and_check(w, o, again, 4);
  });
  // run() released it; the name is free in the next run.
  w.run([&](Orchestrator& o) { o.allocate_domain("pair", {0, 2}, kWindow); });
  w.close();
}

// sim reuses a released domain's windows for the next domain of the same
// shape (its rank 0 made them; window_cache.h): whoever the members are
// and whatever the old domain wrote, a new domain's windows are zeros and
// its collectives right. The chips below take each way: the same members,
// its owner as rank 0 with a member that never mapped it (chip 2, through
// /proc), and a rank 0 that only ever was a peer (a new object).
TEST_F(DomainsTest, ADomainAllocatedAfterAReleaseSeesZerosWhereTheOldOneWrote) {
  Worker w(plain_config(3));
  w.init();
  const std::vector<std::vector<int>> members = {{0, 1}, {0, 1}, {0, 2}, {1, 0}, {0, 2, 1}, {0, 2, 1}, {0, 1}};
  w.run([&](Orchestrator& o) {
    int salt = 10;
    for (const std::vector<int>& chips : members) {
      CommDomain d = o.allocate_domain("again", chips, kWindow, kBuffers);
      for (int chip : chips) {
        const DomainContext& c = d.context(chip);
        std::vector<unsigned char> bytes(c.actual_window_size, 0xff);
        w.copy_from(chip, bytes.data(), c.local_window_base, bytes.size());
        const auto nonzero = std::find_if(bytes.begin(), bytes.end(), [](unsigned char b) { return b != 0; });
        EXPECT_EQ(nonzero, bytes.end()) << "chip " << chip << " of a domain over " << chips.size()
                                        << " chips: byte " << (nonzero - bytes.begin()) << " of its window is "
                                        << int(*nonzero) << " after a release";
        // Dirty the whole window for the next domain.
        std::vector<unsigned char> dirt(c.actual_window_size, static_cast<unsigned char>(0x40 + salt));
        w.copy_to(chip, c.local_window_base, dirt.data(), dirt.size());
      }
      reduce_and_check(w, o, d, salt++);
      o.release_domain(d);
    }
  });
  w.close();
}

TEST_F(DomainsTest, ReleasedByRunWhenTheFunctionThrowsAndTheErrorIsKept) {
  Worker w(plain_config(3));
  w.init();
  CommDomain a, b;
  try {
    w.run([&](Orchestrator& o) {
      a = o.allocate_domain("a", {0, 1}, kWindow, kBuffers);
      b = o.allocate_domain("b", {1, 2}, kWindow, kBuffers);
      fill(w, a, "a", 5);
      o.allreduce(a, "a", "b", kCount, DataType::INT32, ReduceOp::SUM);  // still running, maybe
      throw std::runtime_error("boom");
    });
    ADD_FAILURE() << "nothing thrown";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  EXPECT_TRUE(a.released());
  EXPECT_TRUE(b.released());
  // The worker goes on: the names are free.
  reduce_in_a_new_run(w, "a", {2, 0}, 6);
  w.close();
}

TEST_F(DomainsTest, DisjointDomainsRunCollectivesConcurrently) {
  Worker w(plain_config(4));
  w.init();
  w.run([&](Orchestrator& o) {
    CommDomain x = o.allocate_domain("x", {0, 1}, kWindow, kBuffers);
    CommDomain y = o.allocate_domain("y", {3, 2}, kWindow, kBuffers);
    fill(w, x, "a", 7);
    fill(w, y, "a", 8);
    // Both in flight at once: neither waits for the other.
    for (int k = 0; k < 5; ++k) {
      o.allreduce(x, "a", "b", kCount, DataType::INT32, ReduceOp::SUM);
      o.allreduce(y, "a", "b", kCount, DataType::INT32, ReduceOp::SUM);
    }
    o.wait();
    expect_allreduce(w, x, 7);
    expect_allreduce(w, y, 8);
  });
  w.close();
}

TEST_F(DomainsTest, OverlappingDomainsLiveTogetherInSubmissionOrder) {
  Worker w(plain_config(3));
  w.init();
  w.run([&](Orchestrator& o) {
    CommDomain left = o.allocate_domain("left", {0, 1}, kWindow, kBuffers);
    CommDomain right = o.allocate_domain("right", {1, 2}, kWindow, kBuffers);
    CommDomain all = o.allocate_domain("all", {2, 1, 0}, kWindow, kBuffers);
    fill(w, left, "b", 9);
    fill(w, right, "b", 10);
    fill(w, all, "b", 11);
    // In-place allreduces interleaved on chip 1's three domains: each
    // domain's result depends on its own order (x n per call); no deadlock.
    const int rounds = 4;
    for (int k = 0; k < rounds; ++k) {
      o.allreduce(left, "b", "b", kCount, DataType::INT32, ReduceOp::SUM);
      o.allreduce(all, "b", "b", kCount, DataType::INT32, ReduceOp::SUM);
      o.allreduce(right, "b", "b", kCount, DataType::INT32, ReduceOp::SUM);
    }
    o.wait();
    expect_allreduce(w, left, 9, rounds);
    expect_allreduce(w, right, 10, rounds);
    expect_allreduce(w, all, 11, rounds);
    o.release_domain(right);
    o.allreduce(left, "b", "b", kCount, DataType::INT32, ReduceOp::SUM);
    o.wait();
    expect_allreduce(w, left, 9, rounds + 1);
  });
  w.close();
}

TEST_F(DomainsTest, SixteenChipsEightDomainsOfTwo) {
  Worker w(plain_config(16));
  w.init();
  w.run([&](Orchestrator& o) {
    std::vector<CommDomain> ds;
    for (int i = 0; i < 8; ++i)
      ds.push_back(o.allocate_domain("pair" + std::to_string(i), {i + 8, i}, kWindow, kBuffers));
    for (int i = 0; i < 8; ++i) fill(w, ds[i], "a", 20 + i);
    for (auto& d : ds) o.allreduce(d, "a", "b", kCount, DataType::INT32, ReduceOp::SUM);
    o.wait();
    for (int i = 0; i < 8; ++i) expect_allreduce(w, ds[i], 20 + i);
    for (int i = 0; i < 8; i += 2) o.release_domain(ds[i]);
  });
  w.close();
}

// Two chips that took turns on one core while the other stayed free kept
// doing so while they allocated domains (140 us an allocation and release
// instead of 50, for tens of ms after bring-up, on 2 vCPUs of an AMD EPYC
// VM): the sim communicator's barrier moves the higher rank off the core.
TEST_F(DomainsTest, TwoChipsStackedOnOneCoreMoveApartWhileAllocatingDomains) {
  cpu_set_t allowed, one;
  if (!two_cpus_or_more(allowed, one)) GTEST_SKIP() << "needs two CPUs";
  Worker w(plain_config(2));
  w.init();
  auto allocate = [&](int times) {
    w.run([&](Orchestrator& o) {
      for (int k = 0; k < times; ++k) {
        CommDomain d = o.allocate_domain("pair", {0, 1}, kWindow);
        o.release_domain(d);
      }
    });
  };
  const pid_t chips[2] = {w.chip_pid(0), w.chip_pid(1)};
  // Stacked, each barrier finds the other rank on its CPU. The move comes
  // after 8 stacked barriers in a row, three or so allocations; the
  // scheduler alone took hundreds here.
  expect_apart_after_work(chips, allowed, one, 4, 2, 40, allocate, "allocations");
  w.close();
}

TEST_F(DomainsTest, AllreduceAndAllgatherOnADomainMatchTheHostReference) {
  Worker w(plain_config(4));
  w.init();
  const size_t n = 5;  // not a multiple of the domain size
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("sub", {3, 1, 2}, 1 << 16,
                                     {{"x", DataType::FLOAT32, n, n * 4}, {"y", DataType::FLOAT32, 3 * n, 12 * n}});
    for (int chip : d.chips()) {
      const int r = d.context(chip).domain_rank;
      std::vector<float> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = 0.5f * static_cast<float>(r + 1) + static_cast<float>(i);
      w.copy_to(chip, d.context(chip).buffer_ptrs.at("x"), v.data(), n * 4);
    }
    std::vector<uint64_t> x, y;
    for (int chip : d.chips()) {
      x.push_back(d.context(chip).buffer_ptrs.at("x"));
      y.push_back(d.context(chip).buffer_ptrs.at("y"));
    }
    o.allgather(d, x, y, n, DataType::FLOAT32);
    o.wait();
    for (int chip : d.chips()) {
      std::vector<float> got(3 * n);
      w.copy_from(chip, got.data(), y[static_cast<size_t>(d.rank_of(chip))], got.size() * 4);
      for (int r = 0; r < 3; ++r)
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(got[r * n + i], 0.5f * static_cast<float>(r + 1) + static_cast<float>(i)) << chip;
    }
    o.allreduce(d, "x", "x", n, DataType::FLOAT32, ReduceOp::MAX);
    o.wait();
    for (int chip : d.chips()) {
      std::vector<float> got(n);
      w.copy_from(chip, got.data(), d.context(chip).buffer_ptrs.at("x"), n * 4);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], 1.5f + static_cast<float>(i));
    }
  });
  w.close();
}

// Data in Worker::malloc memory on a domain: staged through the window
// bytes after the domain's buffers (a 4 KiB window, 1 KiB of buffers); a
// buffer that the staged data would clobber is refused.
TEST_F(DomainsTest, ReduceScatterOnMallocMemoryIsStagedAfterTheDomainsBuffers) {
  Worker w(plain_config(3));
  w.init();
  const size_t count = 5000;  // per rank; 3 * 5000 int32 per input
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("staged", {2, 0}, 4096, {{"keep", DataType::INT32, 256, 1024}});
    std::vector<uint64_t> in, out;
    for (int chip : d.chips()) {
      const int r = d.context(chip).domain_rank;
      in.push_back(w.malloc(chip, 2 * count * 4));
      out.push_back(w.malloc(chip, count * 4));
      std::vector<int32_t> v(2 * count);
      for (size_t i = 0; i < v.size(); ++i) v[i] = val(r, i, 7);
      w.copy_to(chip, in.back(), v.data(), v.size() * 4);
      std::vector<int32_t> keep(256, 1234 + r);
      w.copy_to(chip, d.context(chip).buffer_ptrs.at("keep"), keep.data(), 1024);
    }
    o.reduce_scatter(d, in, out, count, DataType::INT32, ReduceOp::SUM);
    o.wait();
    for (int chip : d.chips()) {
      const int r = d.context(chip).domain_rank;
      std::vector<int32_t> got(count), keep(256);
      w.copy_from(chip, got.data(), out[static_cast<size_t>(r)], count * 4);
      for (size_t i = 0; i < count; ++i)
        ASSERT_EQ(got[i], val(0, r * count + i, 7) + val(1, r * count + i, 7)) << "chip " << chip << " element " << i;
      w.copy_from(chip, keep.data(), d.context(chip).buffer_ptrs.at("keep"), 1024);
      EXPECT_EQ(keep, std::vector<int32_t>(256, 1234 + r)) << "the staging overwrote buffer 'keep' of chip " << chip;
    }
    // The window address right after 'keep' is the staging area's.
    std::vector<uint64_t> clash;
    for (int chip : d.chips()) clash.push_back(d.context(chip).local_window_base + 1024);
    EXPECT_THROW(o.reduce_scatter(d, in, clash, 8, DataType::INT32, ReduceOp::SUM), ConfigError);
    for (size_t r = 0; r < 2; ++r) {
      w.free(d.chips()[r], in[r]);
      w.free(d.chips()[r], out[r]);
    }
  });
  w.close();
}

// A platform failure on the members (a window no platform can give) fails
// the call naming a chip; nothing is left, the name stays free.
TEST_F(DomainsTest, FailedAllocateLeavesNothingAndTheNameFree) {
  Worker w(plain_config(3));
  w.init();
  std::string msg = chip_error_of([&] {
    w.run([&](Orchestrator& o) { o.allocate_domain("huge", {1, 2}, SIZE_MAX); });
  });
  EXPECT_NE(msg.find("chip 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("allocate_domain 'huge'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("too large"), std::string::npos) << msg;
  reduce_in_a_new_run(w, "huge", {1, 2}, 12);
  w.close();
}

// A raw task with a domain's comm_ctx gets that domain's CommContext (its
// dense rank and size); 0 gets the bring-up one.
TEST_F(DomainsTest, ATaskGetsTheCommContextItAsksFor) {
  ScratchDir scratch;
  Worker w(comm_config(4, scratch.file("rootinfo"), kWindow, kBuffers));
  w.init();
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("sub", {3, 1}, kWindow, kBuffers);
    for (int chip : {3, 1}) {
      Task t = task("test_whoami", {TensorArg{d.context(chip).buffer_ptrs.at("a"), DataType::UINT32, {2}}});
      t.comm_ctx = d.context(chip).device_ctx;
      o.submit(chip, t);
      Task b = task("test_whoami", {TensorArg{w.world().context(chip).buffer_ptrs.at("a"), DataType::UINT32, {2}}});
      o.submit(chip, b);  // comm_ctx 0: the bring-up communicator
    }
    o.wait();
    for (int chip : {3, 1}) {
      uint32_t got[2] = {99, 99};
      w.copy_from(chip, got, d.context(chip).buffer_ptrs.at("a"), sizeof got);
      EXPECT_EQ(got[0], static_cast<uint32_t>(d.rank_of(chip)));
      EXPECT_EQ(got[1], 2u);
      w.copy_from(chip, got, w.world().context(chip).buffer_ptrs.at("a"), sizeof got);
      EXPECT_EQ(got[0], static_cast<uint32_t>(chip));
      EXPECT_EQ(got[1], 4u);
    }
  });
  w.close();
}

// A task's comm_ctx must be a live domain's on that chip (or 0).
TEST_F(DomainsTest, ATaskOnAReleasedOrForeignContextFails) {
  Worker w(plain_config(2));
  w.init();
  uint64_t stale = 0;
  w.run([&](Orchestrator& o) {
    CommDomain d = o.allocate_domain("gone", {0, 1}, kWindow);
    stale = d.context(0).device_ctx;
  });
  Task t;
  t.kernel = "chipmesh_noop";
  t.comm_ctx = stale;
  std::string msg = chip_error_of([&] { w.run([&](Orchestrator& o) { o.submit(0, t); }); });
  EXPECT_NE(msg.find("no live domain"), std::string::npos) << msg;
  t.comm_ctx = 0;
  w.run([&](Orchestrator& o) { o.submit(0, t); });
  w.close();
}

// A member killed while the others wait for it in allocate: the call fails
// on every member, naming the chip, within the worker's bootstrap_timeout
// (the deadline of the domain's rendezvous), and nothing stays behind.
// Deterministic: the chip is stopped before the call, so it cannot join,
// and killed once the allocation is posted and the test's thread waits in
// it.
TEST_F(DomainsTest, MemberKilledDuringAllocateFailsTheCallNamingIt) {
  WorkerConfig cfg = plain_config(3);
  cfg.bootstrap_timeout = std::chrono::seconds(3);
  Worker w(std::move(cfg));
  w.init();
  const pid_t victim = w.chip_pid(2);
  const pid_t rank0 = w.chip_pid(0);
  ASSERT_EQ(kill(victim, SIGSTOP), 0);  // it cannot take its CommCreate
  std::atomic<bool> posting{false}, killed{false};
  const auto main_tid = static_cast<pid_t>(syscall(SYS_gettid));
  std::thread killer([&] {
    // The members meet in the Worker's memory (no shared-memory object to
    // wait for): kill once the allocation is posted and this thread sleeps
    // in its wait (killed before the post, the chip is refused as gone).
    for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
         !posting && std::chrono::steady_clock::now() < until;)
      std::this_thread::yield();
    EXPECT_TRUE(posting) << "the run never began";
    EXPECT_TRUE(wait_asleep_in_futex(main_tid, std::chrono::seconds(30)));
    kill(victim, SIGKILL);
    killed = true;
  });
  const auto start = std::chrono::steady_clock::now();
  std::string msg = chip_error_of([&] {
    w.run([&](Orchestrator& o) {
      posting = true;
      o.allocate_domain("doomed", {0, 1, 2}, kWindow, kBuffers);
    });
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  killer.join();
  EXPECT_TRUE(killed);
  EXPECT_NE(msg.find("chip 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("allocate_domain 'doomed'"), std::string::npos) << msg;
  EXPECT_LT(s, 20.0);
  EXPECT_EQ(shm_objects_of(rank0) + shm_objects_of(w.chip_pid(1)) + shm_objects_of(victim), 0u);
  // The survivors are not wedged.
  reduce_in_a_new_run(w, "doomed", {1, 0}, 30);
  w.close();
}

// A member that dies before it joins has no pid its peers could watch: they
// waited for it until bootstrap_timeout (120 s by default) before the call
// failed. The Worker abandons the rendezvous as soon as it sees the death,
// so the call fails at once, naming the chip, whether the dead member is
// the domain's rank 0 (the others wait for its rootinfo) or another rank
// (they wait for it to attach). Chip 2 is busy in a kernel when its
// CommCreate is posted, and killed while it is.
// Kills a chip once `kernels` test_block kernels have started (each writes
// a byte to fd(), a pipe made before init(), so the chips inherit it), or
// after 30 s without them, failing the test.
class KillWhenKernelsStart {
 public:
  KillWhenKernelsStart() { EXPECT_EQ(pipe(fds_), 0); }
  ~KillWhenKernelsStart() {
    if (killer_.joinable()) killer_.join();
    close(fds_[0]);
    close(fds_[1]);
  }
  uint64_t fd() const { return static_cast<uint64_t>(fds_[1]); }
  // `asleep`: a thread that must also be asleep in a wait first (0: none).
  void arm(pid_t victim, int kernels, pid_t asleep = 0) {
    killer_ = std::thread([this, victim, kernels, asleep] {
      int started = 0;
      for (char c; started < kernels; ++started) {
        struct pollfd p{fds_[0], POLLIN, 0};
        if (poll(&p, 1, 30000) != 1 || ::read(fds_[0], &c, 1) != 1) break;
      }
      EXPECT_EQ(started, kernels) << "kernels never started";
      if (asleep) {
        EXPECT_TRUE(wait_asleep_in_futex(asleep, std::chrono::seconds(30)));
      }
      ::kill(victim, SIGKILL);
    });
  }
  void join() { killer_.join(); }

 private:
  int fds_[2] = {-1, -1};
  std::thread killer_;
};

TEST_F(DomainsTest, AMemberKilledBeforeItJoinsFailsTheCallWithoutWaitingOutTheDeadline) {
  const auto deadline = std::chrono::seconds(300);
  for (const std::vector<int>& members : {std::vector<int>{2, 0, 1}, std::vector<int>{0, 1, 2}}) {
    SCOPED_TRACE("members " + std::to_string(members[0]) + ", " + std::to_string(members[1]) + ", " +
                 std::to_string(members[2]));
    ScratchDir scratch;
    WorkerConfig cfg = comm_config(3, scratch.file("rootinfo"), kWindow, kBuffers);
    cfg.bootstrap_timeout = deadline;
    Worker w(std::move(cfg));
    KillWhenKernelsStart killer;
    w.init();
    // Killed once allocate_domain waits: its CommCreate is posted (before,
    // the chip would be refused as gone).
    killer.arm(w.chip_pid(2), 1, static_cast<pid_t>(syscall(SYS_gettid)));
    const auto start = std::chrono::steady_clock::now();
    const std::string msg = chip_error_of([&] {
      w.run([&](Orchestrator& o) {
        o.submit(2, task("test_block", {}, {killer.fd()}));
        o.allocate_domain("late", members, kWindow, kBuffers);
      });
    });
    const auto took = std::chrono::steady_clock::now() - start;
    killer.join();
    EXPECT_NE(msg.find("chip 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("died during Orchestrator::allocate_domain 'late'"), std::string::npos) << msg;
    // Not the deadline's end: that would take 300 s.
    EXPECT_LT(took, deadline / 5);
    // The survivors are not wedged, and the name is free.
    reduce_in_a_new_run(w, "late", {1, 0}, 31);
    w.close();
  }
}

// A member that dies in a kernel of a domain that is then released: the
// other members' kernels wait on it, and their CommDestroy is queued
// behind those kernels. release_domain (as allocate_domain, and as wait()
// always did) looks at every chip of the run while it waits, so the death
// aborts the kernels and the release goes through; before, it waited for
// the kernels' own deadline.
TEST_F(DomainsTest, ReleasingADomainWhoseMemberDiedInAKernelAbortsThePeersKernels) {
  Worker w(plain_config(3));
  KillWhenKernelsStart killer;
  w.init();
  killer.arm(w.chip_pid(2), 3);
  const std::string msg = chip_error_of([&] {
    w.run([&](Orchestrator& o) {
      CommDomain d = o.allocate_domain("blocked", {0, 1, 2}, kWindow, kBuffers);
      for (int chip : {0, 1, 2}) {
        Task t = task("test_block", {}, {killer.fd()});
        t.comm_ctx = d.context(chip).device_ctx;
        o.submit(chip, t);
      }
      o.release_domain(d);
    });
  });
  killer.join();
  EXPECT_NE(msg.find("chip 2"), std::string::npos) << msg;
  reduce_in_a_new_run(w, "blocked", {1, 0}, 32);
  w.close();
}

}  // namespace
}  // namespace chipmesh::testing

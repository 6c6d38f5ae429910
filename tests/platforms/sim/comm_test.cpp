// What only the sim communicator promises, through its comm.h C API (linked
// directly): windows are whole pages, zero, mapped without touching a page
// (no N x N page-table work at bring-up), with the scratch right after each
// window; a job too big for /dev/shm fails at comm_alloc_windows; its names in /dev/shm are short; CHIPMESH_JOB_TOKEN is
// the default job token. What every platform promises is in the
// conformance suite (tests/platforms/conformance, instantiated for sim in
// sim_conformance.cpp).
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/transport_abi.h"
#include "comm_support.h"
#include "common/env.h"
#include "knobs/knobs.h"
#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

// Resident size of the mapping that starts at addr, from /proc/self/smaps:
// the pages of it this process has touched (page tables built).
// The sim plugin's transport table (the test links the plugin).
extern "C" const chipmesh_transport_v1_t* chipmesh_transport_entry(void);

// Bytes of [addr, addr + bytes) this process has page-table entries for
// (/proc/self/pagemap: bit 63 present, bit 62 swapped), whatever mapping
// they lie in.
size_t mapped_bytes(uint64_t addr, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::ifstream pagemap("/proc/self/pagemap", std::ios::binary);
  size_t n = 0;
  for (uint64_t p = addr / page; p < (addr + bytes + page - 1) / page; ++p) {
    uint64_t entry = 0;
    pagemap.seekg(static_cast<std::streamoff>(p * sizeof(entry)));
    pagemap.read(reinterpret_cast<char*>(&entry), sizeof(entry));
    if (pagemap && (entry >> 62) != 0) n += page;
  }
  return n;
}

class SimCommRanks : public ::testing::TestWithParam<int> {
 protected:
  ScratchDir scratch;
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo file left behind"; }
};

TEST_P(SimCommRanks, WindowsArePagesOfZerosMappedLazilyWithTheScratchRightAfter) {
  const int n = GetParam();
  const std::string path = scratch.file("rootinfo");
  const size_t requested = (size_t{4} << 20) + 10000;  // not a page multiple: must round up
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    const CommContext* ctx = must_alloc(h, requested);
    uint64_t base = 0;
    size_t size = 0;
    CM_REQUIRE(comm_get_local_window_base(h, &base) == 0) << comm_last_error();
    CM_REQUIRE(comm_get_window_size(h, &size) == 0) << comm_last_error();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    CM_REQUIRE(size >= requested && size % page == 0 && size < requested + page) << "size " << size;
    CM_REQUIRE(ctx->workSpace == base + size && ctx->workSpaceSize > 0) << "scratch follows the window";
    const auto* header = reinterpret_cast<const chipmesh_workspace_header*>(ctx->workSpace);
    for (int r = 0; r < n; ++r) {
      CM_REQUIRE(header->peerWorkSpace[r] == ctx->windowsIn[r] + size) << "rank " << r << "'s scratch";
      // Bring-up built no page tables for the windows (the own scratch
      // header page is the one this rank wrote).
      const size_t mapped = mapped_bytes(ctx->windowsIn[r], size + ctx->workSpaceSize);
      CM_REQUIRE(mapped <= (r == rank ? page : 0))
          << "window and scratch of rank " << r << " have " << mapped << " bytes mapped after bring-up";
    }
    must_barrier(h);
    // Zeros everywhere until written; then every rank sees every write.
    for (int r = 0; r < n; ++r) {
      const auto* w = reinterpret_cast<const unsigned char*>(ctx->windowsIn[r]);
      CM_REQUIRE(w[0] == 0 && w[size / 2] == 0 && w[size - 1] == 0) << "rank " << r << "'s window is not zero";
    }
    must_barrier(h);
    reinterpret_cast<unsigned char*>(base)[size - 1] = static_cast<unsigned char>(0x80 + rank);
    must_barrier(h);
    for (int r = 0; r < n; ++r)
      CM_REQUIRE(reinterpret_cast<const unsigned char*>(ctx->windowsIn[r])[size - 1] == 0x80 + r)
          << "rank " << r << "'s write is not visible";
    must_barrier(h);
    must_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// Without adopted windows every rank's window and scratch lie in one object
// that each rank maps once: rank r's at r * (window + scratch), in one
// mapping here too, and window_file lends that object at that offset
// (window_fd, whose offset is always 0, only on rank 0).
TEST_P(SimCommRanks, WithoutAdoptedWindowsEveryWindowLiesInOneObjectMappedOnce) {
  const int n = GetParam();
  const std::string path = scratch.file("rootinfo");
  const chipmesh_transport_v1_t* t = chipmesh_transport_entry();
  ASSERT_NE(t->window_file, nullptr);
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    const CommContext* ctx = must_alloc(h, 3 * 4096 + 1);
    size_t size = 0;
    CM_REQUIRE(comm_get_window_size(h, &size) == 0) << comm_last_error();
    const uint64_t segment = size + ctx->workSpaceSize;
    for (int r = 0; r < n; ++r)
      CM_REQUIRE(ctx->windowsIn[r] == ctx->windowsIn[0] + static_cast<uint64_t>(r) * segment) << "rank " << r;
    std::ifstream maps("/proc/self/maps");
    size_t mappings = 0;
    for (std::string line; std::getline(maps, line);) {
      unsigned long long lo = 0, hi = 0;
      if (std::sscanf(line.c_str(), "%llx-%llx", &lo, &hi) == 2 && lo <= ctx->windowsIn[0] && ctx->windowsIn[0] < hi) {
        ++mappings;
        CM_REQUIRE(hi - ctx->windowsIn[0] >= static_cast<uint64_t>(n) * segment) << line;
      }
    }
    CM_REQUIRE(mappings == 1) << "the windows are not in one mapping";
    int fd = -2;
    uint64_t offset = 1;
    CM_REQUIRE(t->window_file(h, &fd, &offset) == CHIPMESH_SUCCESS) << t->last_error();
    CM_REQUIRE(fd >= 0 && offset == static_cast<uint64_t>(rank) * segment) << "fd " << fd << " offset " << offset;
    int plain = -2;
    CM_REQUIRE(t->window_fd(h, &plain) == CHIPMESH_SUCCESS) << t->last_error();
    CM_REQUIRE(plain == (rank == 0 ? fd : -1)) << "window_fd " << plain << " on rank " << rank;
    must_barrier(h);
    must_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// Rank 0 makes the one object before it sees the other ranks' requests; a
// peer that adopted a file of its own turns the job to one object per
// window, and rank 0's goes unused (nothing of it stays in /dev/shm, the
// leak listener checks). Every rank still reads every window: the adopted
// file's bytes where it held them, zeros elsewhere, and what each rank
// wrote.
TEST_P(SimCommRanks, APeerWithAnAdoptedFileMakesEveryWindowAnObjectOfItsOwn) {
  const int n = GetParam();
  const std::string path = scratch.file("rootinfo");
  const chipmesh_transport_v1_t* t = chipmesh_transport_entry();
  ASSERT_NE(t->adopt_window, nullptr);
  constexpr size_t kWindow = 2 * 4096;
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    if (rank == 1) {
      const int file = memfd_create("chipmesh:test-window", MFD_CLOEXEC);
      CM_REQUIRE(file >= 0 && ftruncate(file, kWindow) == 0 && pwrite(file, "staged", 6, 100) == 6);
      CM_REQUIRE(t->adopt_window(h, file) == CHIPMESH_SUCCESS) << t->last_error();
      ::close(file);  // the communicator holds its own descriptor
    }
    const CommContext* ctx = must_alloc(h, kWindow);
    // In one object rank r's window would lie at r * segment of it.
    int fd = -2;
    uint64_t offset = 1;
    CM_REQUIRE(t->window_file(h, &fd, &offset) == CHIPMESH_SUCCESS) << t->last_error();
    CM_REQUIRE(fd >= 0 && offset == 0) << "rank " << rank << ": fd " << fd << " offset " << offset;
    reinterpret_cast<char*>(ctx->windowsIn[rank])[kWindow - 1] = static_cast<char>('a' + rank);
    must_barrier(h);
    for (int r = 0; r < n; ++r) {
      const char* w = reinterpret_cast<const char*>(ctx->windowsIn[r]);
      CM_REQUIRE(w[kWindow - 1] == static_cast<char>('a' + r)) << "rank " << r << "'s last byte";
      CM_REQUIRE(std::memcmp(w + 100, r == 1 ? "staged" : "\0\0\0\0\0\0", 6) == 0) << "rank " << r << " at 100";
    }
    must_barrier(h);
    must_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// Ranks forked from one parent (a Worker's chips) inherit every chip's
// window file at the same descriptor number, and map a peer's adopted
// window through their own descriptor of it instead of opening
// /proc/<pid>/fd/<n> (about 4 us each, N x N at bring-up). The number alone
// proves nothing: a rank that holds it for another file, even one of the
// same size, must still map the owner's window (the file's device and inode
// decide).
void adopted_window_file_made_before_the_fork(int n, bool impostor) {
  ScratchDir scratch;
  const std::string path = scratch.file("rootinfo");
  const chipmesh_transport_v1_t* t = chipmesh_transport_entry();
  constexpr size_t kWindow = 2 * 4096;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t segment = kWindow + (env::sim_workspace_bytes() + page - 1) / page * page;
  const int shared = memfd_create("chipmesh:test-window", MFD_CLOEXEC);
  ASSERT_GE(shared, 0);
  ASSERT_EQ(ftruncate(shared, kWindow), 0);
  ASSERT_EQ(pwrite(shared, "staged", 6, 100), 6);
  auto outcomes = fork_ranks(n, [&](int rank) {
    if (impostor && rank != 1) {
      // Another file at the same number, of the size rank 1's will have.
      const int other = memfd_create("chipmesh:test-impostor", MFD_CLOEXEC);
      CM_REQUIRE(other >= 0 && ftruncate(other, static_cast<off_t>(segment)) == 0 &&
                 pwrite(other, "wrong!", 6, 100) == 6 && dup3(other, shared, O_CLOEXEC) == shared);
      ::close(other);
    }
    CommHandle h = must_init(rank, n, path);
    if (rank == 1) {
      CM_REQUIRE(t->adopt_window(h, shared) == CHIPMESH_SUCCESS) << t->last_error();
    }
    const CommContext* ctx = must_alloc(h, kWindow);
    reinterpret_cast<char*>(ctx->windowsIn[rank])[kWindow - 1] = static_cast<char>('a' + rank);
    must_barrier(h);
    for (int r = 0; r < n; ++r) {
      const char* w = reinterpret_cast<const char*>(ctx->windowsIn[r]);
      CM_REQUIRE(w[kWindow - 1] == static_cast<char>('a' + r)) << "rank " << r << "'s last byte";
      CM_REQUIRE(std::memcmp(w + 100, r == 1 ? "staged" : "\0\0\0\0\0\0", 6) == 0)
          << "rank " << r << "'s window at 100 reads '" << std::string(w + 100, 6) << "'";
    }
    must_barrier(h);
    must_destroy(h);
  });
  ::close(shared);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_P(SimCommRanks, PeersMapAnAdoptedWindowFileTheyInheritedThroughTheirOwnDescriptor) {
  adopted_window_file_made_before_the_fork(GetParam(), false);
}

TEST_P(SimCommRanks, APeerHoldingTheAdoptedDescriptorNumberForAnotherFileMapsTheOwnersWindow) {
  adopted_window_file_made_before_the_fork(GetParam(), true);
}

// One file of every rank's window (the Worker's, made before the fork),
// adopted through adopt_window_at. `place(r)` is rank r's offset in units of
// the stride; the file holds `strides` strides. Each rank finds its staged
// bytes and every peer's, and what each wrote. Returns the outcomes.
struct OneFile {
  int n;
  size_t stride;
};
template <typename Place, typename Check>
std::vector<RankOutcome> adopt_one_file(int n, size_t strides, Place place, Check check) {
  ScratchDir scratch;
  const std::string path = scratch.file("rootinfo");
  const chipmesh_transport_v1_t* t = chipmesh_transport_entry();
  constexpr size_t kWindow = 2 * 4096;
  uint64_t stride = 0;
  CM_REQUIRE(t->adopted_window_stride(kWindow, &stride) == CHIPMESH_SUCCESS) << t->last_error();
  const int file = memfd_create("chipmesh:test-windows", MFD_CLOEXEC);
  CM_REQUIRE(file >= 0 && ftruncate(file, static_cast<off_t>(strides * stride)) == 0);
  for (int r = 0; r < n; ++r) {
    const std::string staged = "staged" + std::to_string(r);
    const uint64_t at = static_cast<uint64_t>(place(r)) * stride + 100;
    if (at + staged.size() <= strides * stride) {
      CM_REQUIRE(pwrite(file, staged.data(), staged.size(), static_cast<off_t>(at)) ==
                 static_cast<ssize_t>(staged.size()));
    }
  }
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    CM_REQUIRE(t->adopt_window_at(h, file, static_cast<uint64_t>(place(rank)) * stride) == CHIPMESH_SUCCESS)
        << t->last_error();
    check(h, OneFile{n, stride}, rank);
  });
  ::close(file);
  return outcomes;
}

// Every rank's window and what each placed and wrote, read by every rank.
void read_every_window(CommHandle h, const CommContext* ctx, int n, int rank) {
  constexpr size_t kWindow = 2 * 4096;
  reinterpret_cast<char*>(ctx->windowsIn[rank])[kWindow - 1] = static_cast<char>('a' + rank);
  must_barrier(h);
  for (int r = 0; r < n; ++r) {
    const char* w = reinterpret_cast<const char*>(ctx->windowsIn[r]);
    const std::string staged = "staged" + std::to_string(r);
    CM_REQUIRE(std::memcmp(w + 100, staged.data(), staged.size()) == 0)
        << "rank " << r << "'s window at 100 reads '" << std::string(w + 100, staged.size()) << "'";
    CM_REQUIRE(w[kWindow - 1] == static_cast<char>('a' + r)) << "rank " << r << "'s last byte";
  }
  must_barrier(h);
}

// The transport lends this rank's window as the file at `offset`
// (window_file), and as a plain window fd only where that offset is 0.
void lends_file_at(CommHandle h, int rank, uint64_t expected) {
  const chipmesh_transport_v1_t* t = chipmesh_transport_entry();
  int fd = -2, plain = -2;
  uint64_t offset = 1;
  CM_REQUIRE(t->window_file(h, &fd, &offset) == CHIPMESH_SUCCESS) << t->last_error();
  CM_REQUIRE(fd >= 0 && offset == expected) << "rank " << rank << ": fd " << fd << " offset " << offset;
  CM_REQUIRE(t->window_fd(h, &plain) == CHIPMESH_SUCCESS) << t->last_error();
  CM_REQUIRE(plain == (expected == 0 ? fd : -1)) << "window_fd " << plain << " on rank " << rank;
}

// Every rank adopts the one file at rank * stride: each maps it once (the
// windows lie one stride apart in one mapping) and lends it at its offset.
TEST_P(SimCommRanks, RanksAdoptingOneFileAtTheirStrideMapItOnce) {
  const int n = GetParam();
  auto outcomes = adopt_one_file(n, static_cast<size_t>(n), [](int r) { return r; }, [](CommHandle h, OneFile f, int rank) {
    const CommContext* ctx = must_alloc(h, 2 * 4096);
    for (int r = 0; r < f.n; ++r)
      CM_REQUIRE(ctx->windowsIn[r] == ctx->windowsIn[0] + r * f.stride) << "rank " << r << "'s window is not in one mapping";
    lends_file_at(h, rank, rank * f.stride);
    read_every_window(h, ctx, f.n, rank);
    must_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// The same file at other offsets (the ranks in reverse): each rank maps each
// window on its own, at its offset, and the contents are the same.
TEST_P(SimCommRanks, RanksAdoptingOneFileAtOtherOffsetsMapEachWindowAtItsOwn) {
  const int n = GetParam();
  auto outcomes = adopt_one_file(n, static_cast<size_t>(n), [n](int r) { return n - 1 - r; },
                                 [](CommHandle h, OneFile f, int rank) {
    const CommContext* ctx = must_alloc(h, 2 * 4096);
    lends_file_at(h, rank, (f.n - 1 - rank) * f.stride);
    read_every_window(h, ctx, f.n, rank);
    must_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// A file too short for the last rank's window: nobody grows a file ranks
// share, so alloc_windows fails on every rank, the last naming the file and
// the sizes.
TEST_P(SimCommRanks, AnAdoptedFileTooShortForARanksWindowFailsEveryRank) {
  const int n = GetParam();
  auto outcomes = adopt_one_file(n, static_cast<size_t>(n) - 1, [](int r) { return r; }, [](CommHandle h, OneFile f, int rank) {
    uint64_t ctx = 0;
    CM_REQUIRE(comm_alloc_windows(h, 2 * 4096, &ctx) != CHIPMESH_SUCCESS) << "rank " << rank << " allocated";
    const std::string what = comm_last_error();
    if (rank == f.n - 1) {
      CM_REQUIRE(what.find("adopted at offset " + std::to_string((f.n - 1) * f.stride)) != std::string::npos &&
                 what.find("fewer than the offset plus the window") != std::string::npos)
          << what;
    }
    comm_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST(SimComm, AdoptingAWindowAtAnOffsetThatIsNotAPageMultipleIsAConfigError) {
  ScratchDir scratch;
  const chipmesh_transport_v1_t* t = chipmesh_transport_entry();
  const int file = memfd_create("chipmesh:test-window", MFD_CLOEXEC);
  ASSERT_GE(file, 0);
  CommHandle h = comm_init(0, 1, nullptr, scratch.file("rootinfo").c_str());
  ASSERT_NE(h, nullptr) << comm_last_error();
  EXPECT_EQ(t->adopt_window_at(h, file, 100), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(t->last_error()).find("offset 100 is not a multiple of the page size"), std::string::npos)
      << t->last_error();
  EXPECT_EQ(comm_destroy(h), CHIPMESH_SUCCESS);
  ::close(file);
}

TEST(SimComm, WindowsBiggerThanDevShmFailAtAllocationNamingTheSizes) {
  struct statvfs fs{};
  ASSERT_EQ(statvfs("/dev/shm", &fs), 0);
  const unsigned long long free_bytes = static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize;
  // Two ranks whose windows each take 60 % of what is free: each would fit
  // alone, the pair does not.
  const size_t window = static_cast<size_t>(free_bytes / 10 * 6);
  ScratchDir scratch;
  const std::string path = scratch.file("rootinfo");
  auto outcomes = fork_ranks(2, [&](int rank) {
    CommHandle h = must_init(rank, 2, path);
    uint64_t ctx = 0;
    CM_REQUIRE(comm_alloc_windows(h, window, &ctx) == CHIPMESH_ERR_DEVICE) << "allocated " << window << " bytes";
    const std::string what = comm_last_error();
    CM_REQUIRE(what.find("/dev/shm has") != std::string::npos && what.find("windows of this communicator need") !=
                                                                     std::string::npos)
        << what;
    comm_destroy(h);
  });
  EXPECT_TRUE(all_ok(outcomes));
  EXPECT_TRUE(scratch.entries().empty());
}

INSTANTIATE_TEST_SUITE_P(Ranks, SimCommRanks, ::testing::Values(2, 4, 8),
                         [](const auto& info) { return std::to_string(info.param) + "ranks"; });

TEST(SimComm, SixtyFourRanksUseShortChipmeshNames) {
  ScratchDir scratch;
  const std::string path = scratch.file("rootinfo");
  // Record every object created in /dev/shm during the bring-up.
  if (const std::string why = no_inotify_reason(); !why.empty()) GTEST_SKIP() << why;
  int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  ASSERT_GE(in, 0);
  ASSERT_GE(inotify_add_watch(in, "/dev/shm", IN_CREATE), 0);
  const int n = CHIPMESH_MAX_RANKS;
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle h = must_init(rank, n, path);
    must_alloc(h, 4096);
    must_barrier(h);
    must_destroy(h);
  }, std::chrono::seconds(120));
  EXPECT_TRUE(all_ok(outcomes));
  std::set<std::string> created;
  alignas(inotify_event) char buf[65536];
  for (ssize_t len; (len = read(in, buf, sizeof(buf))) > 0;) {
    for (char* p = buf; p < buf + len;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      if (ev->len) created.insert(std::string("/") + ev->name);
      p += sizeof(inotify_event) + ev->len;
    }
  }
  close(in);
  // Only the names our ranks made: /dev/shm is shared with whatever else
  // runs on this machine. Sim names carry their creator's pid in hex.
  std::set<unsigned> ranks;
  for (const auto& o : outcomes) ranks.insert(static_cast<unsigned>(o.pid));
  std::set<std::string> ours;
  for (const auto& name : created) {
    unsigned pid = 0;
    if (std::sscanf(name.c_str(), "/chipmesh_%8x_", &pid) == 1 && ranks.count(pid)) ours.insert(name);
  }
  // One control segment and one object for every rank's window (2 names,
  // not n + 1: each rank opens and maps one object, not n).
  EXPECT_EQ(ours.size(), 2u);
  for (const auto& name : ours) EXPECT_LE(name.size(), 31u) << name;
  EXPECT_TRUE(scratch.entries().empty());
}

TEST(SimComm, SingleRankWindowIsOnePage) {
  ScratchDir scratch;
  CommHandle h = comm_init(0, 1, nullptr, scratch.file("rootinfo").c_str());
  ASSERT_NE(h, nullptr) << comm_last_error();
  uint64_t ctx = 0;
  ASSERT_EQ(comm_alloc_windows(h, 1, &ctx), 0) << comm_last_error();
  size_t size = 0;
  ASSERT_EQ(comm_get_window_size(h, &size), 0);
  EXPECT_EQ(size, static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(comm_destroy(h), 0) << comm_last_error();
  EXPECT_TRUE(scratch.entries().empty());
}

// Standalone users of comm.h (no options): CHIPMESH_JOB_TOKEN is the token.
TEST(SimComm, TheEnvironmentsJobTokenIsTheDefault) {
  ScratchDir scratch;
  const std::string same = scratch.file("same"), other = scratch.file("other");
  auto joined = fork_ranks(2, [&](int rank) {
    setenv("CHIPMESH_JOB_TOKEN", "env-job", 1);  // this child only
    knobs::reload();                              // knobs are read once: see the new value
    CommHandle h = must_init(rank, 2, same);
    must_alloc(h, 4096);
    must_destroy(h);
  });
  EXPECT_TRUE(all_ok(joined));
  auto apart = fork_ranks(2, [&](int rank) {
    setenv("CHIPMESH_JOB_TOKEN", rank == 0 ? "env-a" : "env-b", 1);
    // Rank 1 must find env-a's rootinfo (not an empty path) to name the other
    // job, so it joins only once the file exists; rank 0 outlives its wait.
    setenv("CHIPMESH_COMM_TIMEOUT_S", rank == 0 ? "3" : "30", 1);
    knobs::reload();
    if (rank == 1) {
      CM_REQUIRE(wait_file(other, std::chrono::seconds(30))) << "rank 0 never published " << other;
    }
    CommHandle h = comm_init(rank, 2, nullptr, other.c_str());
    CM_REQUIRE(h == nullptr) << "ranks of two jobs joined";
    // rank 0 waits alone until its timeout; rank 1 is refused at once
    CM_REQUIRE(comm_last_error_code() == (rank == 0 ? CHIPMESH_ERR_TIMEOUT : CHIPMESH_ERR_COMM)) << comm_last_error();
    rank_note(comm_last_error());
  });
  ASSERT_TRUE(all_ok(apart));
  EXPECT_NE(apart[1].message.find("in use by job 'env-a'"), std::string::npos) << apart[1].describe();
  EXPECT_TRUE(scratch.entries().empty());
}

}  // namespace
}  // namespace chipmesh::testing

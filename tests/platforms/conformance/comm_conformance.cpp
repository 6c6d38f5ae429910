// What every platform's communicator must do, on 1..64 forked ranks: the
// context's fields, windows every rank reaches (zeroed before anyone could
// write), the workspace header, reusable barriers, argument checks at the C
// boundary, disagreements and dead or missing peers failing every rank with
// the values involved, the job token, and nothing left behind.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <new>
#include <thread>
#include <functional>
#include <string>
#include <vector>

#include "conformance.h"
#include "knobs/knobs.h"

namespace chipmesh::testing {
namespace {

using namespace std::chrono_literals;

// Runs `body`, which must throw E; returns its message (for rank_note).
template <typename E>
std::string expect_throw(const std::function<void()>& body, const char* what) {
  try {
    body();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    CM_REQUIRE(false) << what << " threw the wrong kind: " << e.what();
  }
  CM_REQUIRE(false) << what << " succeeded but should have failed";
  return {};
}

// ---------------------------------------------------------------------------
// Working communicators
// ---------------------------------------------------------------------------

TEST_P(CommConformance, ContextWindowsAndWorkspaceHeaderOnTwoFourAndEightRanks) {
  for (int n : {2, 4, 8}) {
    SCOPED_TRACE(std::to_string(n) + " ranks");
    const std::string rootinfo = scratch.file("rootinfo" + std::to_string(n));
    const size_t requested = 10000;  // not a power of two: the platform may round it up
    auto outcomes = fork_ranks(n, [&](int rank) {
      Rank R(platform(), rank);
      R.join(n, rootinfo).alloc(requested);
      const uint64_t base = R.w.comm_get_local_window_base(R.comm);
      const size_t size = R.w.comm_get_window_size(R.comm);
      const CommContext ctx = R.context();
      CM_REQUIRE(ctx.rankId == static_cast<uint32_t>(rank));
      CM_REQUIRE(ctx.rankNum == static_cast<uint32_t>(n));
      CM_REQUIRE(size >= requested) << "size " << size;
      CM_REQUIRE(ctx.winSize == size);
      CM_REQUIRE(ctx.windowsIn[rank] == base && base != 0);
      for (int r = 0; r < n; ++r) {
        CM_REQUIRE(ctx.windowsIn[r] != 0) << "peer slot " << r;
        CM_REQUIRE(ctx.windowsOut[r] == ctx.windowsIn[r]) << "peer slot " << r;
      }
      for (int r = n; r < CHIPMESH_MAX_RANKS; ++r) CM_REQUIRE(ctx.windowsIn[r] == 0) << "slot " << r;

      // The workspace header says where this process reaches every rank's scratch.
      if (ctx.workSpace != 0) {
        CM_REQUIRE(ctx.workSpaceSize >= CHIPMESH_WORKSPACE_HEADER_BYTES) << ctx.workSpaceSize;
        chipmesh_workspace_header header;
        R.w.copy_from(&header, ctx.workSpace, sizeof(header));
        CM_REQUIRE(header.peerWorkSpace[rank] == ctx.workSpace);
        for (int r = 0; r < n; ++r) CM_REQUIRE(header.peerWorkSpace[r] != 0) << "rank " << r;
        for (int r = n; r < CHIPMESH_MAX_RANKS; ++r) CM_REQUIRE(header.peerWorkSpace[r] == 0) << "rank " << r;
      }

      // Zeroed before anyone could write; then every rank sees every write.
      std::vector<uint32_t> words(size / 4);
      R.w.copy_from(words.data(), base, words.size() * 4);
      for (size_t i = 0; i < words.size(); ++i) CM_REQUIRE(words[i] == 0) << "word " << i;
      for (size_t i = 0; i < words.size(); ++i) words[i] = static_cast<uint32_t>(rank * 1000003u + i);
      R.w.copy_to(base, words.data(), words.size() * 4);
      R.w.comm_barrier(R.comm);
      for (int r = 0; r < n; ++r) {
        R.w.copy_from(words.data(), ctx.windowsIn[r], words.size() * 4);
        for (size_t i = 0; i < words.size(); ++i)
          CM_REQUIRE(words[i] == static_cast<uint32_t>(r * 1000003u + i)) << "rank " << r << " word " << i;
      }
      R.w.comm_barrier(R.comm);  // nobody unmaps while a peer still reads
      R.destroy();
    });
    EXPECT_TRUE(all_ok(outcomes));
  }
}

TEST_P(CommConformance, ThousandsOfBarriersNeverLoseOrDoubleAGeneration) {
  const int n = 4;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(platform(), rank);
    R.join(n, path).alloc(4096);
    const CommContext ctx = R.context();
    // Two barriers per round: a lost generation lets a rank read a stale
    // round number, a doubled one lets it read the next.
    for (uint64_t round = 1; round <= 2000; ++round) {
      R.w.copy_to(ctx.windowsIn[rank], &round, sizeof(round));
      R.w.comm_barrier(R.comm);
      for (int r = 0; r < n; ++r) {
        uint64_t seen = 0;
        R.w.copy_from(&seen, ctx.windowsIn[r], sizeof(seen));
        CM_REQUIRE(seen == round) << "round " << round << " saw " << seen << " from rank " << r;
      }
      R.w.comm_barrier(R.comm);
    }
    R.destroy();
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_P(CommConformance, SixtyFourRanks) {
  const int n = CHIPMESH_MAX_RANKS;
  auto outcomes = fork_ranks(n, [&](int rank) {
    Rank R(platform(), rank);
    R.join(n, path).alloc(4096);
    R.w.comm_barrier(R.comm);
    R.destroy();
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_P(CommConformance, SingleRankCommunicator) {
  Rank R(platform(), 0);
  R.join(1, path).alloc(1);
  EXPECT_GE(R.w.comm_get_window_size(R.comm), 1u);
  EXPECT_NO_THROW(R.w.comm_barrier(R.comm));
  EXPECT_NO_THROW(R.destroy());
}

// The optional window_fd: an fd another process of the user opens as
// /proc/<pid>/fd/<fd> and maps, seeing and changing the window itself (the
// Worker copies to and from windows that way). Rank 1 writes a pattern into
// rank 0's window through rank 0's fd; rank 0 reads it in its window.
TEST_P(CommConformance, ALentWindowFdMapsTheWindowInAnotherProcess) {
  {
    Rank probe(platform(), 0);
    if (!probe.w.transport().window_fd) GTEST_SKIP() << "the platform lends no window fd";
  }
  struct Shared {
    std::atomic<int32_t> pid{0}, fd{-1}, written{0};
  };
  auto* sh = static_cast<Shared*>(
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(sh, MAP_FAILED);
  new (sh) Shared;
  auto outcomes = fork_ranks(2, [&](int rank) {
    Rank R(platform(), rank);
    R.join(2, path).alloc(3 * 4096);
    const size_t size = R.w.comm_get_window_size(R.comm);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    if (rank == 0) {
      int fd = -1;
      CM_REQUIRE(R.w.transport().window_fd(reinterpret_cast<CommHandle>(R.comm), &fd) == CHIPMESH_SUCCESS)
          << R.w.transport().last_error();
      CM_REQUIRE(fd >= -1) << "fd " << fd;
      sh->fd.store(fd);
      sh->pid.store(getpid());
      while (sh->written.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      CM_REQUIRE(sh->written.load() != 0) << "rank 1 never wrote";
      if (fd == -1) return R.destroy();  // this window has none to lend: nothing to see
      const auto* win = reinterpret_cast<const unsigned char*>(R.w.comm_get_local_window_base(R.comm));
      for (size_t i = 0; i < size; i += 997) CM_REQUIRE(win[i] == static_cast<unsigned char>(i * 7)) << i;
    } else {
      while (sh->pid.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      if (sh->fd.load() == -1) {
        sh->written.store(2);
        return R.destroy();
      }
      const std::string at = "/proc/" + std::to_string(sh->pid.load()) + "/fd/" + std::to_string(sh->fd.load());
      const int fd = open(at.c_str(), O_RDWR | O_CLOEXEC);
      CM_REQUIRE(fd >= 0) << at << ": " << std::strerror(errno);
      void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      close(fd);
      CM_REQUIRE(p != MAP_FAILED) << std::strerror(errno);
      auto* win = static_cast<unsigned char*>(p);
      for (size_t i = 0; i < size; i += 997) win[i] = static_cast<unsigned char>(i * 7);
      munmap(p, size);
      sh->written.store(1);
    }
    R.w.comm_barrier(R.comm);  // rank 0 has read before anyone destroys
    R.destroy();
  }, 90s);
  munmap(sh, sizeof(Shared));
  EXPECT_TRUE(all_ok(outcomes));
}

// window_file: the last rank of three lends (fd, offset); another process
// maps that file at that offset and its writes are the lender's window
// (sim keeps every window in one object, so the offset is not 0 there).
TEST_P(CommConformance, ALentWindowFileMapsTheWindowAtItsOffsetInAnotherProcess) {
  {
    Rank probe(platform(), 0);
    if (!probe.w.transport().window_file) GTEST_SKIP() << "the platform lends no window file";
  }
  struct Shared {
    std::atomic<int32_t> pid{0}, fd{-1}, written{0};
    std::atomic<uint64_t> offset{0};
  };
  auto* sh = static_cast<Shared*>(
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(sh, MAP_FAILED);
  new (sh) Shared;
  constexpr int kLender = 2;
  auto outcomes = fork_ranks(3, [&](int rank) {
    Rank R(platform(), rank);
    R.join(3, path).alloc(3 * 4096);
    const size_t size = R.w.comm_get_window_size(R.comm);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    if (rank == kLender) {
      int fd = -1;
      uint64_t offset = 1;
      CM_REQUIRE(R.w.transport().window_file(reinterpret_cast<CommHandle>(R.comm), &fd, &offset) ==
                 CHIPMESH_SUCCESS) << R.w.transport().last_error();
      CM_REQUIRE(fd >= -1 && offset % static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) == 0)
          << "fd " << fd << " offset " << offset;
      sh->offset.store(offset);
      sh->fd.store(fd);
      sh->pid.store(getpid());
      while (sh->written.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      CM_REQUIRE(sh->written.load() != 0) << "rank 0 never wrote";
      if (fd != -1) {
        const auto* win = reinterpret_cast<const unsigned char*>(R.w.comm_get_local_window_base(R.comm));
        for (size_t i = 0; i < size; i += 997) CM_REQUIRE(win[i] == static_cast<unsigned char>(i * 5 + 1)) << i;
      }
    } else if (rank == 0) {
      while (sh->pid.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      if (sh->fd.load() == -1) {
        sh->written.store(2);
      } else {
        const std::string at = "/proc/" + std::to_string(sh->pid.load()) + "/fd/" + std::to_string(sh->fd.load());
        const int fd = open(at.c_str(), O_RDWR | O_CLOEXEC);
        CM_REQUIRE(fd >= 0) << at << ": " << std::strerror(errno);
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(sh->offset.load()));
        close(fd);
        CM_REQUIRE(p != MAP_FAILED) << std::strerror(errno);
        auto* win = static_cast<unsigned char*>(p);
        for (size_t i = 0; i < size; i += 997) win[i] = static_cast<unsigned char>(i * 5 + 1);
        munmap(p, size);
        sh->written.store(1);
      }
    }
    R.w.comm_barrier(R.comm);  // the lender has read before anyone destroys
    R.destroy();
  }, 90s);
  munmap(sh, sizeof(Shared));
  EXPECT_TRUE(all_ok(outcomes));
}

// ---------------------------------------------------------------------------
// The C boundary: arguments, null handles, order of calls
// ---------------------------------------------------------------------------

struct BadArgs {
  int rank;
  int nranks;
  const char* path;
  const char* expect;  // substring of the error
};

TEST_P(CommConformance, InvalidInitArgumentsAreConfigErrorsNamingTheValue) {
  ChipWorker w;
  w.init(platform());
  const chipmesh_transport_t& t = w.transport();
  for (const BadArgs& a : {BadArgs{2, 2, "/tmp/x", "rank=2"}, BadArgs{5, 2, "/tmp/x", "rank=5"},
                           BadArgs{-1, 2, "/tmp/x", "rank=-1"}, BadArgs{0, 65, "/tmp/x", "nranks=65"},
                           BadArgs{0, 0, "/tmp/x", "nranks=0"}, BadArgs{0, 2, "", "rootinfo_path is empty"},
                           BadArgs{0, 2, nullptr, "rootinfo_path is empty"}}) {
    EXPECT_EQ(t.comm_init(a.rank, a.nranks, nullptr, a.path, nullptr), nullptr) << a.expect;
    EXPECT_EQ(t.last_error_code(), CHIPMESH_ERR_CONFIG) << a.expect;
    EXPECT_TRUE(contains(t.last_error(), a.expect)) << t.last_error();
  }
}

TEST_P(CommConformance, NullHandlesAndOutputsAreConfigErrors) {
  ChipWorker w;
  w.init(platform());
  const chipmesh_transport_t& t = w.transport();
  uint64_t v = 0;
  size_t s = 0;
  EXPECT_EQ(t.alloc_windows(nullptr, 4096, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(t.last_error()), "");
  EXPECT_EQ(t.local_window_base(nullptr, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(t.window_size(nullptr, &s), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(t.barrier(nullptr), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(t.destroy(nullptr), CHIPMESH_ERR_CONFIG);
}

TEST_P(CommConformance, WindowQueriesBeforeAllocAndDoubleAllocFail) {
  ChipWorker w;
  w.init(platform());
  w.set_device(0);
  const chipmesh_transport_t& t = w.transport();
  CommHandle h = t.comm_init(0, 1, nullptr, path.c_str(), nullptr);
  ASSERT_NE(h, nullptr) << t.last_error();
  size_t s = 0;
  uint64_t v = 0;
  EXPECT_EQ(t.window_size(h, &s), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(t.local_window_base(h, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(t.alloc_windows(h, 0, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_EQ(t.alloc_windows(h, 4096, nullptr), CHIPMESH_ERR_CONFIG);
  ASSERT_EQ(t.alloc_windows(h, 4096, &v), 0) << t.last_error();
  EXPECT_EQ(t.alloc_windows(h, 4096, &v), CHIPMESH_ERR_CONFIG);
  EXPECT_TRUE(contains(t.last_error(), "already allocated")) << t.last_error();
  EXPECT_EQ(t.destroy(h), 0) << t.last_error();
}

TEST_P(CommConformance, ARootinfoPathInAMissingDirectoryIsAnErrorNamingIt) {
  const std::string missing = "/nonexistent-chipmesh-dir/rootinfo";
  // The publisher (rank 0, alone) and a waiter (rank 1) both say so at once.
  for (auto [rank, nranks] : {std::pair{0, 1}, std::pair{1, 2}}) {
    Rank R(platform(), rank);
    std::string msg = expect_throw<Error>([&] { R.join(nranks, missing); }, "comm_init");
    EXPECT_TRUE(contains(msg, missing)) << msg;
  }
}

// ---------------------------------------------------------------------------
// Failures: every rank fails, naming the values and the peers involved
// ---------------------------------------------------------------------------

TEST_P(CommConformance, NranksMismatchFailsOnEveryRankNamingBothValues) {
  auto outcomes = fork_ranks(3, [&](int rank) {
    Rank R(platform(), rank);
    rank_note(expect_throw<Error>([&] { R.join(rank == 2 ? 4 : 3, path); }, "comm_init"));
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes)
    EXPECT_TRUE(contains(o.message, "nranks=3") && contains(o.message, "nranks=4")) << o.describe();
}

TEST_P(CommConformance, WindowSizeMismatchFailsOnEveryRankNamingBothValues) {
  auto outcomes = fork_ranks(3, [&](int rank) {
    Rank R(platform(), rank);
    R.join(3, path);
    rank_note(expect_throw<CommError>([&] { R.alloc(rank == 1 ? 8192 : 4096); }, "comm_alloc_windows"));
    expect_throw<Error>([&] { R.w.comm_barrier(R.comm); }, "a barrier of a failed communicator");
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes)
    EXPECT_TRUE(contains(o.message, "4096") && contains(o.message, "8192")) << o.describe();
}

TEST_P(CommConformance, TwoProcessesClaimingOneRankFailEveryRank) {
  // Ranks 0, 1, 1 of a 3-rank communicator.
  auto outcomes = fork_ranks(3, [&](int who) {
    Rank R(platform(), who == 2 ? 1 : who);
    rank_note(expect_throw<Error>([&] { R.join(3, path); }, "comm_init"));
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes) EXPECT_TRUE(contains(o.message, "rank 1")) << o.describe();
}

TEST_P(CommConformance, PeerKilledBeforeBarrierIsNamedAndIsNotATimeout) {
  auto outcomes = fork_ranks(4, [&](int rank) {
    Rank R(platform(), rank);
    R.w.set_comm_timeout(60s);  // a detection by deadline would be a TimeoutError
    R.join(4, path).alloc(4096);
    if (rank == 2) raise(SIGKILL);
    rank_note(expect_throw<CommError>([&] { R.w.comm_barrier(R.comm); }, "comm_barrier"));
  }, 60s);
  ASSERT_EQ(outcomes[2].signal, SIGKILL);
  const std::string victim = "rank 2 (pid " + std::to_string(outcomes[2].pid) + ")";
  for (int r : {0, 1, 3}) {
    EXPECT_TRUE(outcomes[r].ok()) << outcomes[r].describe();
    EXPECT_TRUE(contains(outcomes[r].message, victim)) << outcomes[r].describe();
  }
}

TEST_P(CommConformance, RankKilledDuringWindowAllocationIsNamed) {
  auto outcomes = fork_ranks(3, [&](int rank) {
    Rank R(platform(), rank);
    R.w.set_comm_timeout(60s);
    R.join(3, path);
    if (rank == 1) raise(SIGKILL);  // dies before creating its window
    rank_note(expect_throw<CommError>([&] { R.alloc(1 << 20); }, "comm_alloc_windows"));
  }, 60s);
  ASSERT_EQ(outcomes[1].signal, SIGKILL);
  for (int r : {0, 2}) {
    EXPECT_TRUE(outcomes[r].ok()) << outcomes[r].describe();
    EXPECT_TRUE(contains(outcomes[r].message, "rank 1 (pid " + std::to_string(outcomes[1].pid) + ")"))
        << outcomes[r].describe();
  }
}

TEST_P(CommConformance, MissingRankTimesOutNamingIt) {
  // Ranks 0 and 1 of 3 come; rank 2 never does.
  auto outcomes = fork_ranks(2, [&](int rank) {
    Rank R(platform(), rank);
    R.w.set_comm_timeout(1s);
    // Rank 1 comes once rank 0 has published, so both wait on rank 2 alone.
    if (rank == 1) {
      CM_REQUIRE(wait_file(path, 30s)) << "rank 0 never published " << path;
    }
    rank_note(expect_throw<TimeoutError>([&] { R.join(3, path); }, "comm_init"));
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (const auto& o : outcomes) EXPECT_TRUE(contains(o.message, "ranks not arrived: 2")) << o.describe();
}

TEST_P(CommConformance, RankZeroNeverPublishingTimesOutNamingThePath) {
  Rank R(platform(), 1);
  R.w.set_comm_timeout(1s);
  std::string msg = expect_throw<TimeoutError>([&] { R.join(2, path); }, "comm_init");
  EXPECT_TRUE(contains(msg, path)) << msg;
}

// ---------------------------------------------------------------------------
// The job token travels through comm_init's options
// ---------------------------------------------------------------------------

TEST_P(CommConformance, TheJobTokenOfTheOptionsWinsOverTheEnvironment) {
  // Different environments, one token in the options: one communicator.
  auto outcomes = fork_ranks(2, [&](int rank) {
    setenv("CHIPMESH_JOB_TOKEN", rank == 0 ? "env-a" : "env-b", 1);  // this child only
    knobs::reload();  // knobs are read once: the environment's token is really there
    Rank R(platform(), rank);
    R.w.set_job_token("job-x");
    R.join(2, path).alloc(4096);
    R.w.comm_barrier(R.comm);
    R.destroy();
  }, 60s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_P(CommConformance, RanksOfTwoJobsNeverJoinEachOther) {
  // Rank 1 of job-y finds job-x's live rootinfo: it fails at once with a
  // CommError naming the path and job-x's rank 0 (its 30 s timeout would make
  // a wait a TimeoutError), and never joins. Rank 0 times out alone.
  auto outcomes = fork_ranks(2, [&](int rank) {
    Rank R(platform(), rank);
    R.w.set_job_token(rank == 0 ? "job-x" : "job-y");
    R.w.set_comm_timeout(rank == 0 ? 3s : 30s);
    if (rank == 1) {
      CM_REQUIRE(wait_file(path, 30s)) << "rank 0 never published " << path;
      rank_note(expect_throw<CommError>([&] { R.join(2, path); }, "comm_init"));
    } else {
      rank_note(expect_throw<TimeoutError>([&] { R.join(2, path); }, "comm_init"));
    }
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  const std::string& msg = outcomes[1].message;
  EXPECT_TRUE(contains(msg, "in use by job 'job-x' (rank 0 pid " + std::to_string(outcomes[0].pid) + ", alive)"))
      << outcomes[1].describe();
  EXPECT_TRUE(contains(msg, path)) << outcomes[1].describe();
}

TEST_P(CommConformance, ASecondJobsRankZeroRefusesALivePath) {
  // job-y's rank 0 must not replace job-x's live rootinfo (that would strand
  // job-x's ranks): a CommError naming the path and job-x's pid, at once.
  auto outcomes = fork_ranks(2, [&](int rank) {
    Rank R(platform(), 0);
    R.w.set_job_token(rank == 0 ? "job-x" : "job-y");
    R.w.set_comm_timeout(rank == 0 ? 3s : 30s);
    if (rank == 1) {
      CM_REQUIRE(wait_file(path, 30s)) << "job-x never published " << path;
      rank_note(expect_throw<CommError>([&] { R.join(2, path); }, "comm_init"));
    } else {
      rank_note(expect_throw<TimeoutError>([&] { R.join(2, path); }, "comm_init"));
    }
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  EXPECT_TRUE(contains(outcomes[1].message, "in use by job 'job-x' (rank 0 pid " + std::to_string(outcomes[0].pid)))
      << outcomes[1].describe();
  EXPECT_TRUE(contains(outcomes[1].message, path)) << outcomes[1].describe();
}

}  // namespace
}  // namespace chipmesh::testing

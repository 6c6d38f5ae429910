// The device-side helpers of chipmesh/kernel_device.h: window arithmetic,
// flags (set, add, wait with deadline, abort and wrap-around), barrier, and
// the small utilities (fail, element_count, flag_fits). Multi-rank cases run
// forked sim ranks with a real communicator.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/kernel.h"
#include "chipmesh/types.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"

namespace chipmesh {
namespace {

using namespace std::chrono_literals;
using testing::all_ok;
using testing::fork_ranks;
namespace dev = chipmesh::device;

// One sim rank with a communicator and the given window buffers.
struct CommRank {
  ChipWorker w;
  ChipBootstrapResult res;
  const CommContext* ctx = nullptr;

  CommRank(int rank, int n, const std::string& rootinfo, size_t window, std::vector<ChipBufferSpec> buffers = {}) {
    w.init("sim");
    ChipBootstrapConfig cfg;
    cfg.comm = ChipCommBootstrapConfig{rank, n, rootinfo, window};
    cfg.buffers = std::move(buffers);
    res = w.bootstrap_context(rank, cfg);
    ctx = reinterpret_cast<const CommContext*>(res.device_ctx);
  }
  ~CommRank() {
    try {
      w.shutdown_bootstrap();
      w.finalize();
    } catch (...) {
    }
  }
};

// Kernel arguments for helper calls made directly (not through a kernel).
struct Args {
  chipmesh_kernel_args a{};
  uint32_t abort_word = 0;
  char error[CHIPMESH_KERNEL_ERROR_SIZE] = {};

  explicit Args(const CommContext* ctx, std::chrono::nanoseconds timeout = 60s) {
    a.abi_version = CHIPMESH_KERNEL_ABI_VERSION;
    a.comm = ctx;
    a.deadline_ns = dev::now_ns() + static_cast<uint64_t>(timeout.count());
    a.abort = &abort_word;
    a.error = error;
  }
  Args(const Args&) = delete;
};

class DeviceHelpers : public ::testing::Test {
 protected:
  testing::ScratchDir scratch;
  std::string path = scratch.file("rootinfo");
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo left behind"; }
};

// --- windows ------------------------------------------------------------------

TEST(DeviceWindows, PeerWindowWindowOffsetAndPeerBufferArithmetic) {
  CommContext ctx{};
  ctx.rankNum = 3;
  ctx.rankId = 1;
  ctx.winSize = 4096;
  ctx.windowsIn[0] = 0x10000;
  ctx.windowsIn[1] = 0x40000;
  ctx.windowsIn[2] = 0x90000;

  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::peer_window(&ctx, 0)), 0x10000u);
  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::peer_window(&ctx, 2, 100)), 0x90000u + 100);

  // window_offset: inside this rank's (rank 1) window only, bounds inclusive.
  EXPECT_EQ(dev::window_offset(&ctx, 0x40000, 4096), 0u);
  EXPECT_EQ(dev::window_offset(&ctx, 0x40000 + 96, 4000), 96u);
  EXPECT_EQ(dev::window_offset(&ctx, 0x40000 + 97, 4000), UINT64_MAX);  // one byte past the end
  EXPECT_EQ(dev::window_offset(&ctx, 0x40000, 4097), UINT64_MAX);
  EXPECT_EQ(dev::window_offset(&ctx, 0x3FFFF, 1), UINT64_MAX);  // before the base
  EXPECT_EQ(dev::window_offset(&ctx, 0x40000 + 4096, 0), 4096u);  // empty range at the end
  EXPECT_EQ(dev::window_offset(&ctx, 0x40000 + 4097, 0), UINT64_MAX);
  EXPECT_EQ(dev::window_offset(&ctx, 0x10000, 8), UINT64_MAX);  // a peer's window is not "local"
  EXPECT_EQ(dev::window_offset(&ctx, UINT64_MAX, 2), UINT64_MAX);  // no wrap-around
  EXPECT_EQ(dev::window_offset(&ctx, 0x40010, UINT64_MAX), UINT64_MAX);

  auto* local = reinterpret_cast<const float*>(0x40000 + 64);
  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::peer_buffer(&ctx, 0, local)), 0x10000u + 64);
  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::peer_buffer(&ctx, 1, local)), 0x40000u + 64);
  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::peer_buffer(&ctx, 2, local)), 0x90000u + 64);

  // Flags are found through this rank's workspace header, wherever the
  // platform put each rank's scratch; they follow the header.
  chipmesh_workspace_header header{};
  header.peerWorkSpace[0] = 0x200000;
  header.peerWorkSpace[1] = 0x300000;
  header.peerWorkSpace[2] = 0x700000;
  ctx.workSpace = reinterpret_cast<uint64_t>(&header);
  ctx.workSpaceSize = 64 << 10;
  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::flag(&ctx, 2, 0)), 0x700000u + CHIPMESH_WORKSPACE_HEADER_BYTES);
  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::flag(&ctx, 0, 5)),
            0x200000u + CHIPMESH_WORKSPACE_HEADER_BYTES + 5 * CHIPMESH_FLAG_BYTES);
  EXPECT_EQ(reinterpret_cast<uint64_t>(dev::peer_scratch(&ctx, 1, 8)), 0x300000u + CHIPMESH_WORKSPACE_HEADER_BYTES + 8);
}

TEST_F(DeviceHelpers, PeerBufferReachesEveryRanksCopyOfABuffer) {
  constexpr int n = 3;
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommRank R(rank, n, path, 8192,
               {{"pad", DataType::UINT8, 100, 100}, {"x", DataType::INT32, 16, 64}});
    const CommContext* ctx = R.ctx;
    const chipmesh_workspace_header* header = dev::workspace_header(ctx);
    CM_REQUIRE(header->peerWorkSpace[rank] == ctx->workSpace) << "the header lists this rank's own scratch";
    for (int p = 0; p < n; ++p) CM_REQUIRE(header->peerWorkSpace[p] != 0) << "rank " << p;
    for (int p = n; p < CHIPMESH_MAX_RANKS; ++p) CM_REQUIRE(header->peerWorkSpace[p] == 0) << "rank " << p;
    auto* x = reinterpret_cast<int32_t*>(R.res.buffer_ptrs[1]);
    CM_REQUIRE(dev::window_offset(ctx, R.res.buffer_ptrs[1], 64) == 100);
    for (int i = 0; i < 16; ++i) x[i] = rank * 1000 + i;
    Args args(ctx);
    CM_REQUIRE(dev::barrier(&args.a) == 0) << args.error;
    for (int p = 0; p < n; ++p) {
      const int32_t* px = dev::peer_buffer(ctx, p, x);
      CM_REQUIRE(reinterpret_cast<uint64_t>(px) == ctx->windowsIn[p] + 100);
      CM_REQUIRE(reinterpret_cast<const int32_t*>(dev::peer_window(ctx, p, 100)) == px);
      for (int i = 0; i < 16; ++i) CM_REQUIRE(px[i] == p * 1000 + i) << "peer " << p << " element " << i;
    }
    CM_REQUIRE(dev::barrier(&args.a) == 0) << args.error;  // peers stop reading before teardown
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// --- flags --------------------------------------------------------------------

TEST_F(DeviceHelpers, FlagSetAddAndWaitAcrossRanks) {
  constexpr int n = 4;
  constexpr uint32_t kSignal = CHIPMESH_FIRST_USER_FLAG;      // on rank 0, set by rank 0
  constexpr uint32_t kCounter = CHIPMESH_FIRST_USER_FLAG + 1; // on rank 0, added to by everyone
  constexpr uint32_t kPing = CHIPMESH_FIRST_USER_FLAG + 2;    // own flag of ranks 0 and 1
  constexpr uint32_t kAdds = 2000;
  constexpr uint32_t kRounds = 2000;
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommRank R(rank, n, path, 4096);
    const CommContext* ctx = R.ctx;
    CM_REQUIRE(dev::flag_fits(ctx, kPing));
    Args args(ctx);

    // 1. A late set wakes every waiter: rank 0 sets only once all n - 1
    //    others are registered sleepers of the flag.
    if (rank == 0) {
      dev::Flag* signal = dev::flag(ctx, 0, kSignal);
      const auto until = std::chrono::steady_clock::now() + 30s;
      while (signal->sleepers.load() < n - 1 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      CM_REQUIRE(signal->sleepers.load() == n - 1) << "sleepers " << signal->sleepers.load();
      dev::flag_set(signal, 7);
    } else {
      CM_REQUIRE(dev::flag_wait_ge(&args.a, dev::flag(ctx, 0, kSignal), 7) == 0) << args.error;
      CM_REQUIRE(dev::flag(ctx, 0, kSignal)->value.load() == 7);
    }

    // 2. Concurrent adds on one flag are all counted; flag_add returns the new value.
    uint32_t last = 0;
    for (uint32_t i = 0; i < kAdds; ++i) {
      uint32_t v = dev::flag_add(dev::flag(ctx, 0, kCounter), 1);
      CM_REQUIRE(v > last) << "flag_add returns the value after the add";
      last = v;
    }
    CM_REQUIRE(dev::flag_wait_ge(&args.a, dev::flag(ctx, 0, kCounter), n * kAdds) == 0) << args.error;
    CM_REQUIRE(dev::flag(ctx, 0, kCounter)->value.load() == n * kAdds);

    // 3. Ping-pong between ranks 0 and 1: data written before a set is
    //    visible after the matching wait.
    if (rank < 2) {
      const int peer = 1 - rank;
      auto* mine = reinterpret_cast<volatile uint64_t*>(ctx->windowsIn[rank]);
      auto* theirs = reinterpret_cast<volatile uint64_t*>(ctx->windowsIn[peer]);
      for (uint32_t k = 1; k <= kRounds; ++k) {
        if (rank == 0) {
          *mine = k * 3;
          dev::flag_set(dev::flag(ctx, 0, kPing), k);
          CM_REQUIRE(dev::flag_wait_ge(&args.a, dev::flag(ctx, 1, kPing), k) == 0) << args.error;
          CM_REQUIRE(*theirs == k * 5) << "round " << k;
        } else {
          CM_REQUIRE(dev::flag_wait_ge(&args.a, dev::flag(ctx, 0, kPing), k) == 0) << args.error;
          CM_REQUIRE(*theirs == k * 3) << "round " << k;
          *mine = k * 5;
          dev::flag_set(dev::flag(ctx, 1, kPing), k);
        }
      }
    }
    CM_REQUIRE(dev::barrier(&args.a) == 0) << args.error;
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST(DeviceFlags, WaitTimesOutAtTheDeadline) {
  dev::Flag f{};
  f.value.store(3);
  Args args(nullptr, 200ms);
  const auto start = std::chrono::steady_clock::now();
  int rc = dev::flag_wait_ge(&args.a, &f, 4);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(rc, CHIPMESH_ERR_TIMEOUT);
  EXPECT_GE(took, 195ms) << "not before the deadline";
  EXPECT_NE(std::string(args.error).find("timed out"), std::string::npos) << args.error;
  EXPECT_NE(std::string(args.error).find("4"), std::string::npos) << args.error;
  EXPECT_EQ(f.sleepers.load(), 0u) << "a sleeper unregisters itself";
}

TEST(DeviceFlags, DeadlineInThePastStillSucceedsWhenReached) {
  dev::Flag f{};
  f.value.store(10);
  Args args(nullptr, 0ns);
  args.a.deadline_ns = 1;  // long gone
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 10), 0);
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 9), 0);
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 11), CHIPMESH_ERR_TIMEOUT);
}

TEST(DeviceFlags, ZeroDeadlineMeansNoDeadline) {
  dev::Flag f{};
  Args args(nullptr);
  args.a.deadline_ns = 0;
  const pid_t waiter = static_cast<pid_t>(gettid());
  std::thread setter([&] {
    // Set only once the waiter sleeps (past its spin and yield phases).
    EXPECT_TRUE(testing::wait_asleep_in_futex(waiter, 30s));
    dev::flag_set(&f, 1);
  });
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 1), 0) << args.error;
  setter.join();
}

TEST(DeviceFlags, AbortMakesAWaitReturnCommError) {
  dev::Flag f{};
  Args args(nullptr, 60s);
  const pid_t waiter = static_cast<pid_t>(gettid());
  std::thread aborter([&] {
    // Abort a wait that already sleeps on the futex: the abort flag is not a
    // futex, so the wait must notice it at a slice boundary.
    EXPECT_TRUE(testing::wait_asleep_in_futex(waiter, 30s));
    std::atomic_ref<uint32_t>(args.abort_word).store(1);
  });
  int rc = dev::flag_wait_ge(&args.a, &f, 1);
  aborter.join();
  EXPECT_EQ(rc, CHIPMESH_ERR_COMM) << "the abort was not noticed before the 60 s deadline: " << args.error;
  EXPECT_NE(std::string(args.error).find("abort"), std::string::npos) << args.error;

  // Already aborted and not reached: CommError, not a wait for the deadline.
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 1), CHIPMESH_ERR_COMM);
  // Reached wins over abort.
  dev::flag_set(&f, 1);
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 1), 0);
}

TEST(DeviceFlags, WaitIsWrapAware) {
  dev::Flag f{};
  Args args(nullptr, 100ms);
  f.value.store(0xFFFFFFF0u);
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 0xFFFFFFE0u), 0);
  EXPECT_EQ(dev::flag_wait_ge(&args.a, &f, 0x10u), CHIPMESH_ERR_TIMEOUT) << "0x10 is 32 steps after 0xFFFFFFF0";
  EXPECT_EQ(dev::flag_add(&f, 0x20u), 0x10u);
  Args again(nullptr, 100ms);
  EXPECT_EQ(dev::flag_wait_ge(&again.a, &f, 0x10u), 0);
  EXPECT_EQ(dev::flag_wait_ge(&again.a, &f, 0xFFFFFFF0u), 0);
}

// The waiter has no abort flag to watch and an hour of deadline, so it sleeps
// in one futex wait: only flag_set's wake can end it before the test's 60 s.
// Remove the wake and this fails.
TEST(DeviceFlags, SetWakesASleepingWaiterInAnotherThread) {
  dev::Flag f{};
  Args args(nullptr, std::chrono::hours(1));
  args.a.abort = nullptr;
  std::atomic<pid_t> tid{0};
  std::promise<int> result;
  std::future<int> rc = result.get_future();
  std::thread waiter_thread([&] {
    tid.store(static_cast<pid_t>(gettid()));
    result.set_value(dev::flag_wait_ge(&args.a, &f, 5));
  });
  while (tid.load() == 0) std::this_thread::yield();
  const bool asleep = testing::wait_asleep_in_futex(tid.load(), 30s);
  EXPECT_EQ(f.sleepers.load(), 1u);
  dev::flag_set(&f, 5);
  const bool woken = rc.wait_for(60s) == std::future_status::ready;
  if (!woken) dev::detail::futex_wake(&f.value);  // release the thread to join it
  waiter_thread.join();
  EXPECT_TRUE(asleep) << "the waiter never slept in futex(2)";
  EXPECT_TRUE(woken) << "the waiter slept through flag_set: its futex wake is missing";
  EXPECT_EQ(rc.get(), 0) << args.error;
}

TEST(DeviceFlags, FlagFitsChecksTheWorkspaceSize) {
  CommContext ctx{};
  ctx.workSpaceSize = CHIPMESH_WORKSPACE_HEADER_BYTES + 4 * CHIPMESH_FLAG_BYTES;
  EXPECT_FALSE(dev::flag_fits(&ctx, 0)) << "no workSpace at all";
  chipmesh_workspace_header header{};
  ctx.workSpace = reinterpret_cast<uint64_t>(&header);
  EXPECT_TRUE(dev::flag_fits(&ctx, 0));
  EXPECT_TRUE(dev::flag_fits(&ctx, 3));
  EXPECT_FALSE(dev::flag_fits(&ctx, 4));
  ctx.workSpaceSize = 64 << 10;  // the header takes 8 lines of 1024
  EXPECT_TRUE(dev::flag_fits(&ctx, CHIPMESH_FIRST_USER_FLAG));
  EXPECT_TRUE(dev::flag_fits(&ctx, 1015));
  EXPECT_FALSE(dev::flag_fits(&ctx, 1016));
  EXPECT_FALSE(dev::flag_fits(&ctx, UINT32_MAX));
}

// --- barrier ------------------------------------------------------------------

TEST_F(DeviceHelpers, BarrierTenThousandTimesOnFourRanks) {
  constexpr int n = 4;
  constexpr uint32_t kIters = 10000;
  constexpr uint32_t kMark = CHIPMESH_FIRST_USER_FLAG;
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommRank R(rank, n, path, 4096);
    const CommContext* ctx = R.ctx;
    Args args(ctx);
    dev::Flag* mine = dev::flag(ctx, rank, kMark);
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t k = 1; k <= kIters; ++k) {
      // Before barrier k every rank marks k; after it every peer has marked
      // k and none has gone past barrier k + 1.
      mine->value.store(k, std::memory_order_relaxed);
      CM_REQUIRE(dev::barrier(&args.a) == 0) << "barrier " << k << ": " << args.error;
      for (int p = 0; p < n; ++p) {
        uint32_t v = dev::flag(ctx, p, kMark)->value.load(std::memory_order_relaxed);
        CM_REQUIRE(v == k || v == k + 1) << "barrier " << k << ": rank " << p << " marked " << v;
      }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (rank == 0) testing::rank_note(std::to_string(kIters) + " barriers in " + std::to_string(secs) + " s");
    CM_REQUIRE(dev::flag(ctx, rank, dev::kBarrierLocal)->value.load() == kIters);
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
  std::printf("[ barrier ] %s\n", outcomes[0].message.c_str());
}

TEST_F(DeviceHelpers, BarrierOnSixteenRanks) {
  constexpr int n = 16;  // more ranks than cores: waits must sleep, not livelock
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommRank R(rank, n, path, 4096);
    Args args(R.ctx);
    for (int k = 0; k < 100; ++k) CM_REQUIRE(dev::barrier(&args.a) == 0) << "barrier " << k << ": " << args.error;
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(DeviceHelpers, BarrierTimesOutWhenAPeerNeverArrives) {
  constexpr int n = 2;
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommRank R(rank, n, path, 4096);
    if (rank == 1) return;  // never calls the barrier
    Args args(R.ctx, 300ms);
    const auto start = std::chrono::steady_clock::now();
    int rc = dev::barrier(&args.a);
    const auto took = std::chrono::steady_clock::now() - start;
    CM_REQUIRE(rc == CHIPMESH_ERR_TIMEOUT) << rc;
    CM_REQUIRE(took >= 290ms) << "timed out before the deadline";
    CM_REQUIRE(std::string(args.error).find("timed out") != std::string::npos) << args.error;
  });
  EXPECT_TRUE(all_ok(outcomes));
}

TEST(DeviceBarrier, WithoutACommunicatorIsAConfigError) {
  Args args(nullptr);
  EXPECT_EQ(dev::barrier(&args.a), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(args.error).find("no communicator"), std::string::npos) << args.error;

  CommContext ctx{};
  ctx.rankNum = 2;
  chipmesh_workspace_header header{};
  ctx.workSpace = reinterpret_cast<uint64_t>(&header);
  ctx.workSpaceSize = CHIPMESH_WORKSPACE_HEADER_BYTES + 64;  // room for flag 0 only
  Args small(&ctx);
  EXPECT_EQ(dev::barrier(&small.a), CHIPMESH_ERR_CONFIG);
  EXPECT_NE(std::string(small.error).find("workSpace"), std::string::npos) << small.error;
}

// --- utilities ----------------------------------------------------------------

TEST(DeviceUtilities, FailFormatsIntoTheErrorBufferAndTruncates) {
  Args args(nullptr);
  EXPECT_EQ(dev::fail(&args.a, CHIPMESH_ERR_CONFIG, "bad %s %d", "value", 42), CHIPMESH_ERR_CONFIG);
  EXPECT_STREQ(args.error, "bad value 42");

  std::string longer(2 * CHIPMESH_KERNEL_ERROR_SIZE, 'x');
  EXPECT_EQ(dev::fail(&args.a, CHIPMESH_ERR_INTERNAL, "%s", longer.c_str()), CHIPMESH_ERR_INTERNAL);
  EXPECT_EQ(std::strlen(args.error), static_cast<size_t>(CHIPMESH_KERNEL_ERROR_SIZE - 1));

  // No error buffer, or no args at all: only the status comes back.
  args.a.error = nullptr;
  EXPECT_EQ(dev::fail(&args.a, CHIPMESH_ERR_COMM, "ignored"), CHIPMESH_ERR_COMM);
  EXPECT_EQ(dev::fail(nullptr, CHIPMESH_ERR_TIMEOUT, "ignored"), CHIPMESH_ERR_TIMEOUT);
}

TEST(DeviceUtilities, ElementCountIsTheProductOfTheShape) {
  chipmesh_tensor t{};
  EXPECT_EQ(dev::element_count(t), 1u) << "a scalar tensor";
  t.ndim = 3;
  t.shape[0] = 7;
  t.shape[1] = 11;
  t.shape[2] = 13;
  EXPECT_EQ(dev::element_count(t), 1001u);
  t.shape[1] = 0;
  EXPECT_EQ(dev::element_count(t), 0u);
  t.ndim = CHIPMESH_KERNEL_MAX_DIMS;
  for (int i = 0; i < CHIPMESH_KERNEL_MAX_DIMS; ++i) t.shape[i] = 2;
  EXPECT_EQ(dev::element_count(t), 256u);
}

TEST(DeviceUtilities, NowIsMonotonicNanoseconds) {
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t a = dev::now_ns();
  std::this_thread::sleep_for(10ms);  // some time must pass: not waiting for anything
  uint64_t b = dev::now_ns();
  const auto t1 = std::chrono::steady_clock::now();
  // Nanoseconds of the monotonic clock: at least the 10 ms slept, at most
  // what std::chrono::steady_clock saw around it.
  EXPECT_GE(b - a, 10'000'000u);
  EXPECT_LE(b - a, static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
}

}  // namespace
}  // namespace chipmesh

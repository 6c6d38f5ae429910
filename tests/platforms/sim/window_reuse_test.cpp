// sim keeps the one object of a destroyed communicator's windows mapped and
// reuses it for the next communicator of the same shape (window_cache.h):
// only once every rank of the old communicator has released it, always as
// zeros (zeroed in place, or punched empty when much was written).
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/transport_abi.h"
#include "comm_support.h"
#include "common/futex.h"
#include "support/leak_check.h"

extern "C" const chipmesh_transport_v1_t* chipmesh_transport_entry(void);

namespace chipmesh::testing {
namespace {

struct ObjectId {
  uint64_t dev = 0, ino = 0;
  bool operator==(const ObjectId& o) const { return dev == o.dev && ino == o.ino; }
};

// fstat of the object that holds this rank's window (window_file).
struct stat window_object(CommHandle h) {
  int fd = -1;
  uint64_t offset = 0;
  const chipmesh_transport_v1_t* t = chipmesh_transport_entry();
  CM_REQUIRE(t->window_file(h, &fd, &offset) == CHIPMESH_SUCCESS) << t->last_error();
  struct stat st{};
  CM_REQUIRE(fstat(fd, &st) == 0) << "fstat of window fd " << fd;
  return st;
}

ObjectId object_of(CommHandle h) {
  const struct stat st = window_object(h);
  return ObjectId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

// Bytes of that object that hold pages.
size_t object_bytes_held(CommHandle h) { return static_cast<size_t>(window_object(h).st_blocks) * 512; }

// Every byte of every rank's window and of its kernel scratch past the
// header is zero.
void require_zeros(const CommContext* ctx, int nranks) {
  const size_t scratch = ctx->workSpaceSize;
  for (int r = 0; r < nranks; ++r) {
    const auto* w = reinterpret_cast<const unsigned char*>(ctx->windowsIn[r]);
    for (size_t i = 0; i < ctx->winSize + scratch; ++i) {
      // Each rank's scratch header holds that rank's addresses (mine: below).
      if (i >= ctx->winSize && i < ctx->winSize + CHIPMESH_WORKSPACE_HEADER_BYTES) continue;
      CM_REQUIRE(w[i] == 0) << "byte " << i << " of rank " << r << "'s window + scratch is " << int(w[i]);
    }
  }
  const auto* header = reinterpret_cast<const chipmesh_workspace_header*>(ctx->workSpace);
  for (int r = 0; r < nranks; ++r)
    CM_REQUIRE(header->peerWorkSpace[r] == ctx->windowsIn[r] + ctx->winSize) << "rank " << r << "'s scratch address";
}

// Fills this rank's window and the scratch past its header with `byte`.
void fill_mine(const CommContext* ctx, unsigned char byte) {
  auto* w = reinterpret_cast<unsigned char*>(ctx->windowsIn[ctx->rankId]);
  std::memset(w, byte, ctx->winSize);
  std::memset(w + ctx->winSize + CHIPMESH_WORKSPACE_HEADER_BYTES, byte,
              ctx->workSpaceSize - CHIPMESH_WORKSPACE_HEADER_BYTES);
}

// A communicator whose ranks each fill their window and scratch with `byte`
// and destroy it, then a second of the same shape ("second"), which must
// hold the same object: returns it, its context in *ctx. Rank 0 offers the
// object only once every rank released it; the ranks meet again in the
// second communicator, so all have.
CommHandle reallocate_after_writing(const ScratchDir& dir, int rank, int n, size_t window, unsigned char byte,
                                    const CommContext** ctx) {
  CommHandle first = must_init(rank, n, dir.file("first"));
  *ctx = must_alloc(first, window);
  const ObjectId used = object_of(first);
  fill_mine(*ctx, byte);
  must_barrier(first);
  must_destroy(first);
  CommHandle second = must_init(rank, n, dir.file("second"));
  *ctx = must_alloc(second, window);
  CM_REQUIRE(object_of(second) == used) << "rank " << rank << " got a new object, not the released one";
  return second;
}

class SimWindowReuse : public ::testing::TestWithParam<int> {
 protected:
  ScratchDir scratch;
  void TearDown() override { EXPECT_TRUE(scratch.entries().empty()) << "rootinfo file left behind"; }
};

TEST_P(SimWindowReuse, ASecondCommunicatorOfTheSameShapeReusesTheReleasedObjectAsZeros) {
  const int n = GetParam();
  const size_t window = 3 * 4096 + 100;
  auto outcomes = fork_ranks(n, [&](int rank) {
    const CommContext* ctx = nullptr;
    CommHandle second = reallocate_after_writing(scratch, rank, n, window, static_cast<unsigned char>(0xa0 + rank), &ctx);
    const ObjectId used = object_of(second);
    require_zeros(ctx, n);
    must_barrier(second);
    fill_mine(ctx, static_cast<unsigned char>(0xb0 + rank));
    must_barrier(second);
    for (int r = 0; r < n; ++r)
      CM_REQUIRE(reinterpret_cast<const unsigned char*>(ctx->windowsIn[r])[ctx->winSize - 1] == 0xb0 + r)
          << "rank " << r << "'s write is not visible";
    must_barrier(second);
    must_destroy(second);

    // Another shape: a new object.
    CommHandle third = must_init(rank, n, scratch.file("third"));
    ctx = must_alloc(third, window + 4096);
    CM_REQUIRE(!(object_of(third) == used)) << "a window of another size reused the object";
    require_zeros(ctx, n);
    must_barrier(third);
    must_destroy(third);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// An object with more written than a cached one may keep (1 MiB) is
// punched empty by the last rank to release it, and reused all the same.
TEST_P(SimWindowReuse, AnObjectWithMuchWrittenIsEmptiedByTheLastRankToReleaseItAndReused) {
  const int n = GetParam();
  const size_t window = size_t{3} << 20;
  auto outcomes = fork_ranks(n, [&](int rank) {
    const CommContext* ctx = nullptr;
    CommHandle second = reallocate_after_writing(scratch, rank, n, window, static_cast<unsigned char>(0xc0 + rank), &ctx);
    // The scratch headers written since: a page a rank, and the tail
    // (before any rank reads: a read of a hole in shared memory gives it a
    // page).
    must_barrier(second);
    const size_t held = object_bytes_held(second);
    CM_REQUIRE(held <= static_cast<size_t>(n + 1) * 4096) << held << " bytes still held after a release";
    must_barrier(second);
    require_zeros(ctx, n);
    must_barrier(second);
    must_destroy(second);
  });
  EXPECT_TRUE(all_ok(outcomes));
}

// Rank 0 of a communicator releases its object while the other ranks still
// hold theirs: a new communicator of the same size (here rank 0 alone, with
// a window as large as all of the first's) gets a new object, never the one
// a peer may still be using; once the peers released it, it is reused.
TEST_P(SimWindowReuse, AnObjectIsNotReusedWhileARankOfItsCommunicatorHoldsIt) {
  const int n = GetParam();
  if (n < 2) GTEST_SKIP() << "needs a peer that holds the object";
  const size_t window = 2 * 4096;
  // Shared by the ranks (inherited): `stage` is 1 once rank 0 made its
  // second communicator; `released` counts the peers that released the first.
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  auto* stage = new (page) std::atomic<uint32_t>(0);
  auto* released = new (static_cast<char*>(page) + 64) std::atomic<uint32_t>(0);
  auto wait_for = [](std::atomic<uint32_t>* word, uint32_t value) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (uint32_t v; (v = word->load()) < value;) {
      CM_REQUIRE(std::chrono::steady_clock::now() < deadline) << "waited 30 s for " << value << ", have " << v;
      futex::wait(word, v, std::chrono::milliseconds(100));
    }
  };
  auto outcomes = fork_ranks(n, [&](int rank) {
    CommHandle first = must_init(rank, n, scratch.file("first"));
    const CommContext* ctx = must_alloc(first, window);
    const ObjectId used = object_of(first);
    fill_mine(ctx, 0x5a);
    must_barrier(first);
    const size_t scratch_bytes = ctx->workSpaceSize;
    const size_t total = static_cast<size_t>(n) * (ctx->winSize + scratch_bytes);
    if (rank != 0) {
      wait_for(stage, 1);
      must_destroy(first);
      released->fetch_add(1);
      futex::wake(released);
      return;
    }
    must_destroy(first);
    // The same object size: one rank whose window and scratch fill it.
    const size_t alone = total - scratch_bytes;
    CommHandle second = must_init(0, 1, scratch.file("second"));
    const CommContext* c2 = must_alloc(second, alone);
    CM_REQUIRE(c2->winSize + c2->workSpaceSize == total) << "the test's sizes do not match";
    CM_REQUIRE(!(object_of(second) == used)) << "reused an object rank 1.." << n - 1 << " still map";
    require_zeros(c2, 1);
    stage->store(1);
    futex::wake(stage);
    wait_for(released, static_cast<uint32_t>(n - 1));
    // Every rank released the first object now: it is reused, as zeros
    // (the second is still live, so it is the only one to offer).
    CommHandle third = must_init(0, 1, scratch.file("third"));
    const CommContext* c3 = must_alloc(third, alone);
    CM_REQUIRE(object_of(third) == used) << "the object every rank released was not reused";
    require_zeros(c3, 1);
    must_destroy(third);
    must_destroy(second);
  });
  EXPECT_TRUE(all_ok(outcomes));
  munmap(page, 4096);
}

INSTANTIATE_TEST_SUITE_P(Ranks, SimWindowReuse, ::testing::Values(1, 2, 4),
                         [](const ::testing::TestParamInfo<int>& i) { return std::to_string(i.param); });

}  // namespace
}  // namespace chipmesh::testing

// A stream of small collectives allocates nothing in the parent: the typed
// collectives refill the worker's tasks and submit_group reuses its scratch
// (allocations were half of the parent's time in a 2-rank 8 B allreduce
// stream). Counted with this binary's replacement of operator new, which
// counts only on a thread that armed it (the rest of worker_test is
// unaffected: it allocates through malloc as before). Every test of the
// binary gets the /dev/shm leak check (support/leak_check.h).
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/collectives.h"
#include "chipmesh/worker.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace {
thread_local bool g_counting = false;
std::atomic<long> g_news{0};
}  // namespace

// A replacement of the global operator new and delete on top of malloc and
// free; GCC 12 takes free() inside a replaced operator delete for a
// mismatched pair (-Wmismatched-new-delete), which it is not here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_counting) g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace chipmesh::testing {
namespace {

// Counts this thread's operator new calls while alive.
class CountNews {
 public:
  CountNews() : start_(g_news.load()) { g_counting = true; }
  ~CountNews() { g_counting = false; }
  long counted() const { return g_news.load() - start_; }

 private:
  long start_;
};

TEST(WorkerDispatchAllocations, AStreamOfTypedCollectivesAllocatesNothingInTheParent) {
  ScratchDir scratch;
  const int n = 3;
  const size_t kBytes = 4096;
  Worker w(comm_config(n, scratch.file("rootinfo"), 2 * kBytes,
                       {{"a", DataType::UINT8, kBytes, kBytes}, {"b", DataType::UINT8, kBytes, kBytes}}));
  w.init();
  const CommDomain& d = w.world();
  std::vector<uint64_t> a, b;
  for (int r = 0; r < n; ++r) {
    a.push_back(d.context(r).buffer_ptrs.at("a"));
    b.push_back(d.context(r).buffer_ptrs.at("b"));
    std::vector<int32_t> ones(kBytes / 4, 1);
    w.copy_to(r, a.back(), ones.data(), kBytes);
  }
  const std::vector<int> all{0, 1, 2};
  Task noop;
  noop.kernel = "chipmesh_noop";  // built in: returns at once
  long counted = -1;
  w.run([&](Orchestrator& o) {
    // Every typed collective by address and by name, a group and a single
    // task: 9 requests per chip and round, 10 on chip 1.
    auto round = [&] {
      o.allgather(d, a, b, 8, DataType::INT32);
      o.reduce_scatter(d, "b", "a", 8, DataType::INT32, ReduceOp::MAX);
      o.broadcast(d, a, b, 8, DataType::INT32, 2);
      o.reduce(d, "b", "a", 8, DataType::INT32, ReduceOp::MIN, 1);
      o.all_to_all(d, a, b, 2, DataType::INT32);
      o.barrier(d);
      o.submit_group(all, noop);
      o.submit(1, noop);
      o.allreduce(d, a, b, 16, DataType::INT32, ReduceOp::SUM);
    };
    round();  // the first call of each grows the worker's scratch
    // 1 + 11 rounds stay within a ring (at most 120 of its 128 entries in
    // flight): no wait for room, whose look at /proc for stopped chips
    // (after 250 ms) would allocate.
    CountNews news;
    for (int k = 0; k < 11; ++k) round();
    counted = news.counted();
  });
  EXPECT_EQ(counted, 0) << "operator new calls in 11 rounds of 9 submissions";
  // And the stream computed what it should: the last allreduce of 1s over 3 chips.
  for (int r = 0; r < n; ++r) {
    std::vector<int32_t> got(16);
    w.copy_from(r, got.data(), b[static_cast<size_t>(r)], got.size() * 4);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], 3) << "chip " << r << " element " << i;
  }
  w.close();
}

}  // namespace
}  // namespace chipmesh::testing

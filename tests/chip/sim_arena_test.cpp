// Sim's host arena through the device table (attach_host_arena, host_range,
// malloc, free): placement, reuse after free, alignment, the heap fallback
// when it is full, and what the other side of the file sees. In a forked
// child: an attached arena stays for the life of the process.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"
#include "support/fork_ranks.h"

namespace chipmesh::testing {
namespace {

TEST(SimArena, PlacesReusesAndFallsBackToTheHeap) {
  auto outcomes = fork_ranks(1, [](int) {
    constexpr uint64_t kSize = 1 << 20;
    const int fd = memfd_create("chipmesh_test_arena", MFD_CLOEXEC);
    CM_REQUIRE(fd >= 0 && ftruncate(fd, kSize) == 0);
    auto* view = static_cast<unsigned char*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    CM_REQUIRE(view != MAP_FAILED);
    ChipWorker w;
    w.init("sim");
    w.set_device(0);
    CM_REQUIRE(w.host_range(0, 0).arena_offset == CHIPMESH_NO_ARENA_OFFSET);
    CM_REQUIRE(w.attach_host_arena(fd, kSize));
    ::close(fd);  // the platform holds its own duplicate
    bool refused = false;
    try {
      w.attach_host_arena(fd, kSize);
    } catch (const ConfigError&) {
      refused = true;
    }
    CM_REQUIRE(refused) << "a second arena was accepted";

    // Small allocations: 64-byte aligned; from a page on: page aligned.
    const uint64_t a = w.malloc(10), b = w.malloc(5000), c = w.malloc(0);
    for (uint64_t p : {a, b, c}) {
      auto r = w.host_range(p, p == c ? 0 : 1);  // c holds no byte
      CM_REQUIRE(r.arena_offset != CHIPMESH_NO_ARENA_OFFSET && r.host == reinterpret_cast<void*>(p));
    }
    CM_REQUIRE(a % 64 == 0 && b % 4096 == 0 && c % 64 == 0);
    // What the chip writes is what the other side of the file reads.
    const uint64_t off_b = w.host_range(b, 5000).arena_offset;
    const std::string text = "seen through the other mapping";
    w.copy_to(b + 100, text.data(), text.size());
    CM_REQUIRE(std::memcmp(view + off_b + 100, text.data(), text.size()) == 0);
    // A range past the allocation is refused, as for copies.
    bool out_of_range = false;
    try {
      w.host_range(a, 65);  // 10 bytes, rounded to 64 in the arena: still outside
    } catch (const DeviceError&) {
      out_of_range = true;
    }
    CM_REQUIRE(out_of_range) << "host_range past an allocation was accepted";

    // Freed space is reused (first fit) and comes back zeroed once its whole
    // pages were punched.
    w.free(b);
    const uint64_t b2 = w.malloc(4096);
    CM_REQUIRE(b2 == b) << "freed block not reused";
    unsigned char page[4096];
    w.copy_from(page, b2, sizeof page);
    CM_REQUIRE(page[100] == 0) << "a punched page kept its old bytes";

    // Full: the heap takes over (outside the arena); freeing gives room back.
    const uint64_t big = w.malloc(kSize);
    CM_REQUIRE(w.host_range(big, kSize).arena_offset == CHIPMESH_NO_ARENA_OFFSET);
    w.free(big);
    w.free(a);
    w.free(b2);
    w.free(c);
    const uint64_t all = w.malloc(kSize);
    CM_REQUIRE(w.host_range(all, kSize).arena_offset == 0) << "coalescing lost free space";
    w.free(all);
    w.finalize();
    munmap(view, kSize);
  });
  for (const auto& o : outcomes) EXPECT_TRUE(o.ok()) << o.describe();
}

}  // namespace
}  // namespace chipmesh::testing

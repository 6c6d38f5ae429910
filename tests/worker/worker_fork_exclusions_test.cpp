// Worker::exclude_from_chips: the whole pages of a range are left out of the
// chips' forks, and the process's later forks inherit them again. Seen
// through /proc/self/pagemap (bit 56: the page is mapped by this process
// alone): after init(), excluded pages are this process's alone while the
// partial pages at the range's ends and memory not excluded are shared with
// the chips (copy-on-write); the chips work; a fork after init() reads the
// excluded memory, and copies from it; a chip that touches it dies, named;
// the errors.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/worker.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
constexpr size_t kPages = 16;
constexpr unsigned char kByte = 0x5c;

// Whether this process alone maps the page of `addr` (pagemap bit 56).
bool alone(const void* addr) {
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint64_t entry = 0;
  const off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(addr) / kPage * sizeof(entry));
  const bool ok = pread(fd, &entry, sizeof entry, at) == static_cast<ssize_t>(sizeof entry);
  close(fd);
  return ok && (entry & (uint64_t{1} << 56)) != 0;
}

// kPages private pages, written (so they exist before the forks).
struct Memory {
  unsigned char* p;
  Memory() {
    void* m = mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p = m == MAP_FAILED ? nullptr : static_cast<unsigned char*>(m);
    if (p) std::memset(p, kByte, kPages * kPage);
  }
  ~Memory() {
    if (p) munmap(p, kPages * kPage);
  }
};

TEST(WorkerForkExclusions, ExcludedPagesStayThisProcessAloneAndLaterForksGetThemAgain) {
  Memory excluded, other;
  ASSERT_TRUE(excluded.p && other.p);
  ASSERT_TRUE(alone(excluded.p + kPage) && alone(other.p)) << "pagemap does not tell exclusive pages here";
  ScratchDir scratch;
  Worker w(comm_config(2, scratch.file("rootinfo"), 64 * 1024));
  // Off page boundaries: pages 1 .. kPages-2 are whole inside, 0 and the last are not.
  w.exclude_from_chips(excluded.p + 100, kPages * kPage - 200);
  w.init();
  for (size_t i = 1; i + 1 < kPages; ++i) EXPECT_TRUE(alone(excluded.p + i * kPage)) << "page " << i;
  EXPECT_FALSE(alone(excluded.p)) << "the first page holds bytes outside the range: the chips share it";
  EXPECT_FALSE(alone(excluded.p + (kPages - 1) * kPage)) << "so does the last";
  EXPECT_FALSE(alone(other.p)) << "memory not excluded is shared with the chips";
  w.run([](Orchestrator& o) { o.submit_group({0, 1}, task("test_noop")); });
  // Excluded memory is still this process's to copy to and from the chips.
  const uint64_t dev = w.malloc(1, kPage);
  w.copy_to(1, dev, excluded.p + 3 * kPage, kPage);
  std::vector<unsigned char> back(kPage, 0);
  w.copy_from(1, back.data(), dev, kPage);
  EXPECT_EQ(back, std::vector<unsigned char>(kPage, kByte));
  w.free(1, dev);
  const auto outcome = fork_ranks(1, [&](int) {
    for (size_t i = 0; i < kPages; ++i) CM_REQUIRE(excluded.p[i * kPage + 7] == kByte);
  });
  EXPECT_TRUE(outcome[0].ok()) << outcome[0].describe();
  w.close();
}

TEST(WorkerForkExclusions, AChipTouchingExcludedMemoryDiesNamed) {
  Memory excluded;
  ASSERT_TRUE(excluded.p);
  ScratchDir scratch;
  Worker w(comm_config(1, scratch.file("rootinfo"), 64 * 1024));
  w.exclude_from_chips(excluded.p, kPages * kPage);
  w.init();
  const uint64_t addr = reinterpret_cast<uintptr_t>(excluded.p);
  const std::string err = chip_error_of([&] {
    w.run([&](Orchestrator& o) { o.submit(0, task("test_fill", {{addr, DataType::UINT8, {kPage}}}, {1})); });
  });
  EXPECT_NE(err.find("chip 0"), std::string::npos) << err;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  EXPECT_NE(err.find("killed by signal"), std::string::npos) << err;  // the sanitizer turns the SEGV into an abort
#else
  EXPECT_NE(err.find("killed by signal 11"), std::string::npos) << err;
#endif
  EXPECT_EQ(excluded.p[0], kByte) << "the parent's memory is untouched";
  w.close();
}

TEST(WorkerForkExclusions, BadRangesAndLateCallsAreConfigErrors) {
  ScratchDir scratch;
  Worker w(comm_config(1, scratch.file("rootinfo"), 64 * 1024));
  int x = 0;
  EXPECT_THROW(w.exclude_from_chips(nullptr, kPage), ConfigError);
  EXPECT_THROW(w.exclude_from_chips(&x, 0), ConfigError);
  w.exclude_from_chips(&x, sizeof x);  // no whole page: nothing left out, no error
  w.init();
  const std::string late = config_error_of([&] { w.exclude_from_chips(&x, sizeof x); });
  EXPECT_NE(late.find("before init()"), std::string::npos) << late;
  w.close();
}

// Memory that is not mapped when init() marks it: pages at 128 TiB, past
// the 47-bit user address space every mapping here lies in. (A range freed
// by munmap would do only until something maps there again: under ASan its
// own allocator did, between munmap and init.)
TEST(WorkerForkExclusions, MemoryNotMappedAtInitFailsItNamingTheRangeAndForksNothing) {
  ScratchDir scratch;
  Worker w(comm_config(2, scratch.file("rootinfo"), 64 * 1024));
  w.exclude_from_chips(reinterpret_cast<const void*>(uintptr_t{1} << 47), 8 * kPage);
  const std::string msg = config_error_of([&] { w.init(); });
  EXPECT_NE(msg.find("exclude_from_chips"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not mapped"), std::string::npos) << msg;
  EXPECT_EQ(w.chip_pid(0), -1) << "no chip was forked";
}

}  // namespace
}  // namespace chipmesh::testing

// Worker::copy_to / copy_from on both paths: straight into the chip's host
// arena (one memcpy) and through the request ring (CHIPMESH_HOST_ARENA_BYTES
// = 0, or memory outside the arena such as windows): every size boundary,
// bounds errors, ordering with queued tasks, staging sizes.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/worker.h"
#include "knobs/knobs.h"
#include "request_ring/chip_shared.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

constexpr size_t kChunk = worker::kChunkBytes;

std::vector<unsigned char> random_bytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(gen());
  return v;
}

// True when `addr` lies in chip `pid`'s mapping of the host arena memfd.
bool in_arena_mapping(pid_t pid, uint64_t addr) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("memfd:chipmesh_arena") == std::string::npos) continue;
    uint64_t lo = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    uint64_t hi = std::stoull(line.substr(line.find('-') + 1), nullptr, 16);
    if (addr >= lo && addr < hi) return true;
  }
  return false;
}

// Param: true = the default host arena, false = CHIPMESH_HOST_ARENA_BYTES=0.
class WorkerCopies : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!GetParam()) setenv("CHIPMESH_HOST_ARENA_BYTES", "0", 1);
    knobs::reload();
  }
  void TearDown() override {
    unsetenv("CHIPMESH_HOST_ARENA_BYTES");
    knobs::reload();
  }
  static WorkerConfig chips(int n) {
    WorkerConfig cfg;
    for (int i = 0; i < n; ++i) cfg.device_ids.push_back(i);
    return cfg;
  }
};

TEST_P(WorkerCopies, AllocationsLieInTheArenaOnlyWhenOneIsOffered) {
  Worker w(chips(1));
  w.init();
  const uint64_t p = w.malloc(0, 1 << 20);
  EXPECT_EQ(in_arena_mapping(w.chip_pid(0), p), GetParam());
  w.free(0, p);
}

TEST_P(WorkerCopies, RoundTripAtEverySizeBoundaryAndOffset) {
  Worker w(chips(2));
  w.init();
  const size_t sizes[] = {0, 1, 63, 4095, 4097, kChunk - 1, kChunk, kChunk + 1, size_t{64} << 10,
                          3 * kChunk + 5, 16 * kChunk + 4093, (size_t{32} << 20) + 3};
  for (size_t n : sizes) {
    for (int chip = 0; chip < 2; ++chip) {
      // The copy starts 7 bytes into the allocation and ends at its last byte.
      const uint64_t p = w.malloc(chip, n + 7);
      const auto in = random_bytes(n, static_cast<unsigned>(n + chip));
      std::vector<unsigned char> out(n, 0);
      w.copy_to(chip, p + 7, in.data(), n);
      w.copy_from(chip, out.data(), p + 7, n);
      EXPECT_TRUE(in == out) << n << " bytes on chip " << chip;
      w.free(chip, p);
    }
  }
}

TEST_P(WorkerCopies, CopiesWaitForTasksQueuedBeforeThem) {
  Worker w(chips(1));
  w.init();
  const size_t n = 3 * kChunk + 11;
  const uint64_t p = w.malloc(0, n);
  const auto in = random_bytes(n, 5);
  w.copy_to(0, p, in.data(), n);
  std::vector<unsigned char> out(n, 0);
  w.run([&](Orchestrator& o) {
    o.submit(0, task("test_fill", {{p, DataType::UINT8, {n}}}, {0x5a}));
    w.copy_from(0, out.data(), p, n);  // after the fill, never before or during it
  });
  EXPECT_EQ(std::vector<unsigned char>(n, 0x5a), out);
  // and a copy_to queued after a fill lands after it
  w.run([&](Orchestrator& o) {
    o.submit(0, task("test_fill", {{p, DataType::UINT8, {n}}}, {0x11}));
    w.copy_to(0, p, in.data(), n);
  });
  w.copy_from(0, out.data(), p, n);
  EXPECT_TRUE(in == out);
  w.free(0, p);
}

TEST_P(WorkerCopies, OutOfBoundsAndFreedAddressesAreDeviceErrorsNamingTheChip) {
  Worker w(chips(2));
  w.init();
  const size_t n = kChunk + 100;
  const uint64_t p = w.malloc(1, n);
  std::vector<unsigned char> buf(n + 1, 1);
  auto expect_error = [&](const char* what, auto&& body) {
    std::string msg = chip_error_of(body);
    EXPECT_NE(msg.find("chip 1 (device 1"), std::string::npos) << what << ": " << msg;
    EXPECT_NE(msg.find("DeviceError"), std::string::npos) << what << ": " << msg;
  };
  expect_error("one byte past the end", [&] { w.copy_to(1, p, buf.data(), n + 1); });
  expect_error("straddling the end", [&] { w.copy_from(1, buf.data(), p + n - 2, 3); });
  expect_error("before the start", [&] { w.copy_to(1, p - 1, buf.data(), 2); });
  w.free(1, p);
  expect_error("after free", [&] { w.copy_to(1, p, buf.data(), 16); });
  expect_error("after free", [&] { w.copy_from(1, buf.data(), p, 16); });
  const uint64_t q = w.malloc(1, 8);  // still usable after errors
  w.copy_to(1, q, buf.data(), 8);
  w.free(1, q);
  expect_error("freed twice", [&] { w.free(1, q); });
  w.free(1, 0);  // as free(NULL): nothing, no error
  EXPECT_THROW(w.free(2, 0), ConfigError);  // the chip is still checked
}

TEST_P(WorkerCopies, CopiesToADeadChipFailNamingIt) {
  Worker w(chips(1));
  w.init();
  const uint64_t p = w.malloc(0, 4096);
  std::vector<unsigned char> buf(4096, 3);
  const pid_t pid = w.chip_pid(0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  std::string msg = chip_error_of([&] {
    // The watcher may not have seen the death yet: the first copy may still
    // land in the arena (whose pages this process keeps alive), a later one
    // fails.
    for (;;) w.copy_to(0, p, buf.data(), buf.size());
  });
  EXPECT_NE(msg.find("chip 0 (device 0, pid " + std::to_string(pid) + ")"), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Paths, WorkerCopies, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "HostArena" : "Ring"; });

// Worker::malloc memory in the host arena is mapped by the parent (once
// every chip is forked), so a copy there is its own memcpy: it goes through
// even while the chip is stopped (through the ring it would wait for the
// chip and fail at CHIPMESH_STOPPED_CHIP_TIMEOUT_S). Each chip maps its own
// arena and no other.
TEST(WorkerArenaCopies, AreOneMemcpyWithoutTheChip) {
  auto outcomes = fork_ranks(1, [&](int) {
    setenv("CHIPMESH_STOPPED_CHIP_TIMEOUT_S", "2", 1);
    knobs::reload();
    WorkerConfig cfg;
    cfg.device_ids = {0, 1};
    Worker w(cfg);
    w.init();
    const size_t n = (size_t{1} << 20) + 12;
    const uint64_t p = w.malloc(1, n);
    CM_REQUIRE(in_arena_mapping(w.chip_pid(1), p)) << "the allocation is not in chip 1's arena";
    for (int chip = 0; chip < 2; ++chip) {
      std::ifstream maps("/proc/" + std::to_string(w.chip_pid(chip)) + "/maps");
      int arenas = 0;
      for (std::string line; std::getline(maps, line);) arenas += line.find("memfd:chipmesh_arena") != std::string::npos;
      CM_REQUIRE(arenas == 1) << "chip " << chip << " maps " << arenas << " arenas";
    }
    std::vector<unsigned char> in(n), out(n, 0);
    for (size_t i = 0; i < n; ++i) in[i] = static_cast<unsigned char>(i * 7 + 1);
    CM_REQUIRE(kill(w.chip_pid(1), SIGSTOP) == 0);
    w.copy_to(1, p, in.data(), n);  // through the ring: a ChipError after 2 s
    w.copy_from(1, out.data(), p, n);
    CM_REQUIRE(out == in) << "round trip through chip 1's arena while it was stopped";
    CM_REQUIRE(kill(w.chip_pid(1), SIGCONT) == 0);
    w.free(1, p);
    w.close();
  }, std::chrono::seconds(90));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
}

// Window addresses: the transport lends each chip's window (window_fd) and
// the Worker copies with one memcpy of its own, without the chip. So even a
// SIGSTOPped chip's window takes a copy at once (through the ring it would
// wait for the chip, then fail at CHIPMESH_STOPPED_CHIP_TIMEOUT_S); the
// chips' kernels see what was copied: an allreduce over two chips of what
// was written into chip 0 while it was stopped.
TEST(WorkerWindowCopies, AreOneMemcpyWithoutTheChip) {
  ScratchDir dir;
  auto outcomes = fork_ranks(1, [&](int) {
    setenv("CHIPMESH_STOPPED_CHIP_TIMEOUT_S", "2", 1);
    knobs::reload();
    const size_t n = (size_t{1} << 20) + 12;  // int32 elements: more than 4 MiB, not a page multiple
    Worker w(comm_config(2, dir.file("rootinfo"), n * 4, {{"x", DataType::INT32, n, n * 4}}));
    w.init();
    const CommDomain& world = w.world();
    const uint64_t x0 = world.context(0).buffer_ptrs.at("x"), x1 = world.context(1).buffer_ptrs.at("x");
    std::vector<int32_t> in(n), out(n, 0);
    for (size_t i = 0; i < n; ++i) in[i] = static_cast<int32_t>(i * 3 + 1);
    CM_REQUIRE(kill(w.chip_pid(0), SIGSTOP) == 0);
    w.copy_to(0, x0 + 4, in.data() + 1, (n - 1) * 4);  // unaligned start, to the end of the window
    w.copy_to(0, x0, in.data(), 4);
    w.copy_from(0, out.data(), x0, n * 4);
    CM_REQUIRE(out == in) << "round trip through chip 0's window while it was stopped";
    CM_REQUIRE(kill(w.chip_pid(0), SIGCONT) == 0);
    w.run([&](Orchestrator& o) { o.allreduce(world, "x", "x", n, DataType::INT32, ReduceOp::SUM); });
    std::fill(out.begin(), out.end(), 0);
    w.copy_from(1, out.data(), x1, n * 4);
    CM_REQUIRE(out == in) << "chip 1's allreduce result (its window held zeros)";
    w.close();
  }, std::chrono::seconds(90));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  EXPECT_TRUE(dir.entries().empty());
}

// The same for a domain's windows, while the domain lives: after release
// the address is no window any more, and a copy to it fails on the chip.
TEST(WorkerWindowCopies, DomainWindowsTooUntilReleased) {
  auto outcomes = fork_ranks(1, [&](int) {
    setenv("CHIPMESH_STOPPED_CHIP_TIMEOUT_S", "2", 1);
    knobs::reload();
    WorkerConfig cfg;
    cfg.device_ids = {0, 1, 2};
    Worker w(cfg);
    w.init();
    const size_t n = 100000;
    std::vector<int32_t> in(n), out(n, 0);
    for (size_t i = 0; i < n; ++i) in[i] = static_cast<int32_t>(i ^ 0x55);
    uint64_t y1 = 0;
    w.run([&](Orchestrator& o) {
      CommDomain d = o.allocate_domain("pair", {2, 1}, n * 4, {{"y", DataType::INT32, n, n * 4}});
      y1 = d.context(1).buffer_ptrs.at("y");
      CM_REQUIRE(kill(w.chip_pid(1), SIGSTOP) == 0);
      w.copy_to(1, y1, in.data(), n * 4);
      CM_REQUIRE(kill(w.chip_pid(1), SIGCONT) == 0);
      o.allreduce(d, "y", "y", n, DataType::INT32, ReduceOp::SUM);
      o.wait();
      w.copy_from(2, out.data(), d.context(2).buffer_ptrs.at("y"), n * 4);
      CM_REQUIRE(out == in) << "chip 2's allreduce result (its window held zeros)";
      o.release_domain(d);
    });
    const std::string msg = chip_error_of([&] { w.copy_to(1, y1, in.data(), 64); });
    CM_REQUIRE(msg.find("chip 1 (device 1") != std::string::npos && msg.find("DeviceError") != std::string::npos)
        << msg;
    w.close();
  }, std::chrono::seconds(90));
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
}

// A window lives in /dev/shm, which can fill up after bring-up: the parent
// populates a range of its view before its first copy there (for reading
// or for writing), so a copy_from or copy_to touching a page /dev/shm can
// no longer give fails as a call (ChipError: the chip takes the copy over
// through the ring and dies of it), never as a SIGBUS of the user's
// process; a page had before still copies. In a private mount namespace
// with a small tmpfs over /dev/shm (root only; skipped elsewhere).
TEST(WorkerWindowCopies, AFullDevShmFailsTheCopyNotTheUsersProcess) {
  auto outcomes = fork_ranks(1, [&](int) {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=8m") != 0) {
      rank_note(std::string("skip: no private tmpfs over /dev/shm here (") + std::strerror(errno) + ")");
      return;
    }
    const size_t n = size_t{2} << 20;
    std::vector<unsigned char> in = random_bytes(n, 7), out(n, 0);
    std::string notes;
    for (const bool reading : {true, false}) {
      Worker w(comm_config(1, "", n, {{"x", DataType::UINT8, n, n}}));
      w.init();
      const uint64_t x = w.world().context(0).buffer_ptrs.at("x");
      w.copy_to(0, x, in.data(), 4096);  // the first page is had from here on
      // Fill what is left of /dev/shm.
      const std::string filler = "/dev/shm/chipmesh_test_filler_" + std::to_string(getpid());
      const int fd = open(filler.c_str(), O_CREAT | O_WRONLY, 0600);
      CM_REQUIRE(fd >= 0) << std::strerror(errno);
      std::vector<char> block(65536, 1);
      for (size_t len : {size_t{65536}, size_t{4096}})
        while (write(fd, block.data(), len) > 0) {
        }
      close(fd);
      struct statvfs st{};
      CM_REQUIRE(statvfs("/dev/shm", &st) == 0 && st.f_bavail == 0) << "/dev/shm is not full";
      // The page had before: as ever.
      w.copy_to(0, x, in.data() + 4096, 4096);
      w.copy_from(0, out.data(), x, 4096);
      CM_REQUIRE(std::equal(out.begin(), out.begin() + 4096, in.begin() + 4096)) << "the page had before";
      std::string msg;
      try {
        if (reading)
          w.copy_from(0, out.data(), x, n);  // pages the chip never wrote: none in the file yet
        else
          w.copy_to(0, x, in.data(), n);
      } catch (const ChipError& e) {
        msg = e.what();
      }
      CM_REQUIRE(msg.find("chip 0") != std::string::npos)
          << (reading ? "copy_from" : "copy_to") << ": expected a ChipError naming chip 0, got: '" << msg << "'";
      notes += std::string(reading ? "copy_from: " : "; copy_to: ") + msg;
      unlink(filler.c_str());
      w.close();
      const auto left = chipmesh_shm_objects();  // this namespace's /dev/shm
      CM_REQUIRE(left.empty()) << left.size() << " chipmesh objects left, the first " << left.front();
    }
    rank_note(notes);
  }, std::chrono::seconds(90));
  if (outcomes[0].ok() && outcomes[0].message.rfind("skip:", 0) == 0) GTEST_SKIP() << outcomes[0].message;
  ASSERT_TRUE(all_ok(outcomes)) << outcomes[0].describe();
  RecordProperty("copy_errors", outcomes[0].message);
}

// A plugin built before the optional device-table members: the loader
// reads them as absent (never the bytes past its struct_size), the Worker
// offers no arena and every copy takes the ring.
TEST(WorkerCopiesOldPlugin, TakeTheRing) {
  WorkerConfig cfg;
  cfg.platform = kLibDir + "/libchipmesh_platform_oldtable.so";
  cfg.device_ids = {0};
  Worker w(cfg);
  w.init();
  const size_t n = kChunk + 5;
  const uint64_t p = w.malloc(0, n);
  EXPECT_FALSE(in_arena_mapping(w.chip_pid(0), p));
  const auto in = random_bytes(n, 9);
  std::vector<unsigned char> out(n, 0);
  w.copy_to(0, p, in.data(), n);
  w.copy_from(0, out.data(), p, n);
  EXPECT_TRUE(in == out);
  w.free(0, p);
}

// load_from_host staging of sizes that are not a page multiple, 1 byte and
// 0 bytes, read back through copy_from (windows are outside the arena: the
// ring path).
TEST(WorkerStaging, LoadsZeroOneAndNonPageSizes) {
  ScratchDir scratch;
  const size_t sizes[] = {0, 1, 4095, 4097, kChunk + 3};
  std::vector<ChipBufferSpec> buffers;
  size_t total = 0;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    buffers.push_back({"in" + std::to_string(i), DataType::UINT8, sizes[i], sizes[i], "window", true, false});
    total += sizes[i];
  }
  WorkerConfig cfg = comm_config(1, scratch.file("rootinfo"), total, buffers);
  std::vector<SharedMemory> inputs;
  std::vector<std::vector<unsigned char>> data;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    const std::string name = "/chipmesh_test_in_" + std::to_string(getpid()) + "_" + std::to_string(i);
    inputs.push_back(SharedMemory::create(name, sizes[i]));
    data.push_back(random_bytes(sizes[i], static_cast<unsigned>(i)));
    if (sizes[i]) std::memcpy(inputs.back().data(), data.back().data(), sizes[i]);
    cfg.chip_bootstrap_configs[0].host_inputs.push_back({buffers[i].name, name, sizes[i]});
  }
  Worker w(cfg);
  try {
    w.init();
  } catch (...) {
    for (auto& s : inputs) s.unlink();
    throw;
  }
  for (auto& s : inputs) s.unlink();
  for (size_t i = 0; i < std::size(sizes); ++i) {
    std::vector<unsigned char> out(sizes[i], 0);
    w.copy_from(0, out.data(), w.chip_contexts()[0].buffer_ptrs.at(buffers[i].name), sizes[i]);
    EXPECT_TRUE(out == data[i]) << sizes[i] << " bytes";
  }
}


// Bring-up's copy of an input from the caller's own object and the flush of
// a store_to_host buffer are one platform copy each, streamed once they
// outgrow the cache (copy_bulk). Sizes past the largest threshold (64 MiB of
// reads and writes), off a cache line in the window (buffers are carved back
// to back after a 3-byte one), come back exact, and the bytes around them
// are untouched.
TEST(WorkerStaging, InputsAndOutputsPastTheCacheComeBackExact) {
  ScratchDir scratch;
  const size_t big = (size_t{40} << 20) + 5;
  const std::vector<ChipBufferSpec> buffers = {{"pad", DataType::UINT8, 3, 3, "window", false, false},
                                               {"in", DataType::UINT8, big, big, "window", true, false},
                                               {"out", DataType::UINT8, big, big, "window", false, true},
                                               {"tail", DataType::UINT8, 3, 3, "window", false, false}};
  WorkerConfig cfg = comm_config(1, scratch.file("rootinfo"), 6 + 2 * big, buffers);
  const std::string name = "/chipmesh_test_big_in_" + std::to_string(getpid());
  SharedMemory input = SharedMemory::create(name, big);
  const auto data = random_bytes(big, 21);
  std::memcpy(input.data(), data.data(), big);
  cfg.chip_bootstrap_configs[0].host_inputs.push_back({"in", name, big});
  Worker w(cfg);
  SharedMemory& staged_out = w.stage_output(0, "out", big);
  std::memset(staged_out.data(), 0xee, big);
  try {
    w.init();
  } catch (...) {
    input.unlink();
    throw;
  }
  input.unlink();
  const auto& ptrs = w.chip_contexts()[0].buffer_ptrs;
  std::vector<unsigned char> got(big, 0);
  w.copy_from(0, got.data(), ptrs.at("in"), big);
  EXPECT_TRUE(got == data) << "the input staged at bring-up";

  const auto result = random_bytes(big, 22);
  const unsigned char marks[3] = {0x5a, 0x5b, 0x5c};
  w.copy_to(0, ptrs.at("pad"), marks, 3);
  w.copy_to(0, ptrs.at("tail"), marks, 3);
  w.copy_to(0, ptrs.at("out"), result.data(), big);
  w.run([&](Orchestrator& o) { o.flush_outputs({0}); });
  EXPECT_EQ(std::memcmp(staged_out.data(), result.data(), big), 0) << "the flushed output";
  unsigned char around[3];
  for (const char* b : {"pad", "tail"}) {
    w.copy_from(0, around, ptrs.at(b), 3);
    EXPECT_EQ(std::memcmp(around, marks, 3), 0) << "buffer '" << b << "' next to the large ones";
  }
  w.close();
}

// Chips flushing together copy with plain stores where they and the parent
// outnumber the CPUs (ChipWorker::store_to_host(n); 3 chips on 2 CPUs), a
// chip flushing alone through the platform's copy (streamed from 1 MiB):
// each way every byte of every output comes back, off a cache line and not
// a page multiple, and no other chip's staging changes. Through
// flush_outputs and through tasks' own flushes.
TEST(WorkerStaging, ChipsFlushingTogetherOrAloneBringEveryByte) {
  ScratchDir scratch;
  const int n = 3;
  const size_t big = (size_t{1} << 20) + 5;
  const std::vector<ChipBufferSpec> buffers = {{"pad", DataType::UINT8, 3, 3, "window", false, false},
                                               {"out", DataType::UINT8, big, big, "window", false, true},
                                               {"small", DataType::UINT8, 7, 7, "window", false, true}};
  Worker w(comm_config(n, scratch.file("rootinfo"), 3 + big + 7, buffers));
  std::vector<SharedMemory*> outs, smalls;
  for (int c = 0; c < n; ++c) {
    outs.push_back(&w.stage_output(c, "out", big));
    smalls.push_back(&w.stage_output(c, "small", 7));
  }
  w.init();
  std::vector<std::vector<unsigned char>> out_data(n), small_data(n);
  auto load = [&](int c, unsigned seed) {
    const auto& ptrs = w.chip_contexts()[c].buffer_ptrs;
    out_data[c] = random_bytes(big, seed);
    small_data[c] = random_bytes(7, seed + 100);
    w.copy_to(c, ptrs.at("out"), out_data[c].data(), big);
    w.copy_to(c, ptrs.at("small"), small_data[c].data(), 7);
    std::memset(outs[c]->data(), 0xee, big);
    std::memset(smalls[c]->data(), 0xee, 7);
  };
  auto expect_flushed = [&](const std::string& when) {
    for (int c = 0; c < n; ++c) {
      EXPECT_EQ(std::memcmp(outs[c]->data(), out_data[c].data(), big), 0) << when << ": chip " << c << " 'out'";
      EXPECT_EQ(std::memcmp(smalls[c]->data(), small_data[c].data(), 7), 0) << when << ": chip " << c << " 'small'";
    }
  };
  for (int c = 0; c < n; ++c) load(c, 30 + c);
  w.run([&](Orchestrator& o) { o.flush_outputs({0, 1, 2}); });
  expect_flushed("three chips flushing at once");

  load(1, 40);
  w.run([&](Orchestrator& o) { o.flush_outputs({1}); });
  expect_flushed("chip 1 flushing alone");

  // Each chip's task fills its 'out'; the run's three chips flush after it.
  w.run([&](Orchestrator& o) {
    for (int c = 0; c < n; ++c)
      o.submit(c, task("test_fill", {{w.chip_contexts()[c].buffer_ptrs.at("out"), DataType::UINT8, {big}}},
                       {static_cast<uint64_t>(0x61 + c)}));
  });
  for (int c = 0; c < n; ++c) out_data[c].assign(big, static_cast<unsigned char>(0x61 + c));
  expect_flushed("three tasks flushing after they ran");
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
}

}  // namespace
}  // namespace chipmesh::testing

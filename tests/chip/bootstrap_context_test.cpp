// ChipWorker::bootstrap_context on the sim platform: the six steps, the
// channel, and every failure path publishing "<kind>: <message>".
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/bootstrap_channel.h"
#include "chipmesh/chip_worker.h"
#include "chipmesh/comm.h"
#include "chipmesh/errors.h"
#include "chipmesh/shared_memory.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"

namespace chipmesh {
namespace {

using testing::all_ok;
using testing::fork_ranks;
using testing::rank_note;
using namespace std::chrono_literals;

// One 4096-byte mailbox per rank, shared with forked children.
class Mailboxes {
 public:
  explicit Mailboxes(int n) : n_(n) {
    base_ = mmap(nullptr, n * CHIP_BOOTSTRAP_MAILBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) throw std::runtime_error("mmap");
  }
  ~Mailboxes() { munmap(base_, n_ * CHIP_BOOTSTRAP_MAILBOX_SIZE); }
  ChipBootstrapChannel channel(int r) {
    return ChipBootstrapChannel(static_cast<char*>(base_) + r * CHIP_BOOTSTRAP_MAILBOX_SIZE, CHIP_BOOTSTRAP_MAX_BUFFERS);
  }

 private:
  int n_;
  void* base_;
};

class BootstrapContext : public ::testing::Test {
 protected:
  testing::ScratchDir scratch;
  std::string path = scratch.file("rootinfo");
  std::vector<std::string> staged;  // shm names to unlink at the end
  const pid_t parent = getpid();     // names are made in children too

  void TearDown() override {
    for (const auto& name : staged) {
      SharedMemory s;
      try {
        s = SharedMemory::attach(name);
        s.unlink();
      } catch (const Error&) {
      }
    }
    EXPECT_TRUE(scratch.entries().empty()) << "rootinfo left behind";
  }

  ChipBootstrapConfig config(int rank, int nranks, size_t window) {
    ChipBootstrapConfig cfg;
    cfg.comm = ChipCommBootstrapConfig{rank, nranks, path, window};
    return cfg;
  }

  // Parent-side staging filled with random bytes; returns the bytes.
  std::vector<uint8_t> stage(const std::string& name, size_t size, uint32_t seed) {
    SharedMemory shm = SharedMemory::create(name, size);
    staged.push_back(name);
    std::vector<uint8_t> bytes(size);
    std::mt19937 gen(seed);
    for (auto& b : bytes) b = static_cast<uint8_t>(gen());
    if (size) std::memcpy(shm.data(), bytes.data(), size);
    return bytes;
  }

  std::string staging_name(const char* what, int rank) {
    return "/chipmesh_test_" + std::string(what) + "_" + std::to_string(parent) + "_" + std::to_string(rank);
  }
};

TEST_F(BootstrapContext, TwoRankHappyPath) {
  auto outcomes = fork_ranks(2, [&](int rank) {
    ChipWorker w;
    w.init("sim");
    auto cfg = config(rank, 2, 10000);
    cfg.buffers.push_back({"x", DataType::FLOAT32, 16, 64});
    ChipBootstrapResult res = w.bootstrap_context(rank, cfg);
    CM_REQUIRE(res.local_window_base != 0);
    CM_REQUIRE(res.actual_window_size >= 10000) << res.actual_window_size;
    CM_REQUIRE(res.buffer_ptrs == std::vector<uint64_t>{res.local_window_base});
    auto* ctx = reinterpret_cast<const CommContext*>(res.device_ctx);
    CM_REQUIRE(ctx->rankId == static_cast<uint32_t>(rank) && ctx->rankNum == 2);
    CM_REQUIRE(ctx->windowsIn[rank] == res.local_window_base);
    CM_REQUIRE(w.bootstrap_comm() != 0);
    w.comm_barrier(w.bootstrap_comm());
    w.shutdown_bootstrap();
    w.finalize();
  }, 60s);
  EXPECT_TRUE(all_ok(outcomes));
}

TEST_F(BootstrapContext, ThreeBuffersCarvedSequentiallyInDeclarationOrder) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 100);
  cfg.buffers.push_back({"a", DataType::INT8, 3, 3});
  cfg.buffers.push_back({"b", DataType::FLOAT32, 10, 40});
  cfg.buffers.push_back({"c", DataType::INT64, 2, 16});
  ChipBootstrapResult res = w.bootstrap_context(0, cfg);
  const uint64_t base = res.local_window_base;
  EXPECT_EQ(res.actual_window_size, static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(res.buffer_ptrs, (std::vector<uint64_t>{base, base + 3, base + 43}));
  w.shutdown_bootstrap();
  w.finalize();
}

class LoadFromHost : public BootstrapContext, public ::testing::WithParamInterface<size_t> {};

TEST_P(LoadFromHost, RoundTripThroughTheWindow) {
  const size_t nbytes = GetParam();
  std::vector<std::vector<uint8_t>> expected;
  for (int r = 0; r < 2; ++r) expected.push_back(stage(staging_name("in", r), nbytes, 1000 + r));
  auto outcomes = fork_ranks(2, [&](int rank) {
    ChipWorker w;
    w.init("sim");
    auto cfg = config(rank, 2, nbytes + 4096);
    cfg.buffers.push_back({"pad", DataType::UINT8, 100, 100});  // input starts at an odd offset
    cfg.buffers.push_back({"in", DataType::UINT8, nbytes, nbytes, "window", true});
    cfg.host_inputs.push_back({"in", staging_name("in", rank), nbytes});
    ChipBootstrapResult res = w.bootstrap_context(rank, cfg);
    std::vector<uint8_t> back(nbytes);
    w.copy_from(back.data(), res.buffer_ptrs[1], nbytes);
    CM_REQUIRE(back == expected[rank]) << "rank " << rank << " read back different bytes";
    w.shutdown_bootstrap();
    w.finalize();
  }, 120s);
  EXPECT_TRUE(all_ok(outcomes));
  // The child detaches and never unlinks: the parent's staging is still there.
  for (int r = 0; r < 2; ++r) EXPECT_NO_THROW(SharedMemory::attach(staging_name("in", r)));
}

INSTANTIATE_TEST_SUITE_P(Sizes, LoadFromHost, ::testing::Values(size_t{64}, size_t{64} << 20),
                         [](const auto& info) { return std::to_string(info.param) + "bytes"; });

// store_to_host is not only for the Worker: a ChipWorker user flushes with
// store_to_host() and the parent's staging holds the device bytes; so does
// store_to_host(n) with more processes than CPUs (plain stores, not the
// platform's copy).
TEST_F(BootstrapContext, StoreToHostFlushesOutputsForAChipWorkerUser) {
  const size_t nbytes = 3 * 4096 + 5;  // not a multiple of the page
  for (int r = 0; r < 2; ++r) stage(staging_name("out", r), nbytes, 0);
  auto outcomes = fork_ranks(2, [&](int rank) {
    ChipWorker w;
    w.init("sim");
    auto cfg = config(rank, 2, 2 * nbytes);
    cfg.buffers.push_back({"pad", DataType::UINT8, 3, 3});
    cfg.buffers.push_back({"out", DataType::UINT8, nbytes, nbytes, "window", false, true});
    cfg.host_outputs.push_back({"out", staging_name("out", rank), nbytes});
    ChipBootstrapResult res = w.bootstrap_context(rank, cfg);
    std::vector<uint8_t> bytes(nbytes);
    for (size_t i = 0; i < nbytes; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + rank);
    w.copy_to(res.buffer_ptrs[1], bytes.data(), nbytes);
    w.store_to_host();
    SharedMemory staging = SharedMemory::attach(staging_name("out", rank));
    auto staged = [&] {
      const auto* p = static_cast<const uint8_t*>(staging.data());
      return std::vector<uint8_t>(p, p + nbytes);
    };
    CM_REQUIRE(staged() == bytes) << "rank " << rank << ": store_to_host()";
    std::vector<uint8_t> other(nbytes);
    for (size_t i = 0; i < nbytes; ++i) other[i] = static_cast<uint8_t>(i * 5 + 1);
    w.copy_to(res.buffer_ptrs[1], other.data(), nbytes);
    w.store_to_host(64);  // 65 processes: more than the CPUs here
    CM_REQUIRE(staged() == other) << "rank " << rank << ": store_to_host(64)";
    w.copy_to(res.buffer_ptrs[1], bytes.data(), nbytes);
    w.store_to_host(64);
    w.shutdown_bootstrap();
    w.store_to_host();  // after shutdown: nothing mapped, a no-op
    w.finalize();
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (int r = 0; r < 2; ++r) {
    SharedMemory out = SharedMemory::attach(staging_name("out", r));
    const auto* p = static_cast<const uint8_t*>(out.data());
    size_t wrong = 0;
    for (size_t i = 0; i < nbytes; ++i) wrong += p[i] != static_cast<uint8_t>(i * 7 + r);
    EXPECT_EQ(wrong, 0u) << "rank " << r;
  }
}

TEST_F(BootstrapContext, ChannelCarriesTheResultToTheParent) {
  Mailboxes boxes(2);
  for (int r = 0; r < 2; ++r) boxes.channel(r).reset();
  auto outcomes = fork_ranks(2, [&](int rank) {
    ChipWorker w;
    w.init("sim");
    auto cfg = config(rank, 2, 8192);
    cfg.buffers.push_back({"x", DataType::INT32, 4, 16});
    cfg.buffers.push_back({"y", DataType::INT32, 4, 16});
    auto channel = boxes.channel(rank);
    ChipBootstrapResult res = w.bootstrap_context(rank, cfg, &channel);
    char note[256];
    std::snprintf(note, sizeof(note), "%" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64, res.device_ctx,
                  res.local_window_base, res.actual_window_size, res.buffer_ptrs[0], res.buffer_ptrs[1]);
    rank_note(note);
    w.shutdown_bootstrap();
    w.finalize();
  }, 60s);
  ASSERT_TRUE(all_ok(outcomes));
  for (int r = 0; r < 2; ++r) {
    auto ch = boxes.channel(r);
    ASSERT_EQ(ch.state(), ChipBootstrapMailboxState::SUCCESS);
    EXPECT_EQ(ch.error_code(), 0);
    uint64_t v[5];
    ASSERT_EQ(std::sscanf(outcomes[r].message.c_str(), "%" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64,
                          &v[0], &v[1], &v[2], &v[3], &v[4]), 5);
    EXPECT_EQ(ch.device_ctx(), v[0]);
    EXPECT_EQ(ch.local_window_base(), v[1]);
    EXPECT_EQ(ch.actual_window_size(), v[2]);
    EXPECT_EQ(ch.buffer_ptrs(), (std::vector<uint64_t>{v[3], v[4]}));
  }
}

// Runs a failing bootstrap with a channel; returns the published message.
template <typename E>
std::string expect_published_failure(ChipWorker& w, const ChipBootstrapConfig& cfg) {
  alignas(64) static unsigned char box[CHIP_BOOTSTRAP_MAILBOX_SIZE];
  ChipBootstrapChannel channel(box, CHIP_BOOTSTRAP_MAX_BUFFERS);
  channel.reset();
  std::string thrown;
  try {
    w.bootstrap_context(0, cfg, &channel);
    ADD_FAILURE() << "bootstrap_context succeeded";
  } catch (const E& e) {
    thrown = describe(e);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
  EXPECT_EQ(channel.state(), ChipBootstrapMailboxState::ERROR);
  EXPECT_EQ(channel.error_code(), 1);
  EXPECT_EQ(channel.error_message(), thrown);
  EXPECT_EQ(w.bootstrap_comm(), 0u);
  return channel.error_message();
}

TEST_F(BootstrapContext, MissingOutputStagingFailsTheBringUpNotTheFlush) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  cfg.buffers.push_back({"out", DataType::UINT8, 64, 64, "window", false, true});
  cfg.host_outputs.push_back({"out", staging_name("nonexistent_out", 0), 64});
  std::string message = expect_published_failure<Error>(w, cfg);
  EXPECT_NE(message.find("nonexistent_out"), std::string::npos) << message;
  w.finalize();
}

TEST_F(BootstrapContext, BogusPlacementFailsBeforeAnyDeviceEffect) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  cfg.buffers.push_back({"x", DataType::FLOAT32, 4, 16, "bogus"});
  std::string msg = expect_published_failure<ConfigError>(w, cfg);
  EXPECT_EQ(msg.rfind("ConfigError: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("bogus"), std::string::npos) << msg;
  EXPECT_THROW(w.malloc(8), DeviceError) << "the device was set although validation failed";
}

TEST_F(BootstrapContext, OverflowOfTheActualWindowIsRejected) {
  ChipWorker w;
  w.init("sim");
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // Larger than the request but within the rounded window: fits.
  auto fits = config(0, 1, 100);
  fits.buffers.push_back({"x", DataType::UINT8, page, page});
  EXPECT_NO_THROW(w.bootstrap_context(0, fits));
  w.shutdown_bootstrap();
  // One byte more than the actual window: refused, communicator released.
  auto over = config(0, 1, 100);
  over.buffers.push_back({"x", DataType::UINT8, page - 10, page - 10});
  over.buffers.push_back({"y", DataType::UINT8, 11, 11});
  std::string msg = expect_published_failure<ConfigError>(w, over);
  EXPECT_NE(msg.find("buffer 'y' (nbytes=11) at offset " + std::to_string(page - 10) + " overflows window size " +
                     std::to_string(page)),
            std::string::npos)
      << msg;
  w.finalize();
}

TEST_F(BootstrapContext, StagingSizeMismatchIsAConfigError) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  cfg.buffers.push_back({"x", DataType::FLOAT32, 16, 64, "window", true});
  cfg.host_inputs.push_back({"x", staging_name("x", 0), 32});
  std::string msg = expect_published_failure<ConfigError>(w, cfg);
  EXPECT_NE(msg.find("nbytes=64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("size 32"), std::string::npos) << msg;
}

TEST_F(BootstrapContext, MissingStagingIsAConfigError) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  cfg.buffers.push_back({"x", DataType::FLOAT32, 16, 64, "window", true});
  std::string msg = expect_published_failure<ConfigError>(w, cfg);
  EXPECT_NE(msg.find("no host input staging for buffer 'x'"), std::string::npos) << msg;

  auto out = config(0, 1, 4096);
  out.buffers.push_back({"y", DataType::FLOAT32, 16, 64, "window", false, true});
  msg = expect_published_failure<ConfigError>(w, out);
  EXPECT_NE(msg.find("no host output staging for buffer 'y'"), std::string::npos) << msg;
}

TEST_F(BootstrapContext, StagingObjectThatDoesNotExistIsADeviceError) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  cfg.buffers.push_back({"x", DataType::FLOAT32, 16, 64, "window", true});
  cfg.host_inputs.push_back({"x", staging_name("never_created", 0), 64});
  std::string msg = expect_published_failure<DeviceError>(w, cfg);
  EXPECT_EQ(msg.rfind("DeviceError: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(staging_name("never_created", 0)), std::string::npos) << msg;
  w.finalize();
}

TEST_F(BootstrapContext, BuffersWithoutCommAreAConfigError) {
  ChipWorker w;
  w.init("sim");
  ChipBootstrapConfig cfg;
  cfg.buffers.push_back({"x", DataType::FLOAT32, 16, 64});
  std::string msg = expect_published_failure<ConfigError>(w, cfg);
  EXPECT_NE(msg.find("no comm"), std::string::npos) << msg;
}

TEST_F(BootstrapContext, CommlessConfigSetsTheDeviceOnly) {
  ChipWorker w;
  w.init("sim");
  alignas(64) static unsigned char box[CHIP_BOOTSTRAP_MAILBOX_SIZE];
  ChipBootstrapChannel channel(box, 8);
  channel.reset();
  ChipBootstrapResult res = w.bootstrap_context(5, ChipBootstrapConfig{}, &channel);
  EXPECT_EQ(res.device_ctx, 0u);
  EXPECT_EQ(res.local_window_base, 0u);
  EXPECT_EQ(res.actual_window_size, 0u);
  EXPECT_TRUE(res.buffer_ptrs.empty());
  EXPECT_EQ(channel.state(), ChipBootstrapMailboxState::SUCCESS);
  EXPECT_TRUE(channel.buffer_ptrs().empty());
  uint64_t p = w.malloc(8);  // the device is set
  w.free(p);
  EXPECT_NO_THROW(w.shutdown_bootstrap());  // nothing to destroy
  w.finalize();
}

TEST_F(BootstrapContext, ShutdownBootstrapTwiceIsANoOp) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  w.bootstrap_context(0, cfg);
  ASSERT_NE(w.bootstrap_comm(), 0u);
  w.shutdown_bootstrap();
  EXPECT_EQ(w.bootstrap_comm(), 0u);
  EXPECT_NO_THROW(w.shutdown_bootstrap());
  // A new bring-up works after the teardown.
  w.bootstrap_context(0, cfg);
  w.shutdown_bootstrap();
  w.finalize();
}

TEST_F(BootstrapContext, SecondBootstrapWithoutShutdownIsRefused) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  w.bootstrap_context(0, cfg);
  const uint64_t first = w.bootstrap_comm();
  try {
    w.bootstrap_context(0, cfg);
    ADD_FAILURE() << "second bootstrap accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("already bootstrapped"), std::string::npos) << e.what();
  }
  EXPECT_EQ(w.bootstrap_comm(), first) << "the refused call must not touch the first communicator";
  w.shutdown_bootstrap();
  w.finalize();
}

TEST_F(BootstrapContext, ShutdownBootstrapIsIdempotentWhenTheDestroyFails) {
  ChipWorker w;
  w.init(std::string(CHIPMESH_TEST_LIB_DIR) + "/libchipmesh_platform_faulty.so");
  w.bootstrap_context(0, config(0, 1, 4096));
  void* lib = dlopen((std::string(CHIPMESH_TEST_LIB_DIR) + "/libchipmesh_platform_faulty.so").c_str(), RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(lib, nullptr);
  auto calls = reinterpret_cast<int (*)()>(dlsym(lib, "faulty_destroy_calls"));
  ASSERT_NE(calls, nullptr);
  try {
    w.shutdown_bootstrap();
    ADD_FAILURE() << "the failing destroy was not reported";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("failed on purpose"), std::string::npos) << e.what();
  }
  EXPECT_EQ(w.bootstrap_comm(), 0u);
  EXPECT_NO_THROW(w.shutdown_bootstrap());
  EXPECT_EQ(calls(), 1) << "a second shutdown retried the destroy";
  dlclose(lib);
}

TEST_F(BootstrapContext, BootstrapBeforeInitPublishesADeviceError) {
  ChipWorker w;
  std::string msg = expect_published_failure<DeviceError>(w, ChipBootstrapConfig{});
  EXPECT_NE(msg.find("call init first"), std::string::npos) << msg;
}

TEST_F(BootstrapContext, TooManyBuffersForTheChannelAreRefusedUpFront) {
  ChipWorker w;
  w.init("sim");
  alignas(64) static unsigned char box[CHIP_BOOTSTRAP_MAILBOX_SIZE];
  ChipBootstrapChannel channel(box, 2);
  channel.reset();
  auto cfg = config(0, 1, 4096);
  for (int i = 0; i < 3; ++i) cfg.buffers.push_back({"b" + std::to_string(i), DataType::INT8, 1, 1});
  EXPECT_THROW(w.bootstrap_context(0, cfg, &channel), ConfigError);
  EXPECT_EQ(channel.state(), ChipBootstrapMailboxState::ERROR);
  EXPECT_NE(channel.error_message().find("capacity of 2"), std::string::npos) << channel.error_message();
}

TEST_F(BootstrapContext, ZeroSizeInputIsANoOp) {
  ChipWorker w;
  w.init("sim");
  auto cfg = config(0, 1, 4096);
  cfg.buffers.push_back({"empty", DataType::FLOAT32, 0, 0, "window", true});
  cfg.host_inputs.push_back({"empty", "", 0});
  ChipBootstrapResult res = w.bootstrap_context(0, cfg);
  EXPECT_EQ(res.buffer_ptrs.size(), 1u);
  w.shutdown_bootstrap();
  w.finalize();
}

}  // namespace
}  // namespace chipmesh

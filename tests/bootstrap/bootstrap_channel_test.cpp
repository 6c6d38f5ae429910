// ChipBootstrapChannel: layout, bounds, ordering and waking, in one process
// and across fork (the mailbox is a MAP_SHARED page, as in the Worker).
#include "chipmesh/bootstrap_channel.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "support/fork_ranks.h"

namespace chipmesh {
namespace {

using State = ChipBootstrapMailboxState;
using std::chrono::milliseconds;
using testing_clock = std::chrono::steady_clock;
namespace cmt = chipmesh::testing;

// A zeroed MAP_SHARED page followed by a PROT_NONE guard page, so a read past
// the mailbox faults instead of silently reading a neighbour.
class SharedPage {
 public:
  SharedPage() {
    void* p = mmap(nullptr, 2 * CHIP_BOOTSTRAP_MAILBOX_SIZE, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("SharedPage: mmap failed");
    base_ = static_cast<unsigned char*>(p);
    if (mprotect(base_ + CHIP_BOOTSTRAP_MAILBOX_SIZE, CHIP_BOOTSTRAP_MAILBOX_SIZE, PROT_NONE) != 0)
      throw std::runtime_error("SharedPage: mprotect failed");
  }
  ~SharedPage() { munmap(base_, 2 * CHIP_BOOTSTRAP_MAILBOX_SIZE); }
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;

  unsigned char* bytes() { return base_; }
  template <typename T>
  T raw(size_t offset) const {
    T v;
    std::memcpy(&v, base_ + offset, sizeof(T));
    return v;
  }
  template <typename T>
  void poke(size_t offset, T v) {
    std::memcpy(base_ + offset, &v, sizeof(T));
  }
  bool all_zero() const {
    for (size_t i = 0; i < CHIP_BOOTSTRAP_MAILBOX_SIZE; ++i)
      if (base_[i] != 0) return false;
    return true;
  }

 private:
  unsigned char* base_ = nullptr;
};

// One forked writer run through fork_ranks on a helper thread, so this
// thread stays free to observe the mailbox while the child writes.
class BackgroundChild {
 public:
  explicit BackgroundChild(std::function<void()> body, milliseconds deadline = milliseconds(20000))
      : thread_([this, body = std::move(body), deadline] {
          try {
            outcomes_ = cmt::fork_ranks(1, [&](int) { body(); }, deadline);
          } catch (const std::exception& e) {
            error_ = e.what();
          }
        }) {}
  ~BackgroundChild() {
    if (thread_.joinable()) thread_.join();
  }
  ::testing::AssertionResult join() {
    thread_.join();
    if (!error_.empty()) return ::testing::AssertionFailure() << "fork_ranks: " << error_;
    return cmt::all_ok(outcomes_);
  }

 private:
  std::vector<cmt::RankOutcome> outcomes_;
  std::string error_;
  std::thread thread_;  // last: starts after the members it writes exist
};

std::vector<uint64_t> pattern(size_t n, uint64_t seed) {
  std::vector<uint64_t> v(n);
  for (size_t j = 0; j < n; ++j) v[j] = (seed << 20) ^ (0x9e3779b97f4a7c15ULL * (j + 1));
  return v;
}

TEST(BootstrapChannel, FreshZeroedRegionReadsIdle) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  EXPECT_EQ(ch.state(), State::IDLE);
  EXPECT_EQ(ch.error_code(), 0);
  EXPECT_EQ(ch.device_ctx(), 0u);
  EXPECT_EQ(ch.local_window_base(), 0u);
  EXPECT_EQ(ch.actual_window_size(), 0u);
  EXPECT_TRUE(ch.buffer_ptrs().empty());
  EXPECT_EQ(ch.error_message(), "");
  EXPECT_EQ(ch.max_buffer_count(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  EXPECT_EQ(ch.mailbox(), page.bytes());
}

TEST(BootstrapChannel, SuccessFieldsRoundTripWithFullCapacity) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  auto ptrs = pattern(CHIP_BOOTSTRAP_MAX_BUFFERS, 3);
  ch.write_success(0xdeadbeefcafef00dULL, 0x7f0000001000ULL, 1ULL << 33, ptrs);
  EXPECT_EQ(ch.state(), State::SUCCESS);
  EXPECT_EQ(ch.error_code(), 0);
  EXPECT_EQ(ch.device_ctx(), 0xdeadbeefcafef00dULL);
  EXPECT_EQ(ch.local_window_base(), 0x7f0000001000ULL);
  EXPECT_EQ(ch.actual_window_size(), 1ULL << 33);
  EXPECT_EQ(ch.buffer_ptrs(), ptrs);
  EXPECT_EQ(ch.error_message(), "");
}

TEST(BootstrapChannel, SuccessWithNoBuffers) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ch.write_success(1, 2, 3, {});
  EXPECT_EQ(ch.state(), State::SUCCESS);
  EXPECT_TRUE(ch.buffer_ptrs().empty());
}

TEST(BootstrapChannel, TimingsTravelWithSuccessAndAreClearedByError) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ch.write_success(1, 2, 3, {4}, BootstrapTimings{1.5, 2.25, 3.125});
  BootstrapTimings t = ch.timings();
  EXPECT_EQ(t.comm_init_ms, 1.5);
  EXPECT_EQ(t.windows_ms, 2.25);
  EXPECT_EQ(t.staging_ms, 3.125);
  double raw = 0;
  std::memcpy(&raw, page.bytes() + CHIP_BOOTSTRAP_TIMINGS_OFFSET + 8, sizeof(raw));
  EXPECT_EQ(raw, 2.25) << "windows_ms is the second f64 of the timings";
  ch.write_error(1, "x");
  t = ch.timings();
  EXPECT_EQ(t.comm_init_ms + t.windows_ms + t.staging_ms, 0.0);
  ch.write_success(1, 2, 3, {});  // without timings: zeros
  EXPECT_EQ(ch.timings().staging_ms, 0.0);
}

TEST(BootstrapChannel, ErrorFieldsRoundTrip) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ch.write_error(42, "ConfigError: buffer 'x' does not fit");
  EXPECT_EQ(ch.state(), State::ERROR);
  EXPECT_EQ(ch.error_code(), 42);
  EXPECT_EQ(ch.error_message(), "ConfigError: buffer 'x' does not fit");
  EXPECT_TRUE(ch.buffer_ptrs().empty());
}

TEST(BootstrapChannel, SuccessAfterErrorClearsErrorFields) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ch.write_error(9, "old failure");
  ch.write_success(5, 6, 7, {8, 9});
  EXPECT_EQ(ch.state(), State::SUCCESS);
  EXPECT_EQ(ch.error_code(), 0);
  EXPECT_EQ(ch.error_message(), "");
  EXPECT_EQ(ch.buffer_ptrs(), (std::vector<uint64_t>{8, 9}));
}

TEST(BootstrapChannel, ErrorAfterSuccessClearsSuccessFields) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ch.write_success(5, 6, 7, {8, 9});
  ch.write_error(1, "late failure");
  EXPECT_EQ(ch.state(), State::ERROR);
  EXPECT_EQ(ch.device_ctx(), 0u);
  EXPECT_EQ(ch.local_window_base(), 0u);
  EXPECT_EQ(ch.actual_window_size(), 0u);
  EXPECT_TRUE(ch.buffer_ptrs().empty());
}

TEST(BootstrapChannel, ResetReturnsToIdleAndClearsEverything) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ch.write_success(1, 2, 3, pattern(CHIP_BOOTSTRAP_MAX_BUFFERS, 1));
  ch.reset();
  EXPECT_EQ(ch.state(), State::IDLE);
  EXPECT_TRUE(page.all_zero());
  ch.write_error(5, std::string(2000, 'e'));
  ch.reset();
  EXPECT_EQ(ch.state(), State::IDLE);
  EXPECT_EQ(ch.error_code(), 0);
  EXPECT_EQ(ch.error_message(), "");
  EXPECT_TRUE(page.all_zero());
}

TEST(BootstrapChannel, ConstructorRejectsBadMailboxes) {
  SharedPage page;
  EXPECT_THROW(ChipBootstrapChannel(nullptr, 1), ConfigError);
  EXPECT_THROW(ChipBootstrapChannel(page.bytes() + 4, 1), ConfigError);
  try {
    ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS + 1);
    FAIL() << "max_buffer_count 377 accepted";
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("377"), std::string::npos) << what;
    EXPECT_NE(what.find("376"), std::string::npos) << what;
  }
  EXPECT_NO_THROW(ChipBootstrapChannel(page.bytes(), 0));
}

TEST(BootstrapChannel, TooManyPointersRejectedAndNothingWritten) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  try {
    ch.write_success(1, 2, 3, pattern(CHIP_BOOTSTRAP_MAX_BUFFERS + 1, 4));
    FAIL() << "377 pointers accepted";
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("377"), std::string::npos) << what;
    EXPECT_NE(what.find("376"), std::string::npos) << what;
  }
  EXPECT_EQ(ch.state(), State::IDLE);
  EXPECT_TRUE(page.all_zero());
}

TEST(BootstrapChannel, SmallerCapacityLimitsWriteAndRead) {
  SharedPage page;
  ChipBootstrapChannel small(page.bytes(), 4);
  EXPECT_THROW(small.write_success(1, 2, 3, pattern(5, 1)), ConfigError);
  EXPECT_TRUE(page.all_zero());
  small.write_success(1, 2, 3, pattern(4, 1));
  EXPECT_EQ(small.buffer_ptrs(), pattern(4, 1));

  // A writer with the full capacity publishes 10; the small reader sees 4.
  ChipBootstrapChannel full(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  full.reset();
  full.write_success(1, 2, 3, pattern(10, 2));
  EXPECT_EQ(full.buffer_ptrs().size(), 10u);
  EXPECT_EQ(small.buffer_ptrs(), pattern(4, 2));
}

TEST(BootstrapChannel, LongMessageTruncatedTo1023Bytes) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  std::string msg(2000, '\0');
  for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<char>('a' + i % 26);
  ch.write_error(3, msg);
  EXPECT_EQ(ch.error_message(), msg.substr(0, CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE - 1));
  EXPECT_EQ(page.raw<char>(CHIP_BOOTSTRAP_ERROR_MESSAGE_OFFSET + 1023), '\0');

  // Exactly 1023 bytes fits whole.
  ch.write_error(3, msg.substr(0, 1023));
  EXPECT_EQ(ch.error_message(), msg.substr(0, 1023));
}

TEST(BootstrapChannel, CorruptCountIsClamped) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ChipBootstrapChannel small(page.bytes(), 10);
  ch.write_success(1, 2, 3, pattern(3, 7));
  for (int32_t bad : {-5, -1, INT32_MIN}) {
    page.poke<int32_t>(CHIP_BOOTSTRAP_BUFFER_COUNT_OFFSET, bad);
    EXPECT_TRUE(ch.buffer_ptrs().empty()) << bad;
  }
  for (int32_t bad : {377, 100000, INT32_MAX}) {
    page.poke<int32_t>(CHIP_BOOTSTRAP_BUFFER_COUNT_OFFSET, bad);
    EXPECT_EQ(ch.buffer_ptrs().size(), CHIP_BOOTSTRAP_MAX_BUFFERS) << bad;
    EXPECT_EQ(small.buffer_ptrs().size(), 10u) << bad;
  }
}

TEST(BootstrapChannel, UnterminatedMessageReadsExactly1024Chars) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  ch.write_error(1, "short");
  // The message is the last field of the page and the guard page follows, so
  // a reader that looked for a NUL past 1024 bytes would fault here.
  std::memset(page.bytes() + CHIP_BOOTSTRAP_ERROR_MESSAGE_OFFSET, 'x',
              CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE);
  EXPECT_EQ(ch.error_message(), std::string(CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE, 'x'));
}

TEST(BootstrapChannel, RawLayoutMatchesDocumentedOffsets) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  auto ptrs = pattern(CHIP_BOOTSTRAP_MAX_BUFFERS, 11);
  ch.write_success(0x1111222233334444ULL, 0x5555666677778888ULL, 0x99990000aaaabbbbULL, ptrs);
  EXPECT_EQ(page.raw<int32_t>(CHIP_BOOTSTRAP_STATE_OFFSET), 1);
  EXPECT_EQ(page.raw<int32_t>(CHIP_BOOTSTRAP_ERROR_CODE_OFFSET), 0);
  EXPECT_EQ(page.raw<int32_t>(CHIP_BOOTSTRAP_BUFFER_COUNT_OFFSET), 376);
  EXPECT_EQ(page.raw<uint64_t>(CHIP_BOOTSTRAP_DEVICE_CTX_OFFSET), 0x1111222233334444ULL);
  EXPECT_EQ(page.raw<uint64_t>(CHIP_BOOTSTRAP_LOCAL_WINDOW_BASE_OFFSET), 0x5555666677778888ULL);
  EXPECT_EQ(page.raw<uint64_t>(CHIP_BOOTSTRAP_ACTUAL_WINDOW_SIZE_OFFSET), 0x99990000aaaabbbbULL);
  for (size_t j = 0; j < ptrs.size(); ++j)
    ASSERT_EQ(page.raw<uint64_t>(CHIP_BOOTSTRAP_BUFFER_PTRS_OFFSET + 8 * j), ptrs[j]) << j;
  EXPECT_EQ(page.raw<char>(CHIP_BOOTSTRAP_ERROR_MESSAGE_OFFSET), '\0');

  ch.write_error(-17, "boom");
  EXPECT_EQ(page.raw<int32_t>(CHIP_BOOTSTRAP_STATE_OFFSET), 2);
  EXPECT_EQ(page.raw<int32_t>(CHIP_BOOTSTRAP_ERROR_CODE_OFFSET), -17);
  EXPECT_EQ(page.raw<int32_t>(CHIP_BOOTSTRAP_BUFFER_COUNT_OFFSET), 0);
  EXPECT_EQ(std::memcmp(page.bytes() + CHIP_BOOTSTRAP_ERROR_MESSAGE_OFFSET, "boom", 5), 0);

  // A reader sees what a raw writer (another implementation) put there.
  ch.reset();
  page.poke<int32_t>(CHIP_BOOTSTRAP_BUFFER_COUNT_OFFSET, 2);
  page.poke<uint64_t>(CHIP_BOOTSTRAP_BUFFER_PTRS_OFFSET, 0xabcULL);
  page.poke<uint64_t>(CHIP_BOOTSTRAP_BUFFER_PTRS_OFFSET + 8, 0xdefULL);
  page.poke<uint64_t>(CHIP_BOOTSTRAP_DEVICE_CTX_OFFSET, 77);
  page.poke<int32_t>(CHIP_BOOTSTRAP_STATE_OFFSET, 1);
  EXPECT_EQ(ch.state(), State::SUCCESS);
  EXPECT_EQ(ch.device_ctx(), 77u);
  EXPECT_EQ(ch.buffer_ptrs(), (std::vector<uint64_t>{0xabc, 0xdef}));
}

TEST(BootstrapChannel, ChildWritesParentReadsAcrossFork) {
  SharedPage page;
  ChipBootstrapChannel parent(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  auto ptrs = pattern(17, 5);
  BackgroundChild child([&] {
    ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
    ch.write_success(0xc0ffee, 0x10000, 1 << 20, ptrs);
  });
  EXPECT_EQ(parent.wait_published(std::chrono::seconds(20)), State::SUCCESS);
  EXPECT_EQ(parent.device_ctx(), 0xc0ffeeu);
  EXPECT_EQ(parent.local_window_base(), 0x10000u);
  EXPECT_EQ(parent.actual_window_size(), 1u << 20);
  EXPECT_EQ(parent.buffer_ptrs(), ptrs);
  EXPECT_TRUE(child.join());
}

TEST(BootstrapChannel, ChildErrorSeenByParent) {
  SharedPage page;
  ChipBootstrapChannel parent(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  auto outcomes = cmt::fork_ranks(1, [&](int) {
    ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
    ch.write_error(1, "DeviceError: no device 3");
    CM_REQUIRE(ch.state() == State::ERROR);
  });
  ASSERT_TRUE(cmt::all_ok(outcomes));
  EXPECT_EQ(parent.wait_published(milliseconds(0)), State::ERROR);
  EXPECT_EQ(parent.error_code(), 1);
  EXPECT_EQ(parent.error_message(), "DeviceError: no device 3");
}

TEST(BootstrapChannel, WaitPublishedTimesOutIdleWhenNobodyWrites) {
  SharedPage page;
  ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  auto t0 = testing_clock::now();
  EXPECT_EQ(ch.wait_published(milliseconds(120)), State::IDLE);
  // It waited the whole timeout (how much longer depends on the machine).
  EXPECT_GE(testing_clock::now() - t0, milliseconds(120));
  // A zero or negative timeout checks once and returns.
  EXPECT_EQ(ch.wait_published(milliseconds(0)), State::IDLE);
  EXPECT_EQ(ch.wait_published(milliseconds(-5)), State::IDLE);
}

// The waiter (another process) is asleep in the futex before the write, and
// its timeout is an hour: only the publish's futex wake can end its wait
// before the harness's deadline kills it. Remove the wake and this fails.
TEST(BootstrapChannel, APublishWakesAWaiterAsleepInAnotherProcess) {
  SharedPage page;
  SharedPage pid_slot;  // the waiter's pid, for /proc
  auto* waiter_pid = reinterpret_cast<std::atomic<pid_t>*>(pid_slot.bytes());
  BackgroundChild waiter(
      [&] {
        waiter_pid->store(getpid());
        ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
        const State s = ch.wait_published(std::chrono::hours(1));
        CM_REQUIRE(s == State::SUCCESS) << "state " << static_cast<int>(s);
        CM_REQUIRE(ch.buffer_ptrs() == std::vector<uint64_t>{4});
      },
      std::chrono::seconds(60));
  // Until the waiter sleeps on the futex (bounded; it gets there in microseconds).
  const auto until = testing_clock::now() + std::chrono::seconds(30);
  while (waiter_pid->load() == 0 && testing_clock::now() < until) std::this_thread::yield();
  const bool asleep = waiter_pid->load() > 0 && cmt::wait_asleep_in_futex(waiter_pid->load(), std::chrono::seconds(30));
  ChipBootstrapChannel(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS).write_success(1, 2, 3, {4});
  ASSERT_TRUE(asleep) << "the waiter (pid " << waiter_pid->load() << ") never slept in futex(2)";
  EXPECT_TRUE(waiter.join()) << "the waiter slept through the publish: its futex wake is missing";
}

// What round i of the stress test writes, and what the parent must then read.
struct Round {
  bool error;
  int32_t code;
  std::string message;
  uint64_t device_ctx, base, size;
  std::vector<uint64_t> ptrs;

  explicit Round(int i) : error(i % 5 == 4), code(i + 1) {
    if (error) {
      message = "ChipError: round " + std::to_string(i) + " failed";
      device_ctx = base = size = 0;
    } else {
      device_ctx = static_cast<uint64_t>(i) * 7 + 1;
      base = 0x7f0000000000ULL + static_cast<uint64_t>(i) * 0x10000;
      size = (static_cast<uint64_t>(i) + 1) << 16;
      ptrs.resize(static_cast<size_t>(i) % (CHIP_BOOTSTRAP_MAX_BUFFERS + 1));
      for (size_t j = 0; j < ptrs.size(); ++j) ptrs[j] = base + static_cast<uint64_t>(i) * j + j;
    }
  }
  void write(ChipBootstrapChannel& ch) const {
    if (error) ch.write_error(code, message);
    else ch.write_success(device_ctx, base, size, ptrs);
  }
  // Empty when every field matches.
  std::string mismatch(const ChipBootstrapChannel& ch, State seen) const {
    if (seen != (error ? State::ERROR : State::SUCCESS))
      return "state " + std::to_string(static_cast<int>(seen));
    if (ch.error_code() != (error ? code : 0))
      return "error_code " + std::to_string(ch.error_code());
    if (ch.error_message() != message) return "message '" + ch.error_message() + "'";
    if (ch.device_ctx() != device_ctx) return "device_ctx " + std::to_string(ch.device_ctx());
    if (ch.local_window_base() != base) return "local_window_base";
    if (ch.actual_window_size() != size) return "actual_window_size";
    if (ch.buffer_ptrs() != ptrs)
      return "buffer_ptrs (" + std::to_string(ch.buffer_ptrs().size()) + " read)";
    return "";
  }
};

TEST(BootstrapChannel, ThousandForkedRoundsNeverShowStateBeforePayload) {
  SharedPage page;
  ChipBootstrapChannel parent(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
  for (int i = 0; i < 1000; ++i) {
    Round round(i);
    BackgroundChild child([&] {
      ChipBootstrapChannel ch(page.bytes(), CHIP_BOOTSTRAP_MAX_BUFFERS);
      round.write(ch);
    });
    // Observe while the child may still be writing: the payload must be
    // complete the moment the state leaves IDLE.
    State seen = parent.wait_published(std::chrono::seconds(20));
    std::string bad = round.mismatch(parent, seen);
    ASSERT_TRUE(child.join()) << "round " << i;
    ASSERT_EQ(bad, "") << "round " << i;
    parent.reset();
  }
}

}  // namespace
}  // namespace chipmesh

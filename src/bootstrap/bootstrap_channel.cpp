#include "chipmesh/bootstrap_channel.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <sstream>

#include "chipmesh/errors.h"
#include "common/deadline.h"
#include "common/futex.h"

namespace chipmesh {
namespace {

// The page as the writer and reader see it. Kept private so the only contract
// is the byte layout, locked below against the public offset constants.
struct Mailbox {
  int32_t state;
  int32_t error_code;
  int32_t buffer_count;
  int32_t reserved0;
  uint64_t device_ctx;
  uint64_t local_window_base;
  uint64_t actual_window_size;
  double timings[3];  // comm_init_ms, windows_ms, staging_ms
  uint64_t buffer_ptrs[CHIP_BOOTSTRAP_MAX_BUFFERS];
  char error_message[CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE];
};

static_assert(sizeof(Mailbox) == CHIP_BOOTSTRAP_MAILBOX_SIZE);
static_assert(offsetof(Mailbox, state) == CHIP_BOOTSTRAP_STATE_OFFSET);
static_assert(offsetof(Mailbox, error_code) == CHIP_BOOTSTRAP_ERROR_CODE_OFFSET);
static_assert(offsetof(Mailbox, buffer_count) == CHIP_BOOTSTRAP_BUFFER_COUNT_OFFSET);
static_assert(offsetof(Mailbox, device_ctx) == CHIP_BOOTSTRAP_DEVICE_CTX_OFFSET);
static_assert(offsetof(Mailbox, local_window_base) == CHIP_BOOTSTRAP_LOCAL_WINDOW_BASE_OFFSET);
static_assert(offsetof(Mailbox, actual_window_size) == CHIP_BOOTSTRAP_ACTUAL_WINDOW_SIZE_OFFSET);
static_assert(offsetof(Mailbox, timings) == CHIP_BOOTSTRAP_TIMINGS_OFFSET);
static_assert(offsetof(Mailbox, buffer_ptrs) == CHIP_BOOTSTRAP_BUFFER_PTRS_OFFSET);
static_assert(offsetof(Mailbox, error_message) == CHIP_BOOTSTRAP_ERROR_MESSAGE_OFFSET);
static_assert(std::atomic_ref<int32_t>::required_alignment <= alignof(Mailbox));
// The futex helpers take the state word as a 32-bit atomic; same 4 bytes.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(int32_t));

Mailbox* as_mailbox(unsigned char* base) { return reinterpret_cast<Mailbox*>(base); }

std::atomic_ref<int32_t> state_ref(unsigned char* base) {
  return std::atomic_ref<int32_t>(as_mailbox(base)->state);
}

const std::atomic<uint32_t>* futex_word(unsigned char* base) {
  return reinterpret_cast<const std::atomic<uint32_t>*>(base + CHIP_BOOTSTRAP_STATE_OFFSET);
}

// Releases the payload written before it, then wakes every waiter (a parent
// in wait_published, possibly in another process: the futex is shared).
void publish(unsigned char* base, ChipBootstrapMailboxState s) {
  state_ref(base).store(static_cast<int32_t>(s), std::memory_order_release);
  futex::wake(futex_word(base));
}

}  // namespace

ChipBootstrapChannel::ChipBootstrapChannel(void* mailbox, size_t max_buffer_count)
    : base_(static_cast<unsigned char*>(mailbox)), max_buffer_count_(max_buffer_count) {
  if (mailbox == nullptr) throw ConfigError("bootstrap mailbox is null");
  if (reinterpret_cast<uintptr_t>(mailbox) % alignof(Mailbox) != 0) {
    std::ostringstream os;
    os << "bootstrap mailbox " << mailbox << " is not " << alignof(Mailbox) << "-byte aligned";
    throw ConfigError(os.str());
  }
  if (max_buffer_count > CHIP_BOOTSTRAP_MAX_BUFFERS) {
    throw ConfigError("max_buffer_count " + std::to_string(max_buffer_count) +
                      " exceeds mailbox capacity " + std::to_string(CHIP_BOOTSTRAP_MAX_BUFFERS));
  }
}

void ChipBootstrapChannel::reset() {
  // Everything but the state word; the state goes back to IDLE last.
  std::memset(base_ + sizeof(int32_t), 0, CHIP_BOOTSTRAP_MAILBOX_SIZE - sizeof(int32_t));
  state_ref(base_).store(static_cast<int32_t>(ChipBootstrapMailboxState::IDLE),
                         std::memory_order_release);
}

void ChipBootstrapChannel::write_success(uint64_t device_ctx, uint64_t local_window_base,
                                         uint64_t actual_window_size,
                                         const std::vector<uint64_t>& buffer_ptrs) {
  write_success(device_ctx, local_window_base, actual_window_size, buffer_ptrs, BootstrapTimings{});
}

void ChipBootstrapChannel::write_success(uint64_t device_ctx, uint64_t local_window_base,
                                         uint64_t actual_window_size, const std::vector<uint64_t>& buffer_ptrs,
                                         const BootstrapTimings& timings) {
  // Checked before any store so a rejected write leaves the mailbox untouched.
  if (buffer_ptrs.size() > max_buffer_count_) {
    throw ConfigError("bootstrap mailbox: " + std::to_string(buffer_ptrs.size()) +
                      " buffer pointers exceed max_buffer_count " +
                      std::to_string(max_buffer_count_));
  }
  Mailbox* m = as_mailbox(base_);
  m->error_code = 0;
  m->buffer_count = static_cast<int32_t>(buffer_ptrs.size());
  m->device_ctx = device_ctx;
  m->local_window_base = local_window_base;
  m->actual_window_size = actual_window_size;
  m->timings[0] = timings.comm_init_ms;
  m->timings[1] = timings.windows_ms;
  m->timings[2] = timings.staging_ms;
  if (!buffer_ptrs.empty())
    std::memcpy(m->buffer_ptrs, buffer_ptrs.data(), buffer_ptrs.size() * sizeof(uint64_t));
  m->error_message[0] = '\0';
  publish(base_, ChipBootstrapMailboxState::SUCCESS);
}

void ChipBootstrapChannel::write_error(int32_t code, std::string_view message) {
  Mailbox* m = as_mailbox(base_);
  // Stale success fields must not survive into an ERROR report.
  m->error_code = code;
  m->buffer_count = 0;
  m->device_ctx = 0;
  m->local_window_base = 0;
  m->actual_window_size = 0;
  m->timings[0] = m->timings[1] = m->timings[2] = 0;
  size_t n = std::min(message.size(), CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE - 1);
  std::memcpy(m->error_message, message.data(), n);
  m->error_message[n] = '\0';
  publish(base_, ChipBootstrapMailboxState::ERROR);
}

ChipBootstrapMailboxState ChipBootstrapChannel::state() const {
  return static_cast<ChipBootstrapMailboxState>(state_ref(base_).load(std::memory_order_acquire));
}

int32_t ChipBootstrapChannel::error_code() const { return as_mailbox(base_)->error_code; }
uint64_t ChipBootstrapChannel::device_ctx() const { return as_mailbox(base_)->device_ctx; }
uint64_t ChipBootstrapChannel::local_window_base() const {
  return as_mailbox(base_)->local_window_base;
}
uint64_t ChipBootstrapChannel::actual_window_size() const {
  return as_mailbox(base_)->actual_window_size;
}

BootstrapTimings ChipBootstrapChannel::timings() const {
  const Mailbox* m = as_mailbox(base_);
  return BootstrapTimings{m->timings[0], m->timings[1], m->timings[2]};
}

std::vector<uint64_t> ChipBootstrapChannel::buffer_ptrs() const {
  const Mailbox* m = as_mailbox(base_);
  // One load, then clamp: the count comes from another process and may be
  // corrupt; re-reading it after the check could bypass the bound.
  int32_t raw = std::atomic_ref<int32_t>(as_mailbox(base_)->buffer_count)
                    .load(std::memory_order_relaxed);
  size_t count = raw <= 0 ? 0 : std::min(static_cast<size_t>(raw), max_buffer_count_);
  return std::vector<uint64_t>(m->buffer_ptrs, m->buffer_ptrs + count);
}

std::string ChipBootstrapChannel::error_message() const {
  const char* msg = as_mailbox(base_)->error_message;
  // strnlen: a writer that never stored the NUL cannot make us read past the page.
  return std::string(msg, strnlen(msg, CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE));
}

ChipBootstrapMailboxState ChipBootstrapChannel::wait_published(
    std::chrono::nanoseconds timeout) const {
  constexpr auto idle = static_cast<int32_t>(ChipBootstrapMailboxState::IDLE);
  Deadline deadline(timeout);
  auto seen = [&] { return state_ref(base_).load(std::memory_order_acquire); };

  // A writer that is already about to publish is caught without a syscall.
  for (int i = futex::spin_budget(2); i > 0; --i) {
    if (int32_t s = seen(); s != idle) return static_cast<ChipBootstrapMailboxState>(s);
    futex::cpu_relax();
  }
  for (;;) {
    if (int32_t s = seen(); s != idle) return static_cast<ChipBootstrapMailboxState>(s);
    // One sleep for the rest of the timeout: the kernel compares the word with
    // IDLE before sleeping, so a publish (store, then wake) cannot be missed;
    // a spurious return or a signal only loops. Not sliced: a publish that
    // forgot its wake would show as a waiter sleeping to its deadline (the
    // tests rely on that to prove the wake).
    auto left = deadline.next_slice(deadline.budget());
    if (left.count() <= 0) return ChipBootstrapMailboxState::IDLE;
    futex::wait(futex_word(base_), static_cast<uint32_t>(idle), left);
  }
}

}  // namespace chipmesh

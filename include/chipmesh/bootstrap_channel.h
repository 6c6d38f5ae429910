// The one-shot bootstrap mailbox: one 4096-byte page of shared memory, written
// once by a chip process, read by its parent. Layout (fixed, see docs/layouts.md):
//   i32 state @0, i32 error_code @4, i32 buffer_count @8,
//   u64 device_ctx @16, u64 local_window_base @24, u64 actual_window_size @32,
//   f64 comm_init_ms @40, f64 windows_ms @48, f64 staging_ms @56,
//   u64 buffer_ptrs[376] @64, char error_message[1024] @3072.
// Writers store the payload first and publish the state last (release);
// readers load the state with acquire ordering before reading the payload.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chipmesh {

inline constexpr size_t CHIP_BOOTSTRAP_MAILBOX_SIZE = 4096;
inline constexpr size_t CHIP_BOOTSTRAP_MAX_BUFFERS = 376;
inline constexpr size_t CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE = 1024;

inline constexpr size_t CHIP_BOOTSTRAP_STATE_OFFSET = 0;
inline constexpr size_t CHIP_BOOTSTRAP_ERROR_CODE_OFFSET = 4;
inline constexpr size_t CHIP_BOOTSTRAP_BUFFER_COUNT_OFFSET = 8;
inline constexpr size_t CHIP_BOOTSTRAP_DEVICE_CTX_OFFSET = 16;
inline constexpr size_t CHIP_BOOTSTRAP_LOCAL_WINDOW_BASE_OFFSET = 24;
inline constexpr size_t CHIP_BOOTSTRAP_ACTUAL_WINDOW_SIZE_OFFSET = 32;
inline constexpr size_t CHIP_BOOTSTRAP_TIMINGS_OFFSET = 40;
inline constexpr size_t CHIP_BOOTSTRAP_BUFFER_PTRS_OFFSET = 64;
inline constexpr size_t CHIP_BOOTSTRAP_ERROR_MESSAGE_OFFSET = 3072;

enum class ChipBootstrapMailboxState : int32_t { IDLE = 0, SUCCESS = 1, ERROR = 2 };

// Where a bring-up spent its time (steps 3 to 5 of bootstrap_context), in ms.
// Travels in the mailbox with SUCCESS, so the parent reads it with the result.
struct BootstrapTimings {
  double comm_init_ms = 0;
  double windows_ms = 0;
  double staging_ms = 0;
};

class ChipBootstrapChannel {
 public:
  // mailbox: CHIP_BOOTSTRAP_MAILBOX_SIZE bytes, 8-byte aligned, usually a
  // MAP_SHARED page. max_buffer_count: capacity this channel accepts and
  // reads back (ConfigError above CHIP_BOOTSTRAP_MAX_BUFFERS).
  ChipBootstrapChannel(void* mailbox, size_t max_buffer_count);

  // Clears the payload and publishes IDLE. Only while no other process is
  // writing or reading this mailbox (e.g. in the parent before the fork).
  void reset();
  // ConfigError if buffer_ptrs.size() > max_buffer_count(); nothing written then.
  void write_success(uint64_t device_ctx, uint64_t local_window_base,
                     uint64_t actual_window_size, const std::vector<uint64_t>& buffer_ptrs);
  // The same, with the chip's bring-up timings in the payload.
  void write_success(uint64_t device_ctx, uint64_t local_window_base, uint64_t actual_window_size,
                     const std::vector<uint64_t>& buffer_ptrs, const BootstrapTimings& timings);
  // message is truncated to CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE - 1 bytes.
  void write_error(int32_t code, std::string_view message);

  // The raw state word: a corrupt mailbox may hold a value outside the enum,
  // which readers must treat as a failure.
  ChipBootstrapMailboxState state() const;
  int32_t error_code() const;
  uint64_t device_ctx() const;
  uint64_t local_window_base() const;
  uint64_t actual_window_size() const;
  // Zeros unless the writer passed timings to write_success.
  BootstrapTimings timings() const;
  // buffer_count clamped to [0, max_buffer_count()].
  std::vector<uint64_t> buffer_ptrs() const;
  // Up to the first NUL, at most CHIP_BOOTSTRAP_ERROR_MESSAGE_SIZE bytes.
  std::string error_message() const;

  // Blocks (futex, no polling) until the state leaves IDLE or the timeout
  // passes; returns the state seen last (IDLE on timeout).
  ChipBootstrapMailboxState wait_published(std::chrono::nanoseconds timeout) const;

  size_t max_buffer_count() const { return max_buffer_count_; }
  void* mailbox() const { return base_; }

 private:
  unsigned char* base_;
  size_t max_buffer_count_;
};

}  // namespace chipmesh

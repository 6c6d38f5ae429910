// One chip: binds a platform plugin, drives its device and communicator, and
// runs the one-shot bring-up (bootstrap_context) described in
// docs/architecture.md.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chipmesh/bootstrap_channel.h"
#include "chipmesh/platform_abi.h"
#include "chipmesh/shared_memory.h"
#include "chipmesh/types.h"

namespace chipmesh {

// Where a chip's bring-up is, in order (bootstrap_context reports each step
// as it starts it): a Worker names the step of the chip it waited for when
// the bring-up times out.
enum class BootstrapStep : uint32_t {
  kForked = 0,          // a Worker's chip process, before anything else
  kLoadingPlatform,     // ChipWorker::init
  kValidating,          // step 1
  kSettingDevice,       // step 2
  kJoiningComm,         // step 3: comm_init, waiting for the peers
  kAllocatingWindows,   // step 3: comm_alloc_windows, with the peers
  kStaging,             // steps 4-5: carving, host inputs, output stagings
  kPublishing,          // step 6
};
// "setting its device", "joining the communicator (comm_init)", ...
const char* describe(BootstrapStep step);

class ChipWorker {
 public:
  ChipWorker() = default;
  ~ChipWorker();  // best effort: shutdown_bootstrap(), never throws
  ChipWorker(const ChipWorker&) = delete;
  ChipWorker& operator=(const ChipWorker&) = delete;

  // platform: a name ("sim" -> libchipmesh_platform_sim.so, searched in
  // $CHIPMESH_PLATFORM_PATH, next to libchipmesh, then the loader's path) or a
  // path to a plugin. DeviceError naming every place tried, or the ABI
  // version found and expected.
  void init(std::string_view platform);
  void set_device(int device_id);
  void reset_device();
  void finalize();

  uint64_t malloc(size_t nbytes);
  void free(uint64_t ptr);
  void copy_to(uint64_t dst, const void* src, size_t nbytes);
  void copy_from(void* dst, uint64_t src, size_t nbytes);
  // Runs fn(args) on the current device through the platform's launch hook.
  int launch(chipmesh_kernel_fn fn, void* args);

  // The optional host-memory entries of the device table (docs/platform-abi.md).
  // attach_host_arena: false when the platform has no such entry; throws
  // when it has one and fails.
  bool attach_host_arena(int fd, uint64_t size);
  struct HostRange {
    void* host = nullptr;                               // CPU address here; null: not reachable
    uint64_t arena_offset = CHIPMESH_NO_ARENA_OFFSET;  // in the host arena
  };
  // Where the CPU reaches [ptr, ptr + nbytes); {null, none} when the
  // platform does not say. DeviceError for a range outside device memory.
  HostRange host_range(uint64_t ptr, size_t nbytes);

  // Through the transport table, with the job token and timeout set below
  // (the platform's defaults, CHIPMESH_JOB_TOKEN and CHIPMESH_COMM_TIMEOUT_S,
  // for what is not set).
  uint64_t comm_init(int rank, int nranks, const std::string& rootinfo_path);
  uint64_t comm_alloc_windows(uint64_t comm, size_t window_size);  // returns device_ctx
  uint64_t comm_get_local_window_base(uint64_t comm);
  size_t comm_get_window_size(uint64_t comm);
  void comm_barrier(uint64_t comm);
  void comm_destroy(uint64_t comm);

  // The six steps of the bring-up contract (docs/architecture.md): validate,
  // set device, communicator, carve, load host inputs (and map every store_to_host output staging), publish
  // the result and the timings. On failure publishes "<kind>: <message>" with
  // error_code 1 on the channel, releases what it created, and rethrows.
  // This is the only bring-up path: the Worker's chip processes call it too.
  ChipBootstrapResult bootstrap_context(int device_id, const ChipBootstrapConfig& cfg,
                                        ChipBootstrapChannel* channel = nullptr);
  // The flush of store_to_host: copies every buffer of the last
  // bootstrap_context marked store_to_host into its output staging (mapped at
  // bring-up, so a missing region failed the bring-up, not this call). A
  // Worker calls it after each successful task; a ChipWorker user calls it
  // when the device holds the results the host should see. No-op without a
  // bootstrap or without such buffers.
  void store_to_host();
  // The same while `flushing_chips` chips flush at once (a Worker's chips of
  // one run) and one more process reads the stagings (the Worker's parent).
  // Streamed stores send every byte to memory, whose bandwidth the chips
  // share; so where these processes outnumber the CPUs (some chip shares the
  // reader's core) and the flushes' sources and stagings together fit the
  // last-level cache, a buffer the CPU reaches (host_range) is copied with
  // plain stores. Otherwise the platform's copy.
  void store_to_host(int flushing_chips);
  // Destroys the communicator made by bootstrap_context and detaches the
  // output stagings; idempotent, also when the destroy itself fails (the
  // handle is cleared first).
  void shutdown_bootstrap();

  // Job token of the communicators this worker creates from now on: ranks
  // only join a communicator of the same token (two jobs on one host never
  // attach to each other). "" means no token. Unset: CHIPMESH_JOB_TOKEN.
  void set_job_token(std::string token) { job_token_ = std::move(token); }
  // A file (shared memory, file offset 0 = the window base) that the next
  // bootstrap_context makes its window of, when the platform's transport can
  // adopt one (adopt_window): host inputs staged in it at their buffers'
  // offsets (Worker::stage_input does that) are then in the window without
  // a copy. -1 (the default): a new window. The descriptor stays the caller's.
  void set_window_file(int fd) {
    window_file_ = fd;
    window_file_offset_ = 0;
    window_file_shared_ = false;
  }
  // The same for a file that holds this chip's window at `offset` (a page
  // multiple) among other chips' windows (the Worker's one window file for
  // every chip), adopted through adopt_window_at; a transport without it
  // makes a new window and copies the inputs.
  void set_shared_window_file(int fd, uint64_t offset) {
    window_file_ = fd;
    window_file_offset_ = offset;
    window_file_shared_ = true;
  }
  // Where bootstrap_context stores each BootstrapStep as it starts it (in
  // shared memory, for a parent to read); null (the default): nowhere.
  void set_bootstrap_step_sink(std::atomic<uint32_t>* sink) { step_sink_ = sink; }
  // Deadline of every wait of the communicators created from now on.
  // Unset: CHIPMESH_COMM_TIMEOUT_S.
  void set_comm_timeout(std::chrono::milliseconds timeout) { comm_timeout_ = timeout; }

  // The plugin's tables. platform() is the legacy combined view (composed
  // by the loader for a plugin that exports the two tables); device() and
  // transport() are what ChipWorker calls through. DeviceError before
  // init(); transport() also when the platform has no communicator.
  const chipmesh_platform& platform() const;
  const chipmesh_device_t& device() const;
  const chipmesh_transport_t& transport() const;
  bool has_transport() const { return transport_ != nullptr; }
  bool initialized() const { return platform_ != nullptr; }
  uint64_t bootstrap_comm() const { return bootstrap_comm_; }
  const BootstrapTimings& last_bootstrap_timings() const { return timings_; }

 private:
  void check(int status, std::string_view what) const;
  void check_comm(int status, std::string_view what) const;
  // A store_to_host buffer and the staging it is flushed into.
  struct Output {
    std::string name;
    uint64_t device_ptr;
    size_t nbytes;
    SharedMemory staging;
  };
  // Step 5 of bootstrap_context for outputs: attach every store_to_host staging.
  static std::vector<Output> map_outputs(const ChipBootstrapConfig& cfg, const std::vector<uint64_t>& buffer_ptrs);
  const chipmesh_platform* platform_ = nullptr;
  const chipmesh_device_t* device_ = nullptr;
  const chipmesh_transport_t* transport_ = nullptr;
  std::optional<std::string> job_token_;
  int window_file_ = -1;
  uint64_t window_file_offset_ = 0;
  bool window_file_shared_ = false;
  std::optional<std::chrono::milliseconds> comm_timeout_;
  uint64_t bootstrap_comm_ = 0;
  BootstrapTimings timings_;
  std::vector<Output> outputs_;
  std::atomic<uint32_t>* step_sink_ = nullptr;
  void reach(BootstrapStep step) const noexcept {
    if (step_sink_) step_sink_->store(static_cast<uint32_t>(step), std::memory_order_release);
  }
};

}  // namespace chipmesh

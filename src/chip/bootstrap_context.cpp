// ChipWorker::bootstrap_context: the six steps of the bring-up contract
// (docs/architecture.md, "Bring-up"), in order, with the failure path publishing before rethrowing.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "chipmesh/chip_worker.h"
#include "chipmesh/errors.h"
#include "chipmesh/shared_memory.h"
#include "common/fd_path.h"
#include "common/futex.h"
#include "common/stream_copy.h"
#include "knobs/knobs.h"
#include "logging/log.h"

namespace chipmesh {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Step 4: sequential carving in declaration order, no padding (placements
// were validated in step 1: only "window" exists).
std::vector<uint64_t> carve(const ChipBootstrapConfig& cfg, uint64_t base, uint64_t window_size) {
  std::vector<uint64_t> ptrs;
  ptrs.reserve(cfg.buffers.size());
  uint64_t offset = 0;
  for (const auto& b : cfg.buffers) {
    if (b.nbytes > window_size || offset > window_size - b.nbytes)
      throw ConfigError("buffer '" + b.name + "' (nbytes=" + std::to_string(b.nbytes) + ") at offset " +
                        std::to_string(offset) + " overflows window size " + std::to_string(window_size));
    ptrs.push_back(base + offset);
    offset += b.nbytes;
  }
  return ptrs;
}

// Whether the staging object `name` is the file open as `fd` (this
// process's). An anonymous name of this process or its parent is an
// inherited descriptor; any other name is looked up.
bool same_file(const std::string& name, int fd) {
  struct stat a{}, b{};
  if (fstat(fd, &b) != 0) return false;
  int pid = 0, their_fd = -1;
  if (fd_path::parse(name, &pid, &their_fd) && fd_path::held_here(pid)) {
    if (fstat(their_fd, &a) != 0) return false;
  } else if (name.rfind("/proc/", 0) == 0) {
    if (stat(name.c_str(), &a) != 0) return false;
  } else {
    return false;  // a named object is never a window file
  }
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

std::vector<ChipWorker::Output> ChipWorker::map_outputs(const ChipBootstrapConfig& cfg,
                                                        const std::vector<uint64_t>& buffer_ptrs) {
  std::vector<Output> outputs;
  for (size_t i = 0; i < cfg.buffers.size(); ++i) {
    const auto& b = cfg.buffers[i];
    if (!b.store_to_host || b.nbytes == 0) continue;
    const HostBufferStaging& st = cfg.output_staging(b.name);
    SharedMemory region = SharedMemory::attach(st.shm_name, true);
    if (region.size() < b.nbytes)
      throw ConfigError("host output '" + b.name + "': shared memory '" + st.shm_name + "' holds " +
                        std::to_string(region.size()) + " bytes, the buffer needs " + std::to_string(b.nbytes));
    outputs.push_back(Output{b.name, buffer_ptrs[i], b.nbytes, std::move(region)});
  }
  return outputs;
}

void ChipWorker::store_to_host() {
  for (Output& o : outputs_) copy_from(o.staging.data(), o.device_ptr, o.nbytes);
}

void ChipWorker::store_to_host(int flushing_chips) {
  // Measured on a 2-vCPU AMD EPYC VM, whose vCPUs share ~28 GB/s of streamed
  // writes: 2 chips flushing 1 MiB each took 77-110 us streamed, 27-31
  // plain (50-64 when the parent had read the stagings); 4 MiB each 328-402
  // against 143-155. With a core each for the chips and the parent, the
  // stagings' lines lie in the parent's core, and a plain store fetches each
  // one back from there: one chip streamed 1 MiB in 38 us, plainly in 103.
  // Past the cache streaming wins again.
  uint64_t bytes = 0;
  for (const Output& o : outputs_) bytes += o.nbytes;
  // The first test leaves flushing_chips >= 1 (cores() is).
  if (flushing_chips + 1 <= futex::cores() || stream_stores_pay(2 * static_cast<uint64_t>(flushing_chips) * bytes))
    return store_to_host();
  for (Output& o : outputs_) {
    if (const void* host = host_range(o.device_ptr, o.nbytes).host)
      std::memcpy(o.staging.data(), host, o.nbytes);
    else
      copy_from(o.staging.data(), o.device_ptr, o.nbytes);
  }
}

const char* describe(BootstrapStep step) {
  switch (step) {
    case BootstrapStep::kForked: return "starting (just forked)";
    case BootstrapStep::kLoadingPlatform: return "loading its platform";
    case BootstrapStep::kValidating: return "checking its bootstrap config";
    case BootstrapStep::kSettingDevice: return "setting its device";
    case BootstrapStep::kJoiningComm: return "joining the communicator (comm_init, waiting for its peers)";
    case BootstrapStep::kAllocatingWindows: return "allocating its window (comm_alloc_windows, with its peers)";
    case BootstrapStep::kStaging: return "carving its buffers and loading its host inputs";
    case BootstrapStep::kPublishing: return "publishing its result";
  }
  return "at an unknown step";
}

ChipBootstrapResult ChipWorker::bootstrap_context(int device_id, const ChipBootstrapConfig& cfg,
                                                  ChipBootstrapChannel* channel) {
  uint64_t comm = 0;
  try {
    if (bootstrap_comm_ != 0)
      throw ConfigError("bootstrap_context: already bootstrapped (call shutdown_bootstrap first)");
    if (channel && cfg.buffers.size() > channel->max_buffer_count())
      throw ConfigError("bootstrap_context: " + std::to_string(cfg.buffers.size()) +
                        " buffers do not fit the channel's capacity of " + std::to_string(channel->max_buffer_count()));
    // 1. validate everything before any device effect
    reach(BootstrapStep::kValidating);
    validate_bootstrap_config(cfg);
    platform();  // DeviceError before init(), still before any effect
    // 2. device
    reach(BootstrapStep::kSettingDevice);
    set_device(device_id);

    ChipBootstrapResult result;
    bool adopted = false;  // the window is made of window_file_
    timings_ = BootstrapTimings{};
    auto t0 = Clock::now();
    // 3. communicator and window
    if (cfg.comm) {
      const auto& c = *cfg.comm;
      knobs::test_pause_point("comm_init");
      reach(BootstrapStep::kJoiningComm);
      comm = comm_init(c.rank, c.nranks, c.rootinfo_path);
      auto t1 = Clock::now();
      timings_.comm_init_ms = ms_between(t0, t1);
      knobs::test_pause_point("windows");
      t1 = Clock::now();
      reach(BootstrapStep::kAllocatingWindows);
      if (window_file_ >= 0 && window_file_shared_ && transport().adopt_window_at) {
        check_comm(transport().adopt_window_at(reinterpret_cast<CommHandle>(comm), window_file_, window_file_offset_),
                   "comm adopt_window_at");
        adopted = true;
      } else if (window_file_ >= 0 && !window_file_shared_ && transport().adopt_window) {
        check_comm(transport().adopt_window(reinterpret_cast<CommHandle>(comm), window_file_), "comm adopt_window");
        adopted = true;
      }
      result.device_ctx = comm_alloc_windows(comm, c.window_size);
      t0 = Clock::now();
      timings_.windows_ms = ms_between(t1, t0);
      result.local_window_base = comm_get_local_window_base(comm);
      result.actual_window_size = comm_get_window_size(comm);
      if (result.actual_window_size < c.window_size)
        throw DeviceError("platform '" + std::string(platform_->name) + "' returned a window of " +
                          std::to_string(result.actual_window_size) + " bytes for a request of " +
                          std::to_string(c.window_size));
    }
    // 4. carve buffers
    reach(BootstrapStep::kStaging);
    result.buffer_ptrs = carve(cfg, result.local_window_base, result.actual_window_size);
    // 5. host inputs
    knobs::test_pause_point("staging");
    for (size_t i = 0; i < cfg.buffers.size(); ++i) {
      const auto& b = cfg.buffers[i];
      if (!b.load_from_host) continue;
      const HostBufferStaging& staging = cfg.input_staging(b.name);
      if (staging.size == 0) continue;
      // Staged in the window file this window is made of, at this buffer's
      // offset: already in place.
      if (adopted && staging.offset == window_file_offset_ + (result.buffer_ptrs[i] - result.local_window_base) &&
          same_file(staging.shm_name, window_file_))
        continue;
      SharedMemory region = SharedMemory::attach(staging.shm_name, false);
      if (region.size() < staging.size || region.size() - staging.size < staging.offset)
        throw ConfigError("host input '" + b.name + "': shared memory '" + staging.shm_name + "' holds " +
                          std::to_string(region.size()) + " bytes, staging says " + std::to_string(staging.size) +
                          " at offset " + std::to_string(staging.offset));
      copy_to(result.buffer_ptrs[i], static_cast<const char*>(region.data()) + staging.offset, staging.size);
    }  // each region is detached at the end of its iteration, never unlinked
    // ... and map every output staging now, before SUCCESS: a missing output
    // is a bring-up error, and the parent may unlink the names once it has
    // seen SUCCESS.
    std::vector<Output> outputs = map_outputs(cfg, result.buffer_ptrs);
    timings_.staging_ms = ms_between(t0, Clock::now());
    // 6. publish, then stash the communicator and outputs for
    //    store_to_host / shutdown_bootstrap
    reach(BootstrapStep::kPublishing);
    if (channel)
      channel->write_success(result.device_ctx, result.local_window_base, result.actual_window_size,
                             result.buffer_ptrs, timings_);
    bootstrap_comm_ = comm;
    CHIPMESH_INFO(INIT, "init timings: device %d comm_init %.3f ms, windows %.3f ms, staging %.3f ms", device_id,
                  timings_.comm_init_ms, timings_.windows_ms, timings_.staging_ms);
    outputs_ = std::move(outputs);
    return result;
  } catch (...) {
    if (channel) channel->write_error(1, describe_current_exception());
    if (comm != 0) {
      try {
        comm_destroy(comm);  // leave nothing behind; the original error is the one to report
      } catch (...) {
      }
    }
    throw;
  }
}

}  // namespace chipmesh

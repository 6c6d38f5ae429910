// Worker::stage_input / stage_output: host staging the Worker owns, made
// unnamed (SharedMemory::create_anonymous) before the chips are forked, so
// they inherit it and nothing of it can outlive the job (issue 12, item 3).
// An input goes straight into the chip's window file when the platform
// adopts one (window_files.h), so bring-up copies nothing (issue 10).
#include "chipmesh/worker.h"
#include "plugin_loader/platform_loader.h"
#include "worker/worker_impl.h"

namespace chipmesh {

SharedMemory& Worker::stage(int chip, const std::string& buffer, size_t bytes, bool input) {
  Impl& m = *impl_;
  const char* what = input ? "stage_input" : "stage_output";
  if (m.state != Impl::State::Created)
    throw ConfigError(std::string("Worker::") + what + ": only before init() (the chips inherit the staging)");
  if (chip < 0 || static_cast<size_t>(chip) >= m.cfg.device_ids.size())
    throw ConfigError(std::string("Worker::") + what + ": chip " + std::to_string(chip) + " is outside [0, " +
                      std::to_string(m.cfg.device_ids.size()) + ")");
  if (m.cfg.chip_bootstrap_configs.empty())
    throw ConfigError(std::string("Worker::") + what + ": the config has no chip_bootstrap_configs");
  auto& list = input ? m.cfg.chip_bootstrap_configs[static_cast<size_t>(chip)].host_inputs
                     : m.cfg.chip_bootstrap_configs[static_cast<size_t>(chip)].host_outputs;
  for (const auto& s : list)
    if (s.name == buffer)
      throw ConfigError(std::string("Worker::") + what + ": buffer '" + buffer + "' of chip " + std::to_string(chip) +
                        " is already staged (" + s.shm_name + ")");
  const std::string label = std::string(input ? "in:" : "out:") + std::to_string(chip) + ":" + buffer;
  uint64_t offset = 0;
  std::optional<SharedMemory> in_window;
  if (input) in_window = m.stage_in_window(static_cast<size_t>(chip), buffer, bytes, label, &offset);
  m.staging.push_back(in_window ? std::move(*in_window) : SharedMemory::create_anonymous(label, bytes));
  list.push_back(HostBufferStaging{buffer, m.staging.back().name(), bytes, offset});
  return m.staging.back();
}

std::optional<SharedMemory> Worker::Impl::stage_in_window(size_t chip, const std::string& buffer, size_t bytes,
                                                          const std::string& label, uint64_t* offset) {
  const ChipBootstrapConfig& c = cfg.chip_bootstrap_configs[chip];
  if (!c.comm || bytes == 0) return std::nullopt;
  if (adopts_windows < 0) {
    try {
      const PlatformTables& t = load_platform_tables(cfg.platform);
      adopts_windows = t.transport && t.transport->adopt_window ? 1 : 0;
      if (t.transport) plan_one_window_file(*t.transport);
    } catch (const Error&) {
      adopts_windows = 0;  // init() names the platform's problem
    }
  }
  if (adopts_windows == 0) return std::nullopt;
  // The buffer's window offset as bring-up carves it (declaration order, no
  // padding). Anything bring-up would refuse stays on the ordinary path, so
  // that bring-up reports it as before.
  uint64_t at = 0;
  for (const ChipBufferSpec& b : c.buffers) {
    if (b.name == buffer) {
      if (!b.load_from_host || b.nbytes != bytes || at > c.comm->window_size ||
          c.comm->window_size - at < bytes)
        return std::nullopt;
      const int fd = window_files.get_or_make(chip, c.comm->window_size);
      *offset = window_files.offset(chip) + at;
      return SharedMemory::view(fd, *offset, bytes, label);
    }
    at += b.nbytes;
  }
  return std::nullopt;
}

// The chips form one communicator (ranks 0..n-1, one each) of equal
// windows, and the transport adopts windows at an offset: one file holds
// them all, chip i's at rank_i * stride, so that each chip maps it once
// instead of every peer's file (N x N mappings at bring-up). Anything else
// keeps one file per chip.
void Worker::Impl::plan_one_window_file(const chipmesh_transport_v1_t& t) {
  if (!t.adopt_window_at || !t.adopted_window_stride) return;
  const size_t n = cfg.chip_bootstrap_configs.size();
  std::vector<bool> seen(n, false);
  size_t window = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& comm = cfg.chip_bootstrap_configs[i].comm;
    if (!comm || comm->nranks != static_cast<int>(n) || comm->rank < 0 || comm->rank >= static_cast<int>(n) ||
        seen[static_cast<size_t>(comm->rank)] || (i > 0 && comm->window_size != window))
      return;
    seen[static_cast<size_t>(comm->rank)] = true;
    window = comm->window_size;
  }
  uint64_t stride = 0, total = 0;
  if (n == 0 || t.adopted_window_stride(window, &stride) != CHIPMESH_SUCCESS || stride == 0 ||
      __builtin_mul_overflow(stride, static_cast<uint64_t>(n), &total) || total > static_cast<uint64_t>(INT64_MAX))
    return;  // bring-up names a bad window size
  std::vector<uint64_t> offsets(n);
  for (size_t i = 0; i < n; ++i) offsets[i] = static_cast<uint64_t>(cfg.chip_bootstrap_configs[i].comm->rank) * stride;
  window_files.share_one_file(std::move(offsets), total);
}

SharedMemory& Worker::stage_input(int chip, const std::string& buffer, size_t bytes) {
  return stage(chip, buffer, bytes, true);
}

SharedMemory& Worker::stage_output(int chip, const std::string& buffer, size_t bytes) {
  return stage(chip, buffer, bytes, false);
}

}  // namespace chipmesh

// Worker::stage_input / stage_output: host staging the Worker owns, made
// unnamed (SharedMemory::create_anonymous) before the chips are forked, so
// they inherit it and nothing of it can outlive the job (issue 12, item 3).
#include "chipmesh/worker.h"
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
  m.staging.push_back(SharedMemory::create_anonymous(
      std::string(input ? "in:" : "out:") + std::to_string(chip) + ":" + buffer, bytes));
  list.push_back(HostBufferStaging{buffer, m.staging.back().name(), bytes});
  return m.staging.back();
}

SharedMemory& Worker::stage_input(int chip, const std::string& buffer, size_t bytes) {
  return stage(chip, buffer, bytes, true);
}

SharedMemory& Worker::stage_output(int chip, const std::string& buffer, size_t bytes) {
  return stage(chip, buffer, bytes, false);
}

}  // namespace chipmesh

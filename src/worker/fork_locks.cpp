#include "worker/fork_locks.h"

#include <array>
#include <mutex>

#include "knobs/knobs.h"
#include "logging/log.h"
#include "plugin_loader/platform_loader.h"

namespace chipmesh::worker {
namespace {

// Outermost first: a holder of one may take the ones after it, never those
// before it.
const std::array<std::mutex*, 3>& ordered_locks() {
  static const std::array<std::mutex*, 3> locks = {&platform_loader_mutex(), &log::detail::output_mutex(),
                                                   &knobs::registry_mutex()};
  return locks;
}

}  // namespace

ForkLocks::ForkLocks() {
  for (std::mutex* m : ordered_locks()) m->lock();
  held_ = true;
}

ForkLocks::~ForkLocks() { release(); }

void ForkLocks::release() noexcept {
  if (!held_) return;
  held_ = false;
  const auto& locks = ordered_locks();
  for (auto m = locks.rbegin(); m != locks.rend(); ++m) (*m)->unlock();
}

}  // namespace chipmesh::worker

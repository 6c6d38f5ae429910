// The directories a Worker's job owns (its rootinfo directories): made by
// the Worker, listed in the shared header for the chips, removed by the
// Worker as soon as their rendezvous is over (the end of init(), of
// allocate_domain) or when the job ends, and by the chips (rmdir, after
// their own cleanup) should the parent die first (request_ring/chip_shared.h).
#include "worker/job_dirs.h"

#include <linux/magic.h>
#include <stdlib.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "chipmesh/errors.h"
#include "knobs/knobs.h"
#include "logging/log.h"
#include "worker/worker_impl.h"

namespace chipmesh {

namespace worker {

std::string private_dir_base() {
  if (knobs::is_set(knobs::Id::RendezvousDir)) return knobs::text(knobs::Id::RendezvousDir);
  struct statfs fs{};
  if (::statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC && ::access("/dev/shm", W_OK | X_OK) == 0)
    return "/dev/shm";
  std::error_code ec;
  std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  return ec ? std::string("/tmp") : base.string();
}

std::string make_private_dir(const std::string& prefix, const std::string& what) {
  std::string tmpl = (std::filesystem::path(private_dir_base()) / (prefix + "-" + std::to_string(getpid()) + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data()))
    throw DeviceError(what + ": cannot create a private directory for the rootinfo (" + tmpl + "): " +
                      std::strerror(errno));
  return tmpl;
}

void remove_private_dir(const std::string& dir) noexcept {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);  // ours: made by mkdtemp, mode 0700
}

}  // namespace worker

bool Worker::Impl::own_dir(const std::string& path) noexcept {
  if (!header || path.size() >= worker::kOwnedDirPath) return false;
  for (worker::OwnedDir& d : header->owned_dirs) {
    uint32_t free_slot = 0;
    if (!d.state.compare_exchange_strong(free_slot, 1, std::memory_order_acq_rel)) continue;
    std::memcpy(d.path, path.c_str(), path.size() + 1);
    d.state.store(2, std::memory_order_release);
    return true;
  }
  CHIPMESH_INFO(WORKER, "no free slot to list '%s' for the chips; only this process removes it", path.c_str());
  return false;
}

void Worker::Impl::disown_dir(const std::string& path) noexcept {
  if (!header) return;
  for (worker::OwnedDir& d : header->owned_dirs)
    if (d.state.load(std::memory_order_acquire) == 2 && path == d.path) {
      d.state.store(1, std::memory_order_relaxed);
      d.path[0] = '\0';
      d.state.store(0, std::memory_order_release);
    }
}

void Worker::Impl::place_bringup_rendezvous() {
  bool needed = false;
  for (const auto& c : cfg.chip_bootstrap_configs) needed = needed || (c.comm && c.comm->rootinfo_path.empty());
  if (!needed) return;
  std::string rootinfo;
  if (knobs::is_set(knobs::Id::RendezvousDir)) {
    // The user asked for a directory: the file store, in a private one.
    job_dir = worker::make_private_dir("chipmesh-job", "Worker::init");
    own_dir(job_dir);
    rootinfo = job_dir + "/rootinfo";
  } else {
    // A slot of the shared region the chips inherit (memory_store.h), as
    // for domains: nothing on disk, no inotify, nothing a kill can leave.
    // With a control area for the communicator, held until close().
    rootinfo = fresh_rendezvous(lend_control());
  }
  for (auto& c : cfg.chip_bootstrap_configs)
    if (c.comm && c.comm->rootinfo_path.empty()) c.comm->rootinfo_path = rootinfo;
}

void Worker::Impl::remove_job_dir() noexcept {
  if (job_dir.empty()) return;
  disown_dir(job_dir);
  worker::remove_private_dir(job_dir);
  job_dir.clear();
}

}  // namespace chipmesh

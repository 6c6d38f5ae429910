#include "worker/host_arenas.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "logging/log.h"

namespace chipmesh::worker {

HostArenas::HostArenas(size_t chips, uint64_t bytes) : bytes_(bytes), chips_(chips) {
  if (bytes_ == 0) return;
  for (size_t i = 0; i < chips; ++i) {
    const int fd = memfd_create("chipmesh_arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
      CHIPMESH_INFO(WORKER, "chip %zu: no host arena (memfd_create: %s); its copies take the request ring", i,
                    std::strerror(errno));
      continue;
    }
    // Sparse: a page exists once written, and is punched again when freed.
    if (ftruncate(fd, static_cast<off_t>(bytes_)) != 0) {
      CHIPMESH_INFO(WORKER, "chip %zu: no host arena of %llu bytes (%s); its copies take the request ring", i,
                    static_cast<unsigned long long>(bytes_), std::strerror(errno));
      ::close(fd);
      continue;
    }
    // Sealed at its size: nobody (a faulty platform included) can shrink
    // it under the parent's mapping, so a copy there never meets SIGBUS,
    // even while the chip dies; the pages live as long as that mapping does.
    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    chips_[i].fd = fd;
  }
}

void HostArenas::map_all() noexcept {
  for (size_t i = 0; i < chips_.size(); ++i) {
    Chip& c = chips_[i];
    if (c.fd < 0 || c.map) continue;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, c.fd, 0);
    if (p == MAP_FAILED) {
      CHIPMESH_INFO(WORKER, "chip %zu: the host arena (%llu bytes) cannot be mapped here (%s); its copies take the "
                    "request ring", i, static_cast<unsigned long long>(bytes_), std::strerror(errno));
      continue;
    }
    // Processes this one forks later (other Workers' chips, a user's
    // subprocess) must not inherit a view of this chip's memory.
    madvise(p, bytes_, MADV_DONTFORK);
    c.map = static_cast<unsigned char*>(p);
  }
}

HostArenas::~HostArenas() {
  close_fds();
  for (Chip& c : chips_)
    if (c.map) munmap(c.map, bytes_);
}

void HostArenas::close_fds() noexcept {
  for (Chip& c : chips_) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  }
}

void HostArenas::keep_only(size_t chip) noexcept {
  for (size_t i = 0; i < chips_.size(); ++i) {
    if (i == chip || chips_[i].fd < 0) continue;
    ::close(chips_[i].fd);
    chips_[i].fd = -1;
  }
}

void HostArenas::add(size_t chip, uint64_t ptr, size_t nbytes, uint64_t offset) {
  Chip& c = chips_[chip];
  if (!c.map || offset > bytes_ || nbytes > bytes_ - offset) return;
  c.allocations[ptr] = Allocation{nbytes, c.map + offset};
}

void HostArenas::remove(size_t chip, uint64_t ptr) { chips_[chip].allocations.erase(ptr); }

unsigned char* HostArenas::find(size_t chip, uint64_t ptr, size_t n) const {
  const auto& allocs = chips_[chip].allocations;
  auto it = allocs.upper_bound(ptr);
  if (it == allocs.begin()) return nullptr;
  --it;
  const uint64_t into = ptr - it->first;
  if (into > it->second.nbytes || n > it->second.nbytes - into) return nullptr;
  return it->second.host + into;
}

}  // namespace chipmesh::worker

#include "worker/window_views.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "logging/log.h"

namespace chipmesh::worker {

void WindowViews::add(size_t chip, uint64_t base, size_t size, int pidfd, int fd, uint64_t offset) {
  if (chip >= chips_.size() || fd < 0 || size == 0) return;
  remove(chip, base);
  Window w;
  w.base = base;
  w.size = size;
  w.pidfd = pidfd;
  w.fd = fd;
  w.offset = offset;
  chips_[chip].push_back(std::move(w));
}

void WindowViews::unmap(Window& w) noexcept {
  if (w.map) munmap(w.map, w.size);
  w.map = nullptr;
}

void WindowViews::remove(size_t chip, uint64_t base) noexcept {
  if (chip >= chips_.size()) return;
  auto& v = chips_[chip];
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].base == base) {
      unmap(v[i]);
      v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
}

void WindowViews::clear() noexcept {
  for (auto& v : chips_) {
    for (Window& w : v) unmap(w);
    v.clear();
  }
}

unsigned char* WindowViews::map(size_t chip, Window& w) {
  if (w.tried) return w.map;
  w.tried = true;
  // pidfd_getfd needs ptrace rights over the chip (a child: allowed unless
  // ptrace is locked down); a dead chip gives ESRCH.
  const int fd = static_cast<int>(syscall(SYS_pidfd_getfd, w.pidfd, w.fd, 0));
  void* p = fd >= 0 ? mmap(nullptr, w.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(w.offset))
                    : MAP_FAILED;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (p == MAP_FAILED) {
    CHIPMESH_INFO(WORKER, "chip %zu: cannot map its window (fd %d: %s); copies into it take the ring", chip, w.fd,
                  std::strerror(err));
    return nullptr;
  }
  // Processes this one forks later must not inherit a view of it.
  madvise(p, w.size, MADV_DONTFORK);
  w.map = static_cast<unsigned char*>(p);
  return w.map;
}

unsigned char* WindowViews::find(size_t chip, uint64_t ptr, size_t n, bool writing) {
  if (chip >= chips_.size()) return nullptr;
  for (Window& w : chips_[chip]) {
    if (ptr < w.base || n > w.size || ptr - w.base > w.size - n) continue;
    if (!map(chip, w)) return nullptr;
    const size_t off = ptr - w.base;
    if (n == 0) return w.map + off;
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    if (!populate(w, off / page, (off + n - 1) / page, page, writing)) {
      CHIPMESH_INFO(WORKER, "chip %zu: window pages for %zu bytes at offset %zu unavailable (%s); this copy takes "
                    "the ring", chip, n, off, std::strerror(errno));
      return nullptr;
    }
    return w.map + off;
  }
  return nullptr;
}

bool WindowViews::populate(Window& w, size_t first, size_t last, size_t page, bool writing) {
  if (w.populated.empty()) w.populated.assign((w.size / page + 63) / 64 + 1, 0);
  auto had = [&](size_t p) { return (w.populated[p / 64] >> (p % 64)) & 1; };
  for (size_t p = first; p <= last;) {
    if (had(p)) {
      ++p;
      continue;
    }
    size_t end = p;  // a run of pages not had yet
    while (end + 1 <= last && !had(end + 1)) ++end;
    if (madvise(w.map + p * page, (end - p + 1) * page, writing ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) != 0)
      return false;
    for (size_t q = p; q <= end; ++q) w.populated[q / 64] |= uint64_t{1} << (q % 64);
    p = end + 1;
  }
  return true;
}

}  // namespace chipmesh::worker

#include "worker/window_views.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "logging/log.h"

namespace chipmesh::worker {

void WindowViews::clear() noexcept {
  for (Chip& c : chips_) {
    if (c.map) munmap(c.map, c.size);
    c = Chip{};
  }
}

void WindowViews::set(size_t chip, uint64_t base, size_t size, pid_t pid, int fd) {
  Chip& c = chips_[chip];
  if (c.map) munmap(c.map, c.size);
  c = Chip{base, size, pid, fd, false, nullptr, {}};
}

unsigned char* WindowViews::find(size_t chip, uint64_t ptr, size_t n) {
  if (chip >= chips_.size()) return nullptr;
  Chip& c = chips_[chip];
  if (c.fd < 0 || c.size == 0 || ptr < c.base || n > c.size || ptr - c.base > c.size - n) return nullptr;
  if (!c.tried) {
    c.tried = true;
    const std::string path = "/proc/" + std::to_string(c.pid) + "/fd/" + std::to_string(c.fd);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    void* p = fd >= 0 ? mmap(nullptr, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    const int err = errno;
    if (fd >= 0) ::close(fd);
    if (p == MAP_FAILED) {
      CHIPMESH_INFO(WORKER, "chip %zu: cannot map its window through %s (%s); its window copies take the ring",
                    chip, path.c_str(), std::strerror(err));
      return nullptr;
    }
    // Processes this one forks later must not inherit a view of it.
    madvise(p, c.size, MADV_DONTFORK);
    c.map = static_cast<unsigned char*>(p);
  }
  if (!c.map) return nullptr;
  unsigned char* at = c.map + (ptr - c.base);
  if (n == 0) return at;
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t off = ptr - c.base;
  if (!populate(c, off / page, (off + n - 1) / page, page)) {
    CHIPMESH_INFO(WORKER, "chip %zu: window pages for %zu bytes at offset %zu unavailable (%s); this copy takes the ring",
                  chip, n, off, std::strerror(errno));
    return nullptr;
  }
  return at;
}

bool WindowViews::populate(Chip& c, size_t first, size_t last, size_t page) {
  if (c.populated.empty()) c.populated.assign((c.size / page + 63) / 64, 0);
  auto had = [&](size_t p) { return (c.populated[p / 64] >> (p % 64)) & 1; };
  for (size_t p = first; p <= last;) {
    if (had(p)) {
      ++p;
      continue;
    }
    size_t end = p;  // a run of pages not had yet
    while (end + 1 <= last && !had(end + 1)) ++end;
    if (madvise(c.map + p * page, (end - p + 1) * page, MADV_POPULATE_WRITE) != 0) return false;
    for (size_t q = p; q <= end; ++q) c.populated[q / 64] |= uint64_t{1} << (q % 64);
    p = end + 1;
  }
  return true;
}

}  // namespace chipmesh::worker

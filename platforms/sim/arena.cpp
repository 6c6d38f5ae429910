#include "arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <string>

#include "chipmesh/errors.h"

namespace chipmesh::sim::device {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

}  // namespace

Arena::~Arena() {
  if (base_) munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void Arena::attach(int fd, uint64_t size) {
  if (attached()) throw ConfigError("attach_host_arena: an arena of " + std::to_string(size_) + " bytes is already attached");
  if (fd < 0 || size == 0 || size % kPage != 0)
    throw ConfigError("attach_host_arena: fd " + std::to_string(fd) + " and size " + std::to_string(size) +
                      " do not name an arena (a file descriptor and a positive multiple of 4096 bytes)");
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0)
    throw DeviceError("attach_host_arena: cannot duplicate fd " + std::to_string(fd) + ": " + std::strerror(errno));
  // NORESERVE: the file is sparse; pages exist only once written.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, own, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::close(own);
    throw DeviceError("attach_host_arena: cannot map " + std::to_string(size) + " bytes of fd " + std::to_string(fd) +
                      ": " + std::strerror(err));
  }
  fd_ = own;
  base_ = static_cast<unsigned char*>(p);
  size_ = size;
  free_.clear();
  free_[0] = size;
}

size_t Arena::reserved_bytes(size_t nbytes) {
  const uint64_t n = nbytes == 0 ? 64 : nbytes;
  return n >= kPage ? round_up(n, kPage) : round_up(n, 64);
}

std::optional<uint64_t> Arena::allocate(size_t nbytes) {
  if (!attached() || nbytes > size_) return std::nullopt;
  const uint64_t len = reserved_bytes(nbytes);
  const uint64_t align = len >= kPage ? kPage : 64;
  // First fit by address: sim allocations are few and long-lived.
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    const uint64_t start = round_up(it->first, align);
    const uint64_t end = it->first + it->second;
    if (start > end || end - start < len) continue;
    const uint64_t block = it->first;
    free_.erase(it);
    if (start > block) free_[block] = start - block;
    if (end > start + len) free_[start + len] = end - (start + len);
    return reinterpret_cast<uint64_t>(base_) + start;
  }
  return std::nullopt;
}

void Arena::give_back(uint64_t off, uint64_t len) {
  auto next = free_.lower_bound(off);
  if (next != free_.end() && next->first == off + len) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      off = prev->first;
      len += prev->second;
      free_.erase(prev);
    }
  }
  free_[off] = len;
  // The whole pages of the merged free block are nobody's now: drop them.
  const uint64_t first = round_up(off, kPage), last = (off + len) / kPage * kPage;
  if (last > first)
    fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(first),
              static_cast<off_t>(last - first));  // best effort: the pages stay valid either way
}

void Arena::release(uint64_t addr, size_t nbytes) { give_back(offset_of(addr), reserved_bytes(nbytes)); }

void Arena::release_all() {
  if (!attached()) return;
  free_.clear();
  give_back(0, size_);
}

bool Arena::contains(uint64_t addr, size_t n) const {
  const uint64_t base = reinterpret_cast<uint64_t>(base_);
  return attached() && addr >= base && addr - base <= size_ && n <= size_ - (addr - base);
}

}  // namespace chipmesh::sim::device

// The sim device's host arena: a file (a memfd the Worker made before it
// forked this chip) in which malloc places device allocations, so that the
// Worker, which maps the same file, reaches them with one memcpy instead of
// two through its request ring. Not thread-safe: device.cpp locks around it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>

namespace chipmesh::sim::device {

class Arena {
 public:
  Arena() = default;
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Duplicates fd and maps `size` bytes of it; DeviceError naming fd and
  // size when that fails, ConfigError when an arena is already attached.
  void attach(int fd, uint64_t size);
  bool attached() const { return base_ != nullptr; }

  // The address of nbytes (rounded up to 64) aligned to 64 bytes (a page
  // from one page on); nothing when the arena has no room left.
  std::optional<uint64_t> allocate(size_t nbytes);
  // Gives back what allocate(nbytes) returned at addr; whole free pages go
  // back to the system (hole punched), so freed memory costs nothing.
  void release(uint64_t addr, size_t nbytes);
  void release_all();

  // True when [addr, addr + n) lies inside the arena (n may be 0).
  bool contains(uint64_t addr, size_t n) const;
  uint64_t offset_of(uint64_t addr) const { return addr - reinterpret_cast<uint64_t>(base_); }

 private:
  static size_t reserved_bytes(size_t nbytes);
  void give_back(uint64_t off, uint64_t len);  // into free_, coalesced, pages punched
  int fd_ = -1;
  unsigned char* base_ = nullptr;
  uint64_t size_ = 0;
  std::map<uint64_t, uint64_t> free_;  // offset -> length, coalesced
};

}  // namespace chipmesh::sim::device

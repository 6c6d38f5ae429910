#include "worker/fork_exclusions.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "chipmesh/errors.h"

namespace chipmesh::worker {
namespace {

std::string describe(const void* ptr, size_t bytes) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%p, +%zu bytes)", ptr, bytes);
  return buf;
}

}  // namespace

void ForkExclusions::add(const void* ptr, size_t bytes) {
  if (ptr == nullptr || bytes == 0)
    throw ConfigError("Worker::exclude_from_chips: " + describe(ptr, bytes) +
                      " is empty: give the start and the size of the memory to leave out");
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(ptr);
  if (bytes > UINTPTR_MAX - first)
    throw ConfigError("Worker::exclude_from_chips: " + describe(ptr, bytes) + " wraps around the address space");
  const uintptr_t begin = (first + page - 1) / page * page;
  const uintptr_t end = (first + bytes) / page * page;
  if (begin >= end) return;  // no whole page of its own
  ranges_.push_back({ptr, bytes, begin, end});
}

void ForkExclusions::mark() {
  for (; marked_ < ranges_.size(); ++marked_) {
    const Range& r = ranges_[marked_];
    if (madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, MADV_DONTFORK) != 0) {
      const int err = errno;
      madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, MADV_DOFORK);  // what a partial mark did
      unmark();
      throw ConfigError("Worker::init: the memory given to exclude_from_chips " + describe(r.ptr, r.bytes) +
                        " cannot be left out of the chips' forks: madvise(MADV_DONTFORK) failed: " +
                        std::strerror(err) + (err == ENOMEM ? " (not mapped any more: freed before init()?)" : ""));
    }
  }
}

void ForkExclusions::guard_in_child() const noexcept {
  for (size_t i = 0; i < marked_; ++i) {
    const Range& r = ranges_[i];
    mmap(reinterpret_cast<void*>(r.begin), r.end - r.begin, PROT_NONE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  }
}

void ForkExclusions::unmark() noexcept {
  for (; marked_ > 0; --marked_) {
    const Range& r = ranges_[marked_ - 1];
    madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, MADV_DOFORK);
  }
}

}  // namespace chipmesh::worker

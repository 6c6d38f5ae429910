// The chips' communicator windows as the Worker sees them: a chip whose
// transport lends a window (transport table window_fd) says which fd; the
// parent takes a duplicate through the chip's pidfd (pidfd_getfd: the very
// process, never another one that reused its pid; /proc/<pid>/fd/<n> where
// that is refused) and maps it on the first copy that needs it. Copies to and from window addresses are then one memcpy
// here instead of two through the request ring, and need no chip CPU. Each
// chip may have several windows: the bring-up one and its domains'.
//
// Windows live in a size-limited file system (/dev/shm on sim), where a
// first write to a page can fail when it is full: every range is populated
// before it is first touched, so such a copy is an error of the call (it
// takes the ring, where the chip reports it), never a SIGBUS of the user's
// process. A range only read is populated with read faults: each maps 16
// pages the chip already wrote at once (fault-around), writable (a shared
// tmpfs mapping has nothing to write-protect), and still allocates a page
// missing from the file, failing when /dev/shm is full. On a 2-vCPU AMD EPYC
// VM the first copy_from of 4 MiB a chip had written took 0.6-1.1 ms this
// way against 1.0-1.8 with write faults; a copy_to into pages nobody has
// yet, the usual first upload, was 4-19 % faster with write faults.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "request_ring/chip_shared.h"  // kWindowFdUnknown, kNoWindowFd

namespace chipmesh::worker {

class WindowViews {
 public:
  explicit WindowViews(size_t chips) : chips_(chips) {}
  ~WindowViews() { clear(); }
  WindowViews(const WindowViews&) = delete;
  WindowViews& operator=(const WindowViews&) = delete;

  // A window of `chip`: device range [base, base + size), reachable through
  // fd `fd` of the process behind `pidfd` at file offset `offset`; mapped
  // lazily by find(). fd < 0: ignored.
  void add(size_t chip, uint64_t base, size_t size, int pidfd, int fd, uint64_t offset = 0);
  // Forgets (unmaps) the window of `chip` at `base`, if any.
  void remove(size_t chip, uint64_t base) noexcept;
  void clear() noexcept;  // unmaps every window
  // Where [ptr, ptr + n) of `chip` lies in this process, its pages had
  // (populated for `writing`, or for reading); nullptr when it is not inside
  // one of the chip's windows, the window cannot be mapped, or its pages
  // cannot be had (take the ring).
  unsigned char* find(size_t chip, uint64_t ptr, size_t n, bool writing = true);

 private:
  struct Window {
    uint64_t base = 0;
    size_t size = 0;
    int pidfd = -1;
    int fd = kNoWindowFd;
    uint64_t offset = 0;           // of the window in fd's file
    bool tried = false;            // open + mmap attempted
    unsigned char* map = nullptr;  // nullptr: none (yet)
    // Pages already populated (one bit each): a page of the window, once
    // had, stays (nothing punches windows), so each is populated only once.
    std::vector<uint64_t> populated;
  };
  static unsigned char* map(size_t chip, Window& w);
  // Populates the pages [first, last] of `w` not yet had; false when the
  // file system cannot give one.
  static bool populate(Window& w, size_t first, size_t last, size_t page, bool writing);
  static void unmap(Window& w) noexcept;
  std::vector<std::vector<Window>> chips_;
};

}  // namespace chipmesh::worker

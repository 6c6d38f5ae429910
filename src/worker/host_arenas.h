// The chips' host arenas as the Worker sees them: one memfd per chip, made
// before the forks (a name-less file: nothing in /dev/shm to leak, gone with
// the last process that holds it), handed to the chip's platform through the
// optional device-table entry attach_host_arena and mapped here too, once
// every chip is forked: each mapping the parent holds while it forks costs
// every fork (16 arenas made 16 forks 0.2-0.4 ms slower on the AMD EPYC VM
// of docs/PERFORMANCE.md). Device allocations the platform places in it are
// then one memcpy away from the parent (Worker::copy_to / copy_from),
// instead of two through the ring.
//
// The parent only ever touches ranges of allocations it made itself
// (Worker::malloc), recorded here with where they lie in its mapping; any
// other address takes the ring, where the chip checks it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace chipmesh::worker {

class HostArenas {
 public:
  // One arena of `bytes` per chip (0: none), not mapped yet. A chip whose
  // memfd or mapping cannot be made has none and keeps the ring; that is not
  // an error.
  HostArenas(size_t chips, uint64_t bytes);
  ~HostArenas();  // unmaps, closes what is still open
  HostArenas(const HostArenas&) = delete;
  HostArenas& operator=(const HostArenas&) = delete;

  uint64_t bytes() const { return bytes_; }
  // The chip's memfd, -1 when it has none (or after close_fds()).
  int fd(size_t chip) const { return chips_[chip].fd; }
  // Parent, once every chip is forked: maps each arena (MADV_DONTFORK); a
  // chip whose arena cannot be mapped keeps the ring for its copies.
  void map_all() noexcept;
  // Parent, after map_all(): the mappings are all it needs.
  void close_fds() noexcept;
  // In chip `chip` right after fork: closes every other chip's memfd (the
  // parent maps none before the forks, so none is inherited).
  void keep_only(size_t chip) noexcept;

  // Records an allocation of `chip` reported at `offset` of its arena;
  // ignored when the chip has no arena or the range does not fit it.
  void add(size_t chip, uint64_t ptr, size_t nbytes, uint64_t offset);
  void remove(size_t chip, uint64_t ptr);
  // Where [ptr, ptr + n) of `chip` lies in this process, or nullptr when it
  // is not entirely inside one recorded allocation.
  unsigned char* find(size_t chip, uint64_t ptr, size_t n) const;

 private:
  struct Allocation {
    size_t nbytes;
    unsigned char* host;
  };
  struct Chip {
    int fd = -1;
    unsigned char* map = nullptr;
    std::map<uint64_t, Allocation> allocations;  // device address -> allocation
  };
  uint64_t bytes_;
  std::vector<Chip> chips_;
};

}  // namespace chipmesh::worker

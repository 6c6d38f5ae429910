// Memory of the parent that no chip needs (Worker::exclude_from_chips): the
// whole pages of each range are MADV_DONTFORK while init() forks the chips,
// so the forks neither copy their page tables nor write-protect them (the
// parent's next writes stay plain writes, and nothing is held twice), and
// MADV_DOFORK again afterwards, so the process's other forks (a user's
// subprocess) inherit them as before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace chipmesh::worker {

class ForkExclusions {
 public:
  // ConfigError for a null pointer or 0 bytes. A range without a whole page
  // inside leaves nothing out (the chips get the pages it shares).
  void add(const void* ptr, size_t bytes);
  // Before the forks. ConfigError naming the range when one is no longer
  // mapped (freed before init()); the ranges marked so far are unmarked.
  void mark();
  // After the forks (also after a failed one); idempotent.
  void unmark() noexcept;
  // In a chip right after its fork: maps each marked range PROT_NONE, so
  // that none of the chip's own mappings lands there (a kernel touching an
  // excluded address then dies of SIGSEGV instead of reaching chip memory).
  void guard_in_child() const noexcept;

 private:
  struct Range {
    const void* ptr;
    size_t bytes;
    uintptr_t begin, end;  // its whole pages
  };
  std::vector<Range> ranges_;
  size_t marked_ = 0;  // ranges_[0 .. marked_) are MADV_DONTFORK now
};

}  // namespace chipmesh::worker

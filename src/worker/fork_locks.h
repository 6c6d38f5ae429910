// The process-wide locks a chip may take, held by the thread that forks the
// chips. fork() copies only the calling thread: a lock another thread of the
// parent held at that instant stays held in the child for good, and the chip
// hangs on it at its first log line or when it loads its platform (seen: two
// Workers brought up from two threads with CHIPMESH_DEBUG on, one bring-up in
// about a thousand timed out with both chips waiting on the log's lock).
// Holding them across the forks means no child starts with one held by
// anyone but the forking thread, which releases them in each child.
#pragma once

namespace chipmesh::worker {

class ForkLocks {
 public:
  // Takes them in the one order their holders nest in (the platform loader
  // runs plugin constructors that log; a log line reads the knobs). The
  // caller must hold none of them.
  ForkLocks();
  ~ForkLocks();  // release() unless done
  ForkLocks(const ForkLocks&) = delete;
  ForkLocks& operator=(const ForkLocks&) = delete;

  // In the parent after the forks, and in each child right after its fork
  // (its own copies, held on behalf of the thread that forked it).
  void release() noexcept;

 private:
  bool held_ = false;
};

}  // namespace chipmesh::worker

// The chips' window files: shared memory the Worker makes before the fork
// when the platform's transport can adopt a window (adopt_window), so that
// Worker::stage_input writes host inputs straight into the window at their
// buffers' offsets and bring-up copies nothing. One unnamed memfd per chip
// that has inputs staged this way: nothing of it can outlive the job.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace chipmesh::worker {

class WindowFiles {
 public:
  explicit WindowFiles(size_t chips) : fds_(chips, -1) {}
  ~WindowFiles() { close_all(); }
  WindowFiles(const WindowFiles&) = delete;
  WindowFiles& operator=(const WindowFiles&) = delete;

  // Chip `chip`'s file, made on first use with `bytes` (the requested window
  // size); its pages stay unallocated until staged. DeviceError on failure.
  int get_or_make(size_t chip, size_t bytes);
  // -1 when `chip` has none.
  int fd(size_t chip) const { return chip < fds_.size() ? fds_[chip] : -1; }
  // Every chip's file (-1: none), index = chip. A chip keeps its siblings'
  // through bring-up: its communicator maps them through these descriptors
  // rather than through /proc (sim's map_held_window).
  const std::vector<int>& all() const { return fds_; }
  // In the parent after the fork (each chip holds its own), or at the end.
  void close_all() noexcept;

 private:
  std::vector<int> fds_;
};

}  // namespace chipmesh::worker

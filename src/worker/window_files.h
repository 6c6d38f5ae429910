// The chips' window files: shared memory the Worker makes before the fork
// when the platform's transport can adopt a window (adopt_window), so that
// Worker::stage_input writes host inputs straight into the window at their
// buffers' offsets and bring-up copies nothing. Unnamed memfds: nothing of
// them can outlive the job. One file for every chip's window when the
// transport adopts windows at an offset (adopt_window_at) and the chips form
// one communicator of equal windows (each chip then maps it once, instead
// of every peer's file); else one file per chip that has inputs staged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace chipmesh::worker {

class WindowFiles {
 public:
  explicit WindowFiles(size_t chips) : fds_(chips, -1), offsets_(chips, 0) {}
  ~WindowFiles() { close_all(); }
  WindowFiles(const WindowFiles&) = delete;
  WindowFiles& operator=(const WindowFiles&) = delete;

  // Before the first get_or_make: every chip's window lies in one file of
  // `bytes`, chip i's at offsets[i] (page multiples).
  void share_one_file(std::vector<uint64_t> offsets, uint64_t bytes);
  bool shared() const { return shared_bytes_ > 0; }
  // Chip `chip`'s file, made on first use: the one file (which then holds
  // every chip's window), or one of the chip's own of `bytes` (the requested
  // window size). Its pages stay unallocated until staged. DeviceError on
  // failure.
  int get_or_make(size_t chip, size_t bytes);
  // -1 when `chip` has none.
  int fd(size_t chip) const;
  // Where chip `chip`'s window starts in fd(chip).
  uint64_t offset(size_t chip) const { return chip < offsets_.size() ? offsets_[chip] : 0; }
  // The descriptors open, each once. A chip keeps its siblings' through
  // bring-up: its communicator maps them through these descriptors rather
  // than through /proc (sim's map_held_window), then closes them.
  std::vector<int> open_fds() const;
  // In the parent after the fork (each chip holds its own), or at the end.
  void close_all() noexcept;

 private:
  static int make(const std::string& label, uint64_t bytes, const std::string& what);

  std::vector<int> fds_;  // per chip, without a shared file
  std::vector<uint64_t> offsets_;
  uint64_t shared_bytes_ = 0;
  int shared_fd_ = -1;
};

}  // namespace chipmesh::worker

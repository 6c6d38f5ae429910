// Windows a rank adopts instead of making (the Worker's window files, with
// host inputs already in them): adopt_window, a file of the rank's own with
// the window at offset 0, which the rank grows by its scratch; and
// adopt_window_at, a file that may hold every rank's window, one segment
// (window + scratch) apart, which nobody grows. When every rank adopted one
// file at offsets rank * segment, each maps the whole file once, as in the
// one-object way (comm_windows.cpp): N mappings per communicator instead
// of N x N (at 64 chips with stage_input, init() took 30 ms with one file
// per chip against 15 ms without inputs; docs/PERFORMANCE.md).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "chipmesh/errors.h"
#include "comm.h"
#include "system.h"
#include "common/fd_path.h"
#include "knobs/knobs.h"

namespace chipmesh::sim {

void SimComm::adopt_window(int fd) {
  if (context_) throw ConfigError("comm adopt_window: windows already allocated on rank " + std::to_string(rank_));
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) throw DeviceError("comm adopt_window: cannot duplicate fd " + std::to_string(fd) + ": " + errno_text(errno));
  if (adopted_fd_ >= 0) ::close(adopted_fd_);
  adopted_fd_ = own;
  given_fd_ = fd;
  adopted_at_ = false;
  adopted_offset_ = 0;
}

void SimComm::adopt_window_at(int fd, uint64_t offset) {
  if (offset % page_size() != 0)
    throw ConfigError("comm adopt_window_at: offset " + std::to_string(offset) +
                      " is not a multiple of the page size (" + std::to_string(page_size()) + ")");
  adopt_window(fd);
  adopted_at_ = true;
  adopted_offset_ = offset;
}

// Before the first barrier of alloc_windows: what peers need to map this
// rank's adopted window (the descriptor number it was given, the file's
// device and inode, its offset), and for adopt_window_at the check that
// the file holds the window, since nobody grows a file ranks share.
// DeviceError naming the file otherwise.
void SimComm::publish_adopted_file(size_t segment) {
  RankSlot& mine = ctrl_->slots[rank_];
  mine.adopted_window_fd = adopted_fd_;
  mine.given_window_fd = -1;
  mine.adopted_at = 0;
  if (adopted_fd_ < 0) return;
  struct stat st{};
  const bool known = fstat(adopted_fd_, &st) == 0;
  if (known) {
    mine.window_dev = static_cast<uint64_t>(st.st_dev);
    mine.window_ino = static_cast<uint64_t>(st.st_ino);
    mine.given_window_fd = given_fd_;
  }
  if (!adopted_at_) return;  // checked and grown by map_own_objects
  const uint64_t pages = adopted_offset_ / page_size();
  std::string why;
  if (!known)
    why = "fstat failed: " + errno_text(errno);
  else if (!S_ISREG(st.st_mode))
    why = "it is not a regular (shared memory) file";
  else if (st.st_uid != geteuid())
    why = "it is owned by uid " + std::to_string(st.st_uid) + ", not " + std::to_string(geteuid());
  else if (static_cast<uint64_t>(st.st_size) < adopted_offset_ || static_cast<uint64_t>(st.st_size) - adopted_offset_ < segment)
    why = "it holds " + std::to_string(st.st_size) + " bytes, fewer than the offset plus the window and its scratch (" +
          std::to_string(segment) + " bytes)";
  else if (pages >= kAdoptedAt)
    why = "the offset is beyond what the control block can say (" + std::to_string(kAdoptedAt) + " pages)";
  if (!why.empty())
    throw DeviceError("comm_alloc_windows: cannot use the window file rank " + std::to_string(rank_) +
                      " adopted at offset " + std::to_string(adopted_offset_) + " (" +
                      fd_path::format(pid_, adopted_fd_) + "): " + why);
  mine.adopted_at = kAdoptedAt | static_cast<uint32_t>(pages);
}

// After the first barrier, the same verdict on every rank: each adopted the
// same file (device and inode) through adopt_window_at at rank * segment.
bool SimComm::one_file_adopted_by_all(size_t segment) const {
  const RankSlot& first = ctrl_->slots[0];
  for (int r = 0; r < nranks_; ++r) {
    const RankSlot& s = ctrl_->slots[r];
    if (s.adopted_window_fd < 0 || !(s.adopted_at & kAdoptedAt) || s.window_dev != first.window_dev ||
        s.window_ino != first.window_ino)
      return false;
    if (uint64_t{s.adopted_at & ~kAdoptedAt} * page_size() != static_cast<uint64_t>(r) * segment) return false;
  }
  return true;
}

// Every rank adopted one file: map it whole, once. Each rank checked that
// its own range lies in the file before the first barrier, so the last
// rank's check covers the whole mapping. No name, so no second barrier.
void SimComm::map_adopted_file(size_t actual, size_t scratch, size_t segment) {
  const size_t total = one_object_bytes(actual, scratch, segment);
  const int fd = std::exchange(adopted_fd_, -1);
  window_fd_ = fd;  // kept for window_file(); closed by unmap_all
  void* map = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    throw DeviceError("comm_alloc_windows: cannot map the window file every rank adopted (" +
                      fd_path::format(pid_, fd) + ", " + std::to_string(total) + " bytes): " + errno_text(errno));
  all_windows_ = map;
  all_windows_bytes_ = total;
  for (int r = 0; r < nranks_; ++r) windows_[r] = static_cast<char*>(map) + static_cast<size_t>(r) * segment;
  knobs::test_pause_point("window_made");  // as the other ways: a kill now must still leave nothing
}

}  // namespace chipmesh::sim

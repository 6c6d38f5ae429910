#include "worker/window_files.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "chipmesh/errors.h"

namespace chipmesh::worker {

int WindowFiles::make(const std::string& label, uint64_t bytes, const std::string& what) {
  // Not exec'd, only forked: the chips inherit it despite MFD_CLOEXEC.
  const int fd = memfd_create(label.c_str(), MFD_CLOEXEC);
  if (fd < 0) throw DeviceError("cannot make " + what + ": memfd_create failed: " + std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    ::close(fd);
    throw DeviceError("cannot make " + what + " (" + std::to_string(bytes) + " bytes): ftruncate failed: " +
                      std::strerror(err));
  }
  return fd;
}

void WindowFiles::share_one_file(std::vector<uint64_t> offsets, uint64_t bytes) {
  offsets_ = std::move(offsets);
  offsets_.resize(fds_.size(), 0);
  shared_bytes_ = bytes;
}

int WindowFiles::get_or_make(size_t chip, size_t bytes) {
  if (shared()) {
    if (shared_fd_ < 0)
      shared_fd_ = make("chipmesh:windows", shared_bytes_,
                        "the window file of the " + std::to_string(fds_.size()) + " chips");
    return shared_fd_;
  }
  if (fds_[chip] < 0)
    fds_[chip] = make("chipmesh:window:" + std::to_string(chip), bytes, "the window file of chip " + std::to_string(chip));
  return fds_[chip];
}

int WindowFiles::fd(size_t chip) const {
  if (shared()) return shared_fd_;  // every chip's window lies in it once it exists
  return chip < fds_.size() ? fds_[chip] : -1;
}

std::vector<int> WindowFiles::open_fds() const {
  std::vector<int> open;
  if (shared_fd_ >= 0) open.push_back(shared_fd_);
  for (int fd : fds_)
    if (fd >= 0) open.push_back(fd);
  return open;
}

void WindowFiles::close_all() noexcept {
  if (shared_fd_ >= 0) ::close(std::exchange(shared_fd_, -1));
  for (int& fd : fds_)
    if (fd >= 0) ::close(std::exchange(fd, -1));
}

}  // namespace chipmesh::worker

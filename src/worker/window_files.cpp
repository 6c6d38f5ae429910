#include "worker/window_files.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "chipmesh/errors.h"

namespace chipmesh::worker {

int WindowFiles::get_or_make(size_t chip, size_t bytes) {
  if (fds_[chip] >= 0) return fds_[chip];
  const std::string label = "chipmesh:window:" + std::to_string(chip);
  // Not exec'd, only forked: the chips inherit it despite MFD_CLOEXEC.
  const int fd = memfd_create(label.c_str(), MFD_CLOEXEC);
  if (fd < 0)
    throw DeviceError("cannot make the window file of chip " + std::to_string(chip) +
                      ": memfd_create failed: " + std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    ::close(fd);
    throw DeviceError("cannot make the window file of chip " + std::to_string(chip) + " (" + std::to_string(bytes) +
                      " bytes): ftruncate failed: " + std::strerror(err));
  }
  fds_[chip] = fd;
  return fd;
}

void WindowFiles::close_all() noexcept {
  for (int& fd : fds_)
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
}

}  // namespace chipmesh::worker

#include "chipmesh/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "chipmesh/errors.h"
#include "common/process.h"
#include "common/fd_path.h"

namespace chipmesh {
namespace {

// shm_open's portable form: one leading '/', no other, and a name that fits
// in one /dev/shm directory entry.
void validate_name(const std::string& name, const char* op) {
  auto bad = [&](const std::string& why) {
    throw ConfigError("shared memory name '" + name + "' " + why + " (" + op + ")");
  };
  if (name.size() < 2 || name.size() > 255)
    bad("has length " + std::to_string(name.size()) + ", expected 2..255");
  if (name[0] != '/') bad("must start with '/'");
  if (name.find('/', 1) != std::string::npos) bad("must not contain '/' after the first character");
  if (name.find('\0') != std::string::npos) bad("must not contain a NUL byte");
}

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")" + process::resource_hint(err);
}

}  // namespace

SharedMemory::SharedMemory(std::string name, int fd, void* data, size_t size, size_t lead)
    : name_(std::move(name)), fd_(fd), data_(data), size_(size), lead_(lead) {}

bool SharedMemory::remove_if_own(const std::string& name) {
  validate_name(name, "remove_if_own");
  int fd = shm_open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
  if (fd < 0) return false;
  struct stat st;
  const bool own = fstat(fd, &st) == 0 && st.st_uid == geteuid();
  ::close(fd);
  return own && shm_unlink(name.c_str()) == 0;
}

SharedMemory SharedMemory::create(const std::string& name, size_t size) {
  validate_name(name, "create");
  // O_EXCL: never adopt (and later unlink) an object somebody else made.
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    throw DeviceError("cannot create shared memory '" + name + "' of size " +
                      std::to_string(size) + ": " + errno_text(err));
  }
  auto fail = [&](const char* what, int err) {
    // We created it, so we remove it: a failed create leaves nothing behind.
    ::close(fd);
    shm_unlink(name.c_str());
    throw DeviceError("cannot create shared memory '" + name + "' of size " +
                      std::to_string(size) + ": " + what + " failed: " + errno_text(err));
  };
  if (size > 0 && ftruncate(fd, static_cast<off_t>(size)) != 0) fail("ftruncate", errno);
  // Reserve every page now: on a full tmpfs a sparse object would be handed
  // out and SIGBUS its first writer instead of failing here with the reason.
  if (size > 0) {
    if (int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
      struct statvfs fs{};
      std::string free_space = fstatvfs(fd, &fs) == 0
                                   ? std::to_string(static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize)
                                   : std::string("unknown");
      ::close(fd);
      shm_unlink(name.c_str());
      throw DeviceError("cannot create shared memory '" + name + "' of size " + std::to_string(size) +
                        ": posix_fallocate failed: " + errno_text(err) + "; /dev/shm has " + free_space +
                        " bytes free");
    }
  }
  void* data = nullptr;
  if (size > 0) {
    data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) fail("mmap", errno);
  }
  return SharedMemory(name, fd, data, size);
}

SharedMemory SharedMemory::create_anonymous(const std::string& label, size_t size) {
  // Not MFD_CLOEXEC-sensitive: chips are forked, not exec'd, and inherit it.
  int fd = memfd_create(("chipmesh:" + label).c_str(), MFD_CLOEXEC);
  if (fd < 0) throw DeviceError("cannot create staging '" + label + "' of size " + std::to_string(size) + ": memfd_create failed: " + errno_text(errno));
  auto fail = [&](const char* what, int err) {
    ::close(fd);
    throw DeviceError("cannot create staging '" + label + "' of size " + std::to_string(size) + ": " + what +
                      " failed: " + errno_text(err));
  };
  if (size > 0 && ftruncate(fd, static_cast<off_t>(size)) != 0) fail("ftruncate", errno);
  // Reserve every page now (as create): never a SIGBUS at first write.
  if (size > 0)
    if (int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) fail("posix_fallocate", err);
  void* data = nullptr;
  if (size > 0) {
    data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) fail("mmap", errno);
  }
  return SharedMemory(fd_path::format(getpid(), fd), fd, data, size);
}

SharedMemory SharedMemory::view(int fd, uint64_t offset, size_t size, const std::string& label) {
  auto fail = [&](const std::string& why) {
    throw DeviceError("cannot stage '" + label + "' (" + std::to_string(size) + " bytes at offset " +
                      std::to_string(offset) + "): " + why);
  };
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) fail("cannot duplicate fd " + std::to_string(fd) + ": " + errno_text(errno));
  const std::string name = fd_path::format(getpid(), own);
  if (size == 0) return SharedMemory(name, own, nullptr, 0);
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t lead = offset % page;
  struct stat st{};
  if (fstat(own, &st) != 0 || static_cast<uint64_t>(st.st_size) < offset ||
      static_cast<uint64_t>(st.st_size) - offset < size) {
    ::close(own);
    fail("the file holds " + std::to_string(st.st_size) + " bytes");
  }
  // Reserve the pages now (as create): never a SIGBUS at the first write.
  if (int err = posix_fallocate(own, static_cast<off_t>(offset), static_cast<off_t>(size)); err != 0) {
    ::close(own);
    fail("posix_fallocate failed: " + errno_text(err));
  }
  void* map = mmap(nullptr, size + lead, PROT_READ | PROT_WRITE, MAP_SHARED, own, static_cast<off_t>(offset - lead));
  if (map == MAP_FAILED) {
    const int err = errno;
    ::close(own);
    fail("mmap failed: " + errno_text(err));
  }
  return SharedMemory(name, own, static_cast<char*>(map) + lead, size, lead);
}

namespace {

// The descriptor behind a create_anonymous name: inherited (the creator is
// this process or its parent), else reopened through /proc. -1 with errno.
int open_anonymous(const std::string& name, bool writable) {
  int pid = 0, fd = -1;
  if (!fd_path::parse(name, &pid, &fd) || pid <= 0) {
    errno = EINVAL;
    return -1;
  }
  if (fd_path::held_here(pid)) return fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return ::open(name.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
}

}  // namespace

SharedMemory SharedMemory::attach(const std::string& name, bool writable) {
  const bool anonymous = name.rfind("/proc/", 0) == 0;
  if (!anonymous) validate_name(name, "attach");
  const char* mode = writable ? "read-write" : "read-only";
  int fd = anonymous ? open_anonymous(name, writable)
                     : shm_open(name.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw DeviceError("shared memory '" + name + "' does not exist (attach)");
    throw DeviceError("cannot open shared memory '" + name + "' " + mode + " (attach): " +
                      errno_text(err));
  }
  auto fail = [&](const std::string& why) {
    ::close(fd);
    throw DeviceError("cannot attach shared memory '" + name + "' " + mode + ": " + why);
  };
  struct stat st{};
  if (fstat(fd, &st) != 0) fail("fstat failed: " + errno_text(errno));
  // Another user's object with the same name is another job's (or a planted
  // one); mapping it would mix their data into ours.
  if (st.st_uid != geteuid()) {
    fail("owned by uid " + std::to_string(st.st_uid) + ", not by this process's uid " +
         std::to_string(geteuid()));
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* data = nullptr;
  if (size > 0) {
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    data = mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED)
      fail("mmap of " + std::to_string(size) + " bytes failed: " + errno_text(errno));
  }
  return SharedMemory(name, fd, data, size);
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : name_(std::exchange(other.name_, std::string())),
      fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      lead_(std::exchange(other.lead_, 0)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    close();
    name_ = std::exchange(other.name_, std::string());
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    lead_ = std::exchange(other.lead_, 0);
  }
  return *this;
}

SharedMemory::~SharedMemory() { close(); }

void SharedMemory::close() {
  if (data_ != nullptr) munmap(static_cast<char*>(data_) - lead_, size_ + lead_);
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  fd_ = -1;
  size_ = 0;
  lead_ = 0;
  // name_ stays so unlink() still works after close().
}

void SharedMemory::unlink() {
  if (name_.empty() || is_anonymous()) return;  // nothing named
  if (shm_unlink(name_.c_str()) != 0 && errno != ENOENT) {
    int err = errno;
    throw DeviceError("cannot unlink shared memory '" + name_ + "': " + errno_text(err));
  }
}

}  // namespace chipmesh

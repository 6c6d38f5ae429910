// Move-only RAII handle on a named POSIX shared-memory object, used for host
// staging (inputs the parent fills before forking, outputs a chip fills).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace chipmesh {

class SharedMemory {
 public:
  // Creates a new object (fails if the name exists), sized and mapped
  // read-write, mode 0600. name: "/name" as for shm_open. ConfigError for a
  // bad name, DeviceError naming name, size and errno otherwise.
  static SharedMemory create(const std::string& name, size_t size);
  // An unnamed region (memfd, pages reserved like create): nothing appears
  // in /dev/shm, so nothing can be left there by any kill; the memory goes
  // with the last process holding it. Its name() is "/proc/<pid>/fd/<fd>":
  // processes forked after it (they inherit the descriptor) and any process
  // of this user that may open it attach() it by that name. `label` names it
  // in /proc/<pid>/maps and in errors.
  static SharedMemory create_anonymous(const std::string& label, size_t size);
  // A view of bytes [offset, offset + size) of the open shared-memory file
  // `fd` (a descriptor of its own is taken), mapped read-write, its pages
  // reserved as create() does. Its name() is "/proc/<pid>/fd/<fd>" as for
  // create_anonymous, naming the whole file (attach maps all of it; the
  // bytes are at `offset` there). Worker::stage_input places an input in
  // the chip's window file this way.
  static SharedMemory view(int fd, uint64_t offset, size_t size, const std::string& label);
  // Maps an existing object of this user (a shm name, or the name of a
  // create_anonymous region); refuses one owned by another user.
  static SharedMemory attach(const std::string& name, bool writable = false);
  // Removes `name` if it exists and belongs to this user (a stale object of
  // an earlier run); another user's object stays, even for root. True when
  // removed.
  static bool remove_if_own(const std::string& name);

  SharedMemory() = default;
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();  // closes, never unlinks

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& name() const { return name_; }
  bool is_open() const { return fd_ >= 0; }

  // Unmaps and closes; idempotent.
  void close();
  // Removes the name (mapping stays valid until close); ENOENT is not an
  // error; nothing to do for an anonymous region.
  void unlink();
  bool is_anonymous() const { return name_.rfind("/proc/", 0) == 0; }

 private:
  SharedMemory(std::string name, int fd, void* data, size_t size, size_t lead = 0);
  std::string name_;
  int fd_ = -1;
  void* data_ = nullptr;
  size_t size_ = 0;
  size_t lead_ = 0;  // a view's mapping starts this many bytes before data_ (a page boundary)
};

}  // namespace chipmesh

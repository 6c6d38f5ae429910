// comm_alloc_windows on sim: ranks agree on the size, each creates its own
// window object and maps every peer's, and the last to finish removes the
// names. A rank given a file (adopt_window: the Worker's window file, with
// host inputs already in it) makes that its window instead; it has no name,
// so peers open it through /proc/<pid>/fd/<fd>.
//
// Nothing is touched page by page at bring-up (issue 10): no fallocate, no
// MAP_POPULATE. tmpfs hands out zero-filled pages on first touch, so peers
// still only ever see zeros or data written later, and the page tables of a
// peer's window are built by the kernels that use it, for the pages they
// use, instead of N x N x window pages here (which made 64 MiB windows cost
// 60x what 1 MiB ones did). A /dev/shm too small for the job is caught up
// front by a free-space check; one filled by someone else later shows up as
// a SIGBUS of the chip that touches the page, which the Worker names.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "chipmesh/errors.h"
#include "comm.h"
#include "system.h"
#include "common/env.h"
#include "common/fd_path.h"
#include "common/status_map.h"
#include "knobs/knobs.h"
#include "device.h"

namespace chipmesh::sim {
namespace {

void* map_window(int fd, size_t size, uint64_t offset = 0) {
  return mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset));
}

// Where a rank's adopted window starts in its file: 0, or adopt_window_at's
// offset (RankSlot::adopted_at).
uint64_t adopted_offset_of(const RankSlot& slot) {
  return (slot.adopted_at & kAdoptedAt) ? uint64_t{slot.adopted_at & ~kAdoptedAt} * page_size() : 0;
}

// The size a file must have: exactly `bytes`, or no fewer.
struct FileSize {
  uint64_t bytes;
  bool at_least;
  bool fits(off_t size) const {
    return at_least ? static_cast<uint64_t>(size) >= bytes : static_cast<uint64_t>(size) == bytes;
  }
};

// A peer's window file holds its window: exactly `segment` bytes (a window
// of its own, grown by its owner), or at least offset + segment (a file
// ranks may share, adopt_window_at).
FileSize window_file_size(const RankSlot& slot, size_t segment) {
  if (slot.adopted_at & kAdoptedAt) return {adopted_offset_of(slot) + segment, true};
  return {segment, false};
}

// Every rank checks that the whole job's windows fit what /dev/shm has free
// now: the clear error comes at bring-up rather than as a SIGBUS mid-kernel.
// `fd` is this rank's fresh (still empty) object.
void check_free_space(int fd, const std::string& name, size_t segment, int nranks, size_t window, size_t scratch) {
  struct statvfs fs{};
  if (fstatvfs(fd, &fs) != 0) return;  // no verdict: let the first touch decide
  if (fs.f_blocks == 0) return;          // no size limit (an adopted memfd's internal mount)
  const unsigned long long free_bytes = static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize;
  const unsigned long long need = static_cast<unsigned long long>(segment) * static_cast<unsigned>(nranks);
  if (need <= free_bytes) return;
  throw DeviceError("comm_alloc_windows: /dev/shm has " + std::to_string(free_bytes) + " bytes free but the " +
                    std::to_string(nranks) + " windows of this communicator need " + std::to_string(need) + " (" +
                    std::to_string(nranks) + " x (window " + std::to_string(window) + " + scratch " +
                    std::to_string(scratch) + ")), creating " + name);
}

// An adopted file must be shared memory of this user no larger than the
// window (the transport grows it by the scratch; a larger one would not be
// a window of this size).
void check_adopted(int fd, const std::string& name, size_t actual) {
  struct stat st{};
  std::string why;
  if (fstat(fd, &st) != 0)
    why = "fstat failed: " + errno_text(errno);
  else if (!S_ISREG(st.st_mode))
    why = "it is not a regular (shared memory) file";
  else if (st.st_uid != geteuid())
    why = "it is owned by uid " + std::to_string(st.st_uid) + ", not " + std::to_string(geteuid());
  else if (static_cast<uint64_t>(st.st_size) > actual)
    why = "it holds " + std::to_string(st.st_size) + " bytes, more than the window of " + std::to_string(actual);
  if (why.empty()) return;
  ::close(fd);
  throw DeviceError("comm_alloc_windows: cannot use the adopted window file " + name + ": " + why);
}

// Sizes the object `fd` (described by `what`, e.g. "window /chipmesh_..")
// to `bytes` once the job's windows fit /dev/shm; on failure closes it,
// removes the name `unlink_name` (a new object's; "" for an adopted file)
// and throws. `parts` says what the bytes are, for the message.
void size_object(int fd, const std::string& what, const std::string& unlink_name, size_t bytes,
                 const std::string& parts, size_t segment, int nranks, size_t window, size_t scratch) {
  try {
    check_free_space(fd, what, segment, nranks, window, scratch);
  } catch (...) {
    ::close(fd);
    if (!unlink_name.empty()) shm_unlink(unlink_name.c_str());
    throw;
  }
  if (ftruncate(fd, static_cast<off_t>(bytes)) == 0) return;
  const int err = errno;
  ::close(fd);
  if (!unlink_name.empty()) shm_unlink(unlink_name.c_str());
  throw DeviceError("comm_alloc_windows: cannot allocate " + what + " of " + std::to_string(bytes) + " bytes " +
                    parts + " in /dev/shm: " + errno_text(err));
}

// Opens a peer's object `path` (a /dev/shm name, or a /proc/<pid>/fd/<n>
// path when `by_proc`) and checks that `uid` (this user) owns it and that
// its size fits `size`; CommError naming `what` otherwise.
int open_checked(const std::string& path, bool by_proc, FileSize size, uid_t uid, const std::string& what) {
  const int fd = by_proc ? ::open(path.c_str(), O_RDWR | O_CLOEXEC) : shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) throw CommError("comm_alloc_windows: cannot open " + what + ": " + errno_text(errno));
  struct stat st{};
  if (fstat(fd, &st) != 0 || st.st_uid != uid || !size.fits(st.st_size)) {
    ::close(fd);
    throw CommError("comm_alloc_windows: " + what + " has size " + std::to_string(st.st_size) + " or owner uid " +
                    std::to_string(st.st_uid) + ", expected " + (size.at_least ? "at least " : "") +
                    std::to_string(size.bytes) + " bytes owned by uid " + std::to_string(uid));
  }
  return fd;
}

// A peer's adopted window through this process's own descriptor of it:
// `slot.given_window_fd` open here on the same file (device and inode,
// owned by `uid`, holding the window). Null when not held here (another
// process tree, a number reused for something else, a file opened
// read-only): the caller opens it through /proc then.
void* map_held_window(const RankSlot& slot, size_t segment, uid_t uid) {
  const int fd = slot.given_window_fd;
  if (fd < 0) return nullptr;
  struct stat st{};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_dev) != slot.window_dev ||
      static_cast<uint64_t>(st.st_ino) != slot.window_ino || st.st_uid != uid ||
      !window_file_size(slot, segment).fits(st.st_size))
    return nullptr;
  void* map = map_window(fd, segment, adopted_offset_of(slot));
  return map == MAP_FAILED ? nullptr : map;
}

}  // namespace

size_t SimComm::segment_for(size_t requested) {
  if (requested == 0) throw ConfigError("comm_alloc_windows: window size must be > 0");
  const size_t page = page_size();
  if (requested > SIZE_MAX - page)
    throw ConfigError("comm_alloc_windows: window size " + std::to_string(requested) + " is too large");
  const size_t actual = (requested + page - 1) / page * page;
  // Each rank's object holds its window followed by its kernel scratch
  // (workSpace). Kernels do not know that: the scratch starts with a header
  // (comm.h) listing where this process maps every rank's scratch.
  const size_t scratch = (env::sim_workspace_bytes() + page - 1) / page * page;
  if (actual > SIZE_MAX - scratch)
    throw ConfigError("comm_alloc_windows: window size " + std::to_string(requested) + " + scratch " +
                      std::to_string(scratch) + " is too large");
  return actual + scratch;
}

// Each rank's window is an object of its own (its adopted file, or a new
// named one); every rank maps every peer's: N x N opens and mappings.
void SimComm::map_own_objects(size_t actual, size_t scratch, size_t segment) {
  // 1. My window: a new object is zero-filled, so peers can only ever see zeros
  //    or data written after this point. An adopted file (adopt_window)
  //    holds zeros too, except where the Worker placed host inputs.
  const bool adopted = adopted_fd_ >= 0;
  // Peers open an adopted window (it has no name) through /proc.
  const std::string my_name =
      adopted ? fd_path::format(pid_, adopted_fd_) : window_shm_name(pid_, token_, rank_);
  int fd = -1;
  if (adopted) {
    fd = std::exchange(adopted_fd_, -1);
    if (!adopted_at_) check_adopted(fd, my_name, actual);
  } else {
    remember_name(names::Kind::Shm, my_name);
    fd = shm_open(my_name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) throw DeviceError("comm_alloc_windows: cannot create window " + my_name + ": " + errno_text(errno));
  }
  // A file adopted at an offset may be shared: never grown (its range was
  // checked before the first barrier, publish_adopted_file).
  if (!adopted || !adopted_at_)
    size_object(fd, "window " + my_name, adopted ? "" : my_name, segment,
                "(window " + std::to_string(actual) + " + scratch " + std::to_string(scratch) + ")", segment,
                nranks_, actual, scratch);
  void* mine_map = map_window(fd, segment, adopted_offset_);  // 0 unless adopt_window_at
  int err = errno;
  if (mine_map == MAP_FAILED) {
    ::close(fd);
    throw DeviceError("comm_alloc_windows: cannot map window " + my_name + " (" + std::to_string(segment) +
                      " bytes): " + errno_text(err));
  }
  window_fd_ = fd;  // kept for window_fd(); the name goes below, the object stays
  windows_[rank_] = mine_map;
  knobs::test_pause_point("window_made");  // a named window exists: a kill now must still leave nothing
  collective_barrier("comm_alloc_windows (waiting for every window to exist)");

  // 2. Map every peer's window, checking owner and size.
  for (int r = 0; r < nranks_; ++r) {
    if (r == rank_) continue;
    void* held = map_held_window(ctrl_->slots[r], segment, uid_);
    if (held) {
      windows_[r] = held;
      continue;
    }
    const RankSlot& slot = ctrl_->slots[r];
    const int32_t pid = slot.pid.load(std::memory_order_acquire);
    const int32_t peer_fd = slot.adopted_window_fd;
    const std::string name = peer_fd >= 0 ? fd_path::format(pid, peer_fd) : window_shm_name(pid, token_, r);
    const int pfd = open_checked(name, peer_fd >= 0, window_file_size(slot, segment), uid_,
                                 "rank " + std::to_string(r) + "'s window " + name);
    void* map = map_window(pfd, segment, adopted_offset_of(slot));
    err = errno;
    ::close(pfd);
    if (map == MAP_FAILED)
      throw DeviceError("comm_alloc_windows: cannot map rank " + std::to_string(r) + "'s window " + name + ": " +
                        errno_text(err));
    windows_[r] = map;
  }
  collective_barrier("comm_alloc_windows (waiting for every rank to map the windows)", [this] {
    for (int r = 0; r < nranks_; ++r)
      if (ctrl_->slots[r].adopted_window_fd < 0)
        shm_unlink(window_shm_name(ctrl_->slots[r].pid.load(std::memory_order_acquire), token_, r).c_str());
  });
  forget_names();  // removed by the last arriver
}

// No rank adopted a file: rank 0 makes one object holding every rank's
// window and scratch (rank r's at r * segment) and every rank maps it once,
// N opens and mappings in all instead of N x N (each about 6 us here). It
// is zero-filled like a new window. The name goes once every rank has
// mapped it; the object stays until the last mapping does.
size_t SimComm::one_object_bytes(size_t actual, size_t scratch, size_t segment) const {
  size_t total = 0;
  if (__builtin_mul_overflow(segment, static_cast<size_t>(nranks_), &total) || total > static_cast<size_t>(INT64_MAX))
    throw ConfigError("comm_alloc_windows: " + std::to_string(nranks_) + " windows of " + std::to_string(segment) +
                      " bytes (window " + std::to_string(actual) + " + scratch " + std::to_string(scratch) +
                      ") overflow the size of one object");
  return total;
}

size_t SimComm::made_object_bytes(size_t actual, size_t scratch, size_t segment) const {
  const size_t windows = one_object_bytes(actual, scratch, segment);
  if (windows > static_cast<size_t>(INT64_MAX) - page_size())
    throw ConfigError("comm_alloc_windows: " + std::to_string(nranks_) + " windows of " + std::to_string(segment) +
                      " bytes and a page overflow the size of one object");
  return windows + page_size();
}

std::string SimComm::one_object_name() const {
  return segment_shm_name(ctrl_->slots[0].pid.load(std::memory_order_acquire), token_);
}

// Rank 0, before the barrier that shows every rank's request: its fd.
int SimComm::create_one_object(size_t actual, size_t scratch, size_t segment) {
  const size_t total = made_object_bytes(actual, scratch, segment);
  const std::string name = one_object_name();
  remember_name(names::Kind::Shm, name);
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw DeviceError("comm_alloc_windows: cannot create the windows' object " + name + ": " + errno_text(errno));
  size_object(fd, "the windows' object " + name, name, total,
              std::string("(") + std::to_string(nranks_) + " x (window " + std::to_string(actual) + " + scratch " +
                  std::to_string(scratch) + ") + a page)",
              segment, nranks_, actual, scratch);
  return fd;
}

// A request that differs, or a peer with a file of its own: rank 0's object
// goes unused.
void SimComm::drop_one_object(int fd) {
  ::close(fd);
  if (reused_.map) {
    munmap(reused_.map, reused_.bytes);  // a reused object has no name
    reused_ = CachedObject{};
  } else {
    shm_unlink(one_object_name().c_str());
  }
  forget_names();
}

namespace {

ObjectTail* tail_of(void* map, size_t bytes) {
  return reinterpret_cast<ObjectTail*>(static_cast<char*>(map) + bytes - page_size());
}

// Every rank of the communicator that used it last has released it: nobody
// reads or writes it any more.
bool released_by_all(const CachedObject& o) {
  return tail_of(o.map, o.bytes)->released.load(std::memory_order_acquire) == static_cast<uint32_t>(o.nranks);
}

// Zeroes the pages of [0, bytes) of `fd` that hold data (SEEK_DATA / SEEK_HOLE)
// through `map`: the next users find zeros and no page to fault in again.
// Where the file system cannot tell, all of it.
void zero_written_pages(int fd, void* map, size_t bytes) {
  off_t at = 0;
  const off_t end = static_cast<off_t>(bytes);
  while (at < end) {
    const off_t data = lseek(fd, at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) return;  // no data past `at`
    const off_t hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
    if (data < 0 || hole < 0) {
      std::memset(static_cast<char*>(map) + at, 0, static_cast<size_t>(end - at));
      return;
    }
    if (data >= end) return;
    const off_t stop = hole > end ? end : hole;
    std::memset(static_cast<char*>(map) + data, 0, static_cast<size_t>(stop - data));
    at = stop;
  }
}

}  // namespace

int SimComm::reuse_cached_object(size_t bytes) {
  std::optional<CachedObject> o = window_cache::take_owned(pid_, bytes, released_by_all);
  if (!o) return -1;
  // Before any peer can see it (they map it after the barrier that
  // follows). The tail is the object's own: cleared for the new count.
  zero_written_pages(o->fd, o->map, bytes - page_size());
  tail_of(o->map, bytes)->released.store(0, std::memory_order_relaxed);
  reused_ = *o;
  ctrl_->reused_fd = o->fd;
  ctrl_->reused_dev = o->dev;
  ctrl_->reused_ino = o->ino;
  ctrl_->reused = 1;  // read by the peers after the barrier that follows
  return o->fd;
}

void* SimComm::map_reused_object(size_t bytes) {
  const uint64_t dev = ctrl_->reused_dev, ino = ctrl_->reused_ino;
  if (std::optional<CachedObject> o = window_cache::take(dev, ino, bytes)) {
    window_fd_ = o->fd;
    return o->map;
  }
  const std::string path = fd_path::format(ctrl_->slots[0].pid.load(std::memory_order_acquire), ctrl_->reused_fd);
  const std::string what = "the windows' object " + path + " (rank 0's, reused)";
  const int fd = open_checked(path, true, FileSize{bytes, false}, uid_, what);
  struct stat st{};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_dev) != dev || static_cast<uint64_t>(st.st_ino) != ino) {
    ::close(fd);
    throw CommError("comm_alloc_windows: " + what + " is not the object rank 0 named (device " + std::to_string(dev) +
                    ", inode " + std::to_string(ino) + ")");
  }
  window_fd_ = fd;
  void* map = map_window(fd, bytes);
  if (map == MAP_FAILED)
    throw DeviceError("comm_alloc_windows: cannot map " + what + " (" + std::to_string(bytes) + " bytes): " +
                      errno_text(errno));
  return map;
}

bool SimComm::cache_one_object() noexcept {
  // Only a whole allocation of an object rank 0 made (never a file the
  // Worker lent: its contents outlive the chips in the user's views).
  if (!all_windows_ || !made_object_ || !context_ || failed_ || window_fd_ < 0) return false;
  const size_t bytes = all_windows_bytes_;
  if (bytes > window_cache::kMaxObjectBytes) return false;
  struct stat st{};
  if (fstat(window_fd_, &st) != 0) return false;
  // The last rank to release an object with much written punches it empty
  // (a cached object holds little memory); the tail page stays.
  if (tail_of(all_windows_, bytes)->released.fetch_add(1, std::memory_order_acq_rel) + 1 ==
          static_cast<uint32_t>(nranks_) &&
      static_cast<uint64_t>(st.st_blocks) * 512 > window_cache::kMaxDirtyBytes)
    fallocate(window_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(bytes - page_size()));
  return window_cache::put(CachedObject{window_fd_, all_windows_, bytes, nranks_, static_cast<uint64_t>(st.st_dev),
                                        static_cast<uint64_t>(st.st_ino), rank_ == 0 ? pid_ : 0});
}

// Every rank once the object exists (rank 0 passes the fd it made).
void SimComm::map_one_object(int fd, size_t actual, size_t scratch, size_t segment) {
  const size_t total = made_object_bytes(actual, scratch, segment);
  const std::string name = one_object_name();
  const bool reused = ctrl_->reused != 0;
  void* map = nullptr;
  if (reused && rank_ == 0) {
    window_fd_ = fd;  // reused_.fd
    map = std::exchange(reused_, CachedObject{}).map;
  } else if (reused) {
    map = map_reused_object(total);
  } else {
    if (rank_ != 0)
      fd = open_checked(name, false, FileSize{total, false}, uid_, "the windows' object " + name + " (made by rank 0)");
    window_fd_ = fd;  // kept for window_file(); closed by unmap_all
    map = map_window(fd, total);
    if (map == MAP_FAILED)
      throw DeviceError("comm_alloc_windows: cannot map the windows' object " + name + " (" + std::to_string(total) +
                        " bytes): " + errno_text(errno));
  }
  all_windows_ = map;
  all_windows_bytes_ = total;
  made_object_ = true;
  for (int r = 0; r < nranks_; ++r) windows_[r] = static_cast<char*>(map) + static_cast<size_t>(r) * segment;
  // The named object exists and this rank maps it: a kill now must still
  // leave nothing. (Every rank gets here without waiting for a paused one.)
  knobs::test_pause_point("window_made");
  collective_barrier("comm_alloc_windows (waiting for every rank to map the windows)", [name, reused] {
    if (!reused) shm_unlink(name.c_str());
  });
  forget_names();  // removed by the last arriver
}

uint64_t SimComm::alloc_windows(size_t requested) {
  if (failed_) throw CommError("comm_alloc_windows on rank " + std::to_string(rank_) +
                               ": communicator failed earlier; destroy it");
  if (context_) throw ConfigError("comm_alloc_windows: windows already allocated (" +
                                  std::to_string(actual_window_) + " bytes) on rank " + std::to_string(rank_));
  const size_t segment = segment_for(requested);
  const size_t page = page_size();
  const size_t actual = (requested + page - 1) / page * page;
  const size_t scratch = segment - actual;
  static_assert(CHIPMESH_WORKSPACE_HEADER_BYTES <= 4096, "the header fits the first page of the scratch");

  RankSlot& mine = ctrl_->slots[rank_];
  mine.requested_window = requested;
  mine.actual_window = actual;
  try {
    publish_adopted_file(segment);
  } catch (const Error& e) {
    abort_all(status_of(e), e.what());  // the peers are in the barrier below
    throw;
  }
  // Rank 0 makes the one object of every window (below) before the barrier
  // that shows it the other requests rather than after it, so that the
  // object exists when this barrier opens: one barrier less per allocation
  // (a few us each where three processes share two cores). A request that
  // differs, or a peer with a file of its own, undoes it.
  int object_fd = -1;
  if (rank_ == 0 && adopted_fd_ < 0) {
    try {
      object_fd = reuse_cached_object(made_object_bytes(actual, scratch, segment));
      if (object_fd < 0) object_fd = create_one_object(actual, scratch, segment);
    } catch (const Error& e) {
      abort_all(status_of(e), e.what());  // the peers are in the barrier below
      unlink_all_names();
      throw;
    }
  }
  try {
    collective_barrier("comm_alloc_windows (exchanging window sizes)");
  } catch (...) {
    if (object_fd >= 0) drop_one_object(object_fd);  // a peer died or the wait timed out
    throw;
  }

  // Every rank sees every request and reaches the same verdict.
  for (int r = 0; r < nranks_; ++r) {
    uint64_t theirs = ctrl_->slots[r].requested_window;
    if (theirs != requested) {
      if (object_fd >= 0) drop_one_object(object_fd);
      failed_ = true;
      throw CommError("comm_alloc_windows: window size mismatch: rank " + std::to_string(rank_) + " requested " +
                      std::to_string(requested) + " bytes but rank " + std::to_string(r) + " requested " +
                      std::to_string(theirs) + " bytes");
    }
  }

  // One object for every rank's window unless a rank adopted a file of its
  // own: then each rank makes (or adopts) its window and maps every peer's.
  bool any_adopted = false;
  for (int r = 0; r < nranks_; ++r) any_adopted = any_adopted || ctrl_->slots[r].adopted_window_fd >= 0;
  actual_window_ = actual;
  segment_size_ = segment;
  requested_window_ = requested;
  if (any_adopted && object_fd >= 0) drop_one_object(std::exchange(object_fd, -1));
  try {
    if (any_adopted && one_file_adopted_by_all(segment)) map_adopted_file(actual, scratch, segment);
    else if (any_adopted) map_own_objects(actual, scratch, segment);
    else map_one_object(object_fd, actual, scratch, segment);

    for (int r = 0; r < nranks_; ++r) device::register_region(reinterpret_cast<uint64_t>(windows_[r]), actual);
    workspace_size_ = scratch;
    if (scratch > 0) {
      workspace_ = static_cast<char*>(windows_[rank_]) + actual;
      // Only this rank writes its header, and only its own kernels read it.
      auto* header = static_cast<chipmesh_workspace_header*>(workspace_);
      for (int r = 0; r < nranks_; ++r)
        header->peerWorkSpace[r] = reinterpret_cast<uint64_t>(static_cast<char*>(windows_[r]) + actual);
      device::register_region(reinterpret_cast<uint64_t>(workspace_), scratch);
    }
  } catch (const Error& e) {
    abort_all(status_of(e), e.what());
    unlink_all_names();
    throw;
  }

  auto ctx = std::make_unique<CommContext>();
  std::memset(ctx.get(), 0, sizeof(CommContext));
  ctx->workSpace = reinterpret_cast<uint64_t>(workspace_);
  ctx->workSpaceSize = workspace_size_;
  ctx->rankId = static_cast<uint32_t>(rank_);
  ctx->rankNum = static_cast<uint32_t>(nranks_);
  ctx->winSize = actual;
  for (int r = 0; r < nranks_; ++r) {
    ctx->windowsIn[r] = reinterpret_cast<uint64_t>(windows_[r]);
    ctx->windowsOut[r] = ctx->windowsIn[r];
  }
  context_ = std::move(ctx);
  // device_ctx is a device address: the platform's copies may read it.
  device::register_region(reinterpret_cast<uint64_t>(context_.get()), sizeof(CommContext));
  return reinterpret_cast<uint64_t>(context_.get());
}

uint64_t SimComm::local_window_base() const {
  if (!context_) throw ConfigError("comm_get_local_window_base: no window yet on rank " + std::to_string(rank_) +
                                   " (call comm_alloc_windows first)");
  return context_->windowsIn[rank_];
}

int SimComm::window_fd() const {
  if (!context_) throw ConfigError("comm window_fd: no window yet on rank " + std::to_string(rank_) +
                                   " (call comm_alloc_windows first)");
  uint64_t offset = 0;
  const int fd = window_file(&offset);
  return offset == 0 ? fd : -1;  // offset 0 must be this rank's window
}

int SimComm::window_file(uint64_t* offset) const {
  if (!context_) throw ConfigError("comm window_file: no window yet on rank " + std::to_string(rank_) +
                                   " (call comm_alloc_windows first)");
  // Outside the one-object ways the window is this rank's (adopted) file
  // at adopt_window_at's offset, 0 otherwise.
  *offset = all_windows_ ? static_cast<uint64_t>(rank_) * segment_size_ : adopted_offset_;
  return window_fd_;
}

size_t SimComm::window_size() const {
  if (!context_) throw ConfigError("comm_get_window_size: no window yet on rank " + std::to_string(rank_) +
                                   " (call comm_alloc_windows first)");
  return actual_window_;
}

}  // namespace chipmesh::sim

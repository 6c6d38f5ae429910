// comm_init on sim: rank 0 creates the control segment and publishes the
// rootinfo file; the others wait for a rootinfo they can trust, map the
// segment, and claim their slot; everyone meets at the attach barrier, whose
// last arriver removes the names so that a crash afterwards leaks nothing.
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "chipmesh/errors.h"
#include "comm.h"
#include "common/deadline.h"
#include "common/env.h"
#include "common/futex.h"
#include "common/status_map.h"
#include "common/process.h"

namespace chipmesh::sim {
namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)); }

uint64_t random_token() {
  uint64_t token = 0;
  while (token == 0) {
    if (getrandom(&token, sizeof(token), 0) != static_cast<ssize_t>(sizeof(token)))
      throw CommError("getrandom failed: " + errno_text(errno));
  }
  return token;
}

void copy_name(char (&dst)[kShmNameBytes], const std::string& src) {
  std::snprintf(dst, sizeof(dst), "%s", src.c_str());
}

// Closes an fd on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Reads and checks the rootinfo file; returns false with a reason when it is
// absent or not one this rank may trust.
bool read_rootinfo(const std::string& path, const std::string& job, RootInfo* out, std::string* why) {
  Fd f{::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
  if (f.fd < 0) {
    *why = errno == ENOENT ? "no rootinfo file yet" : "cannot open rootinfo: " + errno_text(errno);
    return false;
  }
  struct stat st;
  if (fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = "rootinfo is not a regular file";
    return false;
  }
  if (st.st_uid != geteuid()) {
    *why = "rootinfo is owned by uid " + std::to_string(st.st_uid) + ", not by this uid " +
           std::to_string(geteuid());
    return false;
  }
  if (st.st_size != static_cast<off_t>(sizeof(RootInfo))) {
    *why = "rootinfo has " + std::to_string(st.st_size) + " bytes, expected " + std::to_string(sizeof(RootInfo));
    return false;
  }
  RootInfo ri;
  if (::pread(f.fd, &ri, sizeof(ri), 0) != static_cast<ssize_t>(sizeof(ri))) {
    *why = "short read of rootinfo";
    return false;
  }
  ri.ctrl_name[kShmNameBytes - 1] = '\0';
  ri.job[kJobTokenBytes - 1] = '\0';
  if (ri.magic != kRootInfoMagic || ri.version != kLayoutVersion || ri.size != sizeof(RootInfo) ||
      ri.ctrl_size != sizeof(CtrlBlock)) {
    *why = "rootinfo has a foreign magic, version or size";
    return false;
  }
  if (ri.uid != geteuid()) {
    *why = "rootinfo was written for uid " + std::to_string(ri.uid);
    return false;
  }
  if (job != ri.job) {
    *why = "rootinfo belongs to job '" + std::string(ri.job) + "', this rank is in job '" + job + "'";
    return false;
  }
  if (ri.root_start == 0 || process::start_time(ri.root_pid) != ri.root_start) {
    *why = "rootinfo is stale: its rank 0 (pid " + std::to_string(ri.root_pid) + ") is gone";
    return false;
  }
  *out = ri;
  return true;
}

// One inotify instance per thread, kept for the life of the process: closing
// one waits for an SRCU grace period in the kernel (measured 7-15 ms here),
// which would otherwise land on every non-root rank's comm_init.
int rendezvous_inotify() {
  thread_local int fd = -1;
  if (fd < 0) {
    fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd < 0) throw CommError("comm_init: inotify_init1 failed: " + errno_text(errno));
  }
  return fd;
}

void drain_inotify(int fd) {
  alignas(struct inotify_event) char buf[4096];
  while (::read(fd, buf, sizeof(buf)) > 0) {
  }
}

}  // namespace

std::string ctrl_shm_name(pid_t creator, uint64_t token) {
  char buf[kShmNameBytes];
  std::snprintf(buf, sizeof(buf), "/chipmesh_%08x_%08x_c", static_cast<unsigned>(creator),
                static_cast<unsigned>(token & 0xffffffffu));
  return buf;
}

std::string window_shm_name(pid_t creator, uint64_t token, int rank) {
  char buf[kShmNameBytes];
  std::snprintf(buf, sizeof(buf), "/chipmesh_%08x_%08x_w%d", static_cast<unsigned>(creator),
                static_cast<unsigned>(token & 0xffffffffu), rank);
  return buf;
}

SimComm::SimComm(int rank, int nranks, const std::string& rootinfo_path)
    : rank_(rank), nranks_(nranks), rootinfo_path_(rootinfo_path) {
  if (nranks < 1 || nranks > CHIPMESH_MAX_RANKS)
    throw ConfigError("comm_init: nranks=" + std::to_string(nranks) + " is outside [1, " +
                      std::to_string(CHIPMESH_MAX_RANKS) + "]");
  if (rank < 0 || rank >= nranks)
    throw ConfigError("comm_init: rank=" + std::to_string(rank) + " is outside [0, nranks=" +
                      std::to_string(nranks) + ")");
  if (rootinfo_path.empty()) throw ConfigError("comm_init: rootinfo_path is empty");
  timeout_ = env::comm_timeout();
  job_ = env::job_token();
  if (job_.size() >= kJobTokenBytes)
    throw ConfigError("CHIPMESH_JOB_TOKEN is " + std::to_string(job_.size()) + " bytes, at most " +
                      std::to_string(kJobTokenBytes - 1));
  watches_.resize(static_cast<size_t>(nranks));
  windows_.assign(static_cast<size_t>(nranks), nullptr);
  try {
    if (rank == 0) create_as_root();
    else join_published();
    check_peers("comm_init");
    collective_barrier("comm_init (waiting for every rank to attach)", [this] {
      // Everyone has mapped the control segment: the names can go.
      if (!ctrl_name_.empty()) shm_unlink(ctrl_name_.c_str());
      remove_rootinfo_if_ours();
    });
    forget_names();  // removed by the last arriver
  } catch (const Error& e) {
    if (ctrl_) {
      abort_all(status_of(e), e.what());
      if (!dynamic_cast<const TimeoutError*>(&e)) linger_for_late_joiners();
    }
    unlink_all_names();
    unmap_all();
    throw;
  }
}

void SimComm::create_as_root() {
  token_ = random_token();
  ctrl_name_ = ctrl_shm_name(getpid(), token_);
  remember_name(names::Kind::Shm, ctrl_name_);  // before it exists: no window for a leak
  int fd = shm_open(ctrl_name_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw CommError("comm_init: cannot create control segment " + ctrl_name_ + ": " + errno_text(errno));
  if (ftruncate(fd, sizeof(CtrlBlock)) != 0) {
    int err = errno;
    ::close(fd);
    shm_unlink(ctrl_name_.c_str());
    throw CommError("comm_init: cannot size control segment " + ctrl_name_ + " to " +
                    std::to_string(sizeof(CtrlBlock)) + " bytes: " + errno_text(err));
  }
  void* map = mmap(nullptr, sizeof(CtrlBlock), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    shm_unlink(ctrl_name_.c_str());
    throw CommError("comm_init: cannot map control segment " + ctrl_name_ + ": " + errno_text(err));
  }
  // A new segment is zero-filled, which is the valid initial state of every
  // atomic in it; only the identity fields need writing.
  ctrl_ = static_cast<CtrlBlock*>(map);
  ctrl_->magic = kCtrlMagic;
  ctrl_->version = kLayoutVersion;
  ctrl_->nranks = static_cast<uint32_t>(nranks_);
  ctrl_->token = token_;
  ctrl_->uid = geteuid();
  ctrl_->root_pid = getpid();
  ctrl_->root_start = process::start_time(getpid());
  std::snprintf(ctrl_->job, sizeof(ctrl_->job), "%s", job_.c_str());
  ctrl_->attached.store(1, std::memory_order_relaxed);
  claim_slot();
  publish_rootinfo();
}

void SimComm::publish_rootinfo() {
  RootInfo ri{};
  ri.magic = kRootInfoMagic;
  ri.version = kLayoutVersion;
  ri.size = sizeof(RootInfo);
  ri.token = token_;
  ri.uid = geteuid();
  ri.root_pid = getpid();
  ri.root_start = ctrl_->root_start;
  ri.nranks = static_cast<uint32_t>(nranks_);
  ri.ctrl_size = sizeof(CtrlBlock);
  copy_name(ri.ctrl_name, ctrl_name_);
  std::snprintf(ri.job, sizeof(ri.job), "%s", job_.c_str());

  // Write a private temp file, then rename: readers never see a partial file,
  // and a stale file from a crashed run is replaced atomically.
  char suffix[64];
  std::snprintf(suffix, sizeof(suffix), ".tmp.%d.%016llx", static_cast<int>(getpid()),
                static_cast<unsigned long long>(token_));
  std::string tmp = rootinfo_path_ + suffix;
  remember_name(names::Kind::File, tmp);
  remember_name(names::Kind::Rootinfo, rootinfo_path_);
  int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    throw ConfigError("comm_init: cannot create rootinfo '" + rootinfo_path_ + "' (via " + tmp + "): " +
                      errno_text(errno));
  bool ok = ::write(fd, &ri, sizeof(ri)) == static_cast<ssize_t>(sizeof(ri));
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), rootinfo_path_.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    throw CommError("comm_init: cannot publish rootinfo '" + rootinfo_path_ + "': " + errno_text(err));
  }
}

void SimComm::remove_rootinfo_if_ours() noexcept {
  RootInfo ri;
  int fd = ::open(rootinfo_path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  bool ours = ::pread(fd, &ri, sizeof(ri), 0) == static_cast<ssize_t>(sizeof(ri)) &&
              ri.magic == kRootInfoMagic && ri.token == token_;
  ::close(fd);
  // A newer communicator may already have replaced the file: leave it.
  if (ours) ::unlink(rootinfo_path_.c_str());
}

void SimComm::join_published() {
  // Watch the directory before the first look, so a rename that lands
  // between the look and the wait still wakes us.
  std::filesystem::path path(rootinfo_path_);
  std::string dir = path.has_parent_path() ? path.parent_path().string() : ".";
  const int in = rendezvous_inotify();
  const int watch = inotify_add_watch(in, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB);
  if (watch < 0)
    throw ConfigError("comm_init: cannot watch directory '" + dir + "' of rootinfo_path '" + rootinfo_path_ +
                      "': " + errno_text(errno));
  struct Unwatch {
    int in, watch;
    ~Unwatch() {
      inotify_rm_watch(in, watch);
      drain_inotify(in);
    }
  } unwatch{in, watch};

  Deadline deadline(timeout_);
  std::string why;
  for (;;) {
    if (try_attach(&why)) return;
    if (deadline.expired())
      throw TimeoutError("comm_init: rank " + std::to_string(rank_) + " of " + std::to_string(nranks_) +
                         " timed out after " + std::to_string(deadline.budget_ms()) +
                         " ms waiting for rank 0 to publish rootinfo '" + rootinfo_path_ + "' (" + why + ")");
    // Block until the directory changes; the slice bounds how long a stale
    // file whose owner just died goes unnoticed.
    struct pollfd pfd{in, POLLIN, 0};
    auto slice = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline.next_slice(std::chrono::milliseconds(200)));
    if (::poll(&pfd, 1, static_cast<int>(slice.count()) + 1) > 0) drain_inotify(in);
  }
}

bool SimComm::try_attach(std::string* why) {
  RootInfo ri;
  if (!read_rootinfo(rootinfo_path_, job_, &ri, why)) return false;
  int fd = shm_open(ri.ctrl_name, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::string("control segment ") + ri.ctrl_name + " of the rootinfo is gone: " + errno_text(errno);
    return false;
  }
  struct stat st;
  bool ok = fstat(fd, &st) == 0;
  if (!ok || st.st_uid != geteuid() || st.st_size != static_cast<off_t>(sizeof(CtrlBlock))) {
    ::close(fd);
    *why = std::string("control segment ") + ri.ctrl_name + " has a foreign owner or size";
    return false;
  }
  void* map = mmap(nullptr, sizeof(CtrlBlock), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    *why = std::string("cannot map control segment ") + ri.ctrl_name + ": " + errno_text(errno);
    return false;
  }
  auto* ctrl = static_cast<CtrlBlock*>(map);
  if (ctrl->magic != kCtrlMagic || ctrl->version != kLayoutVersion || ctrl->token != ri.token ||
      ctrl->nranks != ri.nranks || ctrl->uid != geteuid()) {
    munmap(map, sizeof(CtrlBlock));
    *why = std::string("control segment ") + ri.ctrl_name + " does not match the rootinfo (token or layout)";
    return false;
  }
  ctrl_ = ctrl;
  ctrl_->attached.fetch_add(1, std::memory_order_acq_rel);
  futex::wake(&ctrl_->attached);
  token_ = ri.token;
  ctrl_name_ = ri.ctrl_name;
  watches_[0] = process::Watch(ri.root_pid, ri.root_start);
  if (ri.nranks != static_cast<uint32_t>(nranks_)) {
    std::string msg = "comm_init: nranks mismatch: rank 0 created the communicator with nranks=" +
                      std::to_string(ri.nranks) + " but rank " + std::to_string(rank_) + " (pid " +
                      std::to_string(getpid()) + ") called comm_init with nranks=" + std::to_string(nranks_);
    abort_all(CHIPMESH_ERR_COMM, msg);
    throw CommError(msg);
  }
  claim_slot();
  return true;
}

void SimComm::claim_slot() {
  RankSlot& slot = ctrl_->slots[rank_];
  int32_t expected = 0;
  if (!slot.pid.compare_exchange_strong(expected, static_cast<int32_t>(getpid()), std::memory_order_acq_rel)) {
    std::string msg = "comm_init: rank " + std::to_string(rank_) + " claimed twice: by pid " +
                      std::to_string(expected) + " and by pid " + std::to_string(getpid());
    abort_all(CHIPMESH_ERR_COMM, msg);
    throw CommError(msg);
  }
  slot.start_time = process::start_time(getpid());
}

}  // namespace chipmesh::sim

// comm_init on sim: rank 0 creates the control segment and publishes the
// rootinfo through the rendezvous store (src/rendezvous: a file at
// rootinfo_path, or a slot of a Worker's shared table, which may lend the
// control block too, for its bring-up and domains); the
// others wait in the store for a rootinfo they can trust, map the segment,
// and claim their slot; everyone meets at the attach barrier, whose last
// arriver removes the names so that a crash afterwards leaks nothing.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "chipmesh/errors.h"
#include "comm.h"
#include "system.h"
#include "common/deadline.h"
#include "common/futex.h"
#include "common/process.h"
#include "common/status_map.h"
#include "rendezvous/memory_store.h"
#include "rootinfo.h"

namespace chipmesh::sim {
namespace {

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

}  // namespace

std::string ctrl_shm_name(pid_t creator, uint64_t token) {
  char buf[kShmNameBytes];
  std::snprintf(buf, sizeof(buf), "/chipmesh_%08x_%08x_c", static_cast<unsigned>(creator),
                static_cast<unsigned>(token & 0xffffffffu));
  return buf;
}

std::string segment_shm_name(pid_t creator, uint64_t token) {
  char buf[kShmNameBytes];
  std::snprintf(buf, sizeof(buf), "/chipmesh_%08x_%08x_s", static_cast<unsigned>(creator),
                static_cast<unsigned>(token & 0xffffffffu));
  return buf;
}

std::string window_shm_name(pid_t creator, uint64_t token, int rank) {
  char buf[kShmNameBytes];
  std::snprintf(buf, sizeof(buf), "/chipmesh_%08x_%08x_w%d", static_cast<unsigned>(creator),
                static_cast<unsigned>(token & 0xffffffffu), rank);
  return buf;
}

SimComm::SimComm(int rank, int nranks, const std::string& rootinfo_path, CommOptions options)
    : rank_(rank), nranks_(nranks), rootinfo_path_(rootinfo_path), timeout_(options.timeout),
      job_(std::move(options.job)) {
  if (nranks < 1 || nranks > CHIPMESH_MAX_RANKS)
    throw ConfigError("comm_init: nranks=" + std::to_string(nranks) + " is outside [1, " +
                      std::to_string(CHIPMESH_MAX_RANKS) + "]");
  if (rank < 0 || rank >= nranks)
    throw ConfigError("comm_init: rank=" + std::to_string(rank) + " is outside [0, nranks=" +
                      std::to_string(nranks) + ")");
  if (rootinfo_path.empty()) throw ConfigError("comm_init: rootinfo_path is empty");
  rendezvous::Opened opened = rendezvous::make_store(rootinfo_path);
  store_ = std::move(opened.store);
  store_key_ = std::move(opened.key);
  if (job_.size() >= kJobTokenBytes)
    throw ConfigError("comm_init: job token '" + job_ + "' is " + std::to_string(job_.size()) + " bytes, at most " +
                      std::to_string(kJobTokenBytes - 1));
  watches_.resize(static_cast<size_t>(nranks));
  windows_.assign(static_cast<size_t>(nranks), nullptr);
  try {
    if (rank == 0) create_as_root();
    else join_published();
    // An abort (or a dead peer) shows in the barrier's wait.
    collective_barrier("comm_init (waiting for every rank to attach)", [this] {
      // Everyone has mapped the control segment: the names can go.
      if (!ctrl_name_.empty()) shm_unlink(ctrl_name_.c_str());
      remove_rootinfo_if_ours();
    });
    forget_names();  // removed by the last arriver
  } catch (const Error& e) {
    if (ctrl_) {
      abort_all(status_of(e), e.what());
      // A rank 0 that never published has no late joiners to wait for.
      if (!dynamic_cast<const TimeoutError*>(&e) && (rank_ != 0 || published_)) linger_for_late_joiners();
    }
    unlink_all_names();
    unmap_all();
    throw;
  }
}

static_assert(sizeof(CtrlBlock) <= rendezvous::MemoryTable::kControlBytes,
              "the control block fits a control area a Worker's rendezvous table lends");

void SimComm::create_as_root() {
  refuse_live_foreign_rootinfo();
  token_ = random_token();
  if (void* lent = store_->shared_control(sizeof(CtrlBlock))) {
    // Lent by the store's owner to this communicator alone: zeroed here,
    // before the rootinfo that names it goes out.
    std::memset(lent, 0, sizeof(CtrlBlock));
    ctrl_ = static_cast<CtrlBlock*>(lent);
    ctrl_lent_ = true;
  } else {
    create_ctrl_segment();
  }
  // A new segment is zero-filled, which is the valid initial state of every
  // atomic in it; only the identity fields need writing.
  ctrl_->magic = kCtrlMagic;
  ctrl_->version = kLayoutVersion;
  ctrl_->nranks = static_cast<uint32_t>(nranks_);
  ctrl_->token = token_;
  ctrl_->uid = uid_;
  ctrl_->root_pid = pid_;
  ctrl_->root_start = process::start_time(pid_);
  std::snprintf(ctrl_->job, sizeof(ctrl_->job), "%s", job_.c_str());
  ctrl_->attached.store(1, std::memory_order_relaxed);
  claim_slot();
  publish_rootinfo();
}

void SimComm::create_ctrl_segment() {
  ctrl_name_ = ctrl_shm_name(pid_, token_);
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
  ctrl_ = static_cast<CtrlBlock*>(map);
}

std::string SimComm::in_use_message(const RootInfo& other) const {
  return "comm_init: rank " + std::to_string(rank_) + " of " + std::to_string(nranks_) + " (job '" + job_ +
         "'): " + store_->describe(store_key_) + " is in use by job '" + std::string(other.job) + "' (rank 0 pid " +
         std::to_string(other.root_pid) + ", alive); two jobs cannot share a rootinfo path";
}

void SimComm::refuse_live_foreign_rootinfo() const {
  std::string why;
  std::optional<rendezvous::Bytes> value = store_->check(store_key_, &why);
  RootInfo ri;
  if (!value || !decode_rootinfo(*value, &ri, &why) || ri.uid != uid_) return;  // absent or not ours to judge
  if (ri.root_pid == pid_ || ri.root_start == 0 || process::start_time(ri.root_pid) != ri.root_start) return;
  throw CommError(in_use_message(ri));  // a live job's rank 0 published it: replacing it would strand that job
}

void SimComm::publish_rootinfo() {
  RootInfo ri{};
  ri.magic = kRootInfoMagic;
  ri.version = kLayoutVersion;
  ri.size = sizeof(RootInfo);
  ri.token = token_;
  ri.uid = uid_;
  ri.root_pid = pid_;
  ri.root_start = ctrl_->root_start;
  ri.nranks = static_cast<uint32_t>(nranks_);
  ri.ctrl_size = sizeof(CtrlBlock);
  copy_name(ri.ctrl_name, ctrl_lent_ ? std::string(kStoreControlName) : ctrl_name_);
  std::snprintf(ri.job, sizeof(ri.job), "%s", job_.c_str());

  // Register every name the store may create before it exists (a temp
  // file, then the rootinfo), so an emergency cleanup never misses one.
  std::vector<std::string> names = store_->local_names(store_key_);
  for (size_t i = 0; i < names.size(); ++i)
    remember_name(i + 1 == names.size() ? names::Kind::Rootinfo : names::Kind::File, names[i]);
  try {
    // Only where nothing is: of two rank 0s racing on one path exactly one
    // publishes (a plain replace let the later one strand the earlier job).
    // Something there: a live job's is refused naming it; a stale one (its
    // rank 0 gone), one of this process's or an unreadable one is removed,
    // then publishing is tried again.
    const rendezvous::Bytes mine = encode_rootinfo(ri);
    for (int attempt = 0; !store_->set_if_absent(store_key_, mine); ++attempt) {
      refuse_live_foreign_rootinfo();
      if (attempt == 100)
        throw CommError("comm_init: the rootinfo '" + rootinfo_path_ +
                        "' kept being replaced by other publishers; choose a path of this job alone");
      std::string why;
      RootInfo other;
      auto v = store_->check(store_key_, &why);
      if (!v) {
        // Not a file this user's store reads (another owner's, unreadable):
        // replaced as before, for a file of ours can never be that.
        if (why == "no file yet") continue;
        store_->set(store_key_, mine);
        break;
      }
      if (decode_rootinfo(*v, &other, &why) && other.uid != uid_)
        throw CommError("comm_init: the rootinfo '" + rootinfo_path_ + "' is another user's (uid " +
                        std::to_string(other.uid) + "); choose another path");
      store_->remove_if(store_key_, [](const rendezvous::Bytes& v) {
        RootInfo old;
        std::string reason;
        if (!decode_rootinfo(v, &old, &reason) || old.root_pid == getpid()) return true;
        return old.root_start == 0 || process::start_time(old.root_pid) != old.root_start;  // stale
      });
    }
    published_ = true;
  } catch (const Error& e) {
    throw_status(status_of(e), "comm_init: cannot publish rootinfo '" + rootinfo_path_ + "': " + e.what());
  }
}

void SimComm::remove_rootinfo_if_ours() noexcept {
  // A newer communicator may already have replaced it: only ours goes.
  if (store_) store_->remove_if(store_key_, [this](const rendezvous::Bytes& v) { return rootinfo_has_token(v, token_); });
}

void SimComm::join_published() {
  store_->wait(store_key_, timeout_, [this](const rendezvous::Bytes& v, std::string* why) { return try_attach(v, why); },
               "comm_init: rank " + std::to_string(rank_) + " of " + std::to_string(nranks_));
}

bool SimComm::trusted(const rendezvous::Bytes& value, RootInfo* out, process::Watch* root,
                      std::string* why) const {
  RootInfo ri;
  if (!decode_rootinfo(value, &ri, why)) return false;
  if (ri.uid != uid_) {
    *why = "rootinfo was written for uid " + std::to_string(ri.uid);
    return false;
  }
  // A pidfd pins the process; the watch checks it is the one that published
  // (its start time: a /proc read, skipped where the store's values are
  // fresh) and tells whether it has exited (a zombie too).
  const uint64_t expected_start = store_->values_are_fresh() ? 0 : ri.root_start;
  process::Watch watch = ri.root_start != 0 ? process::Watch(ri.root_pid, expected_start) : process::Watch();
  const bool root_alive = watch.valid() && !watch.exited();
  if (job_ != ri.job) {
    // A live job owns the path: waiting cannot help (it removes the rootinfo
    // only once its own ranks are in), so fail now and name it.
    if (root_alive) throw CommError(in_use_message(ri));
    *why = "rootinfo belongs to job '" + std::string(ri.job) + "', this rank is in job '" + job_ + "'";
    return false;
  }
  if (!root_alive) {
    *why = "rootinfo is stale: its rank 0 (pid " + std::to_string(ri.root_pid) + ") is gone";
    return false;
  }
  *out = ri;
  *root = std::move(watch);
  return true;
}

bool SimComm::try_attach(const rendezvous::Bytes& value, std::string* why) {
  RootInfo ri;
  process::Watch root;
  if (!trusted(value, &ri, &root, why)) return false;
  if (std::strcmp(ri.ctrl_name, kStoreControlName) == 0) {
    void* lent = store_->shared_control(sizeof(CtrlBlock));
    if (!lent) throw CommError("comm_init: the rootinfo at " + store_->describe(store_key_) +
                               " puts the control block in memory its address does not lend");
    return attach_ctrl(static_cast<CtrlBlock*>(lent), true, ri, std::move(root), why);
  }
  int fd = shm_open(ri.ctrl_name, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::string("control segment ") + ri.ctrl_name + " of the rootinfo is gone: " + errno_text(errno);
    return false;
  }
  struct stat st;
  bool ok = fstat(fd, &st) == 0;
  if (!ok || st.st_uid != uid_ || st.st_size != static_cast<off_t>(sizeof(CtrlBlock))) {
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
  return attach_ctrl(static_cast<CtrlBlock*>(map), false, ri, std::move(root), why);
}

bool SimComm::attach_ctrl(CtrlBlock* ctrl, bool lent, const RootInfo& ri, process::Watch root, std::string* why) {
  if (ctrl->magic != kCtrlMagic || ctrl->version != kLayoutVersion || ctrl->token != ri.token ||
      ctrl->nranks != ri.nranks || ctrl->uid != uid_) {
    if (!lent) munmap(ctrl, sizeof(CtrlBlock));
    *why = std::string("control segment ") + ri.ctrl_name + " does not match the rootinfo (token or layout)";
    return false;
  }
  ctrl_ = ctrl;
  ctrl_lent_ = lent;
  ctrl_->attached.fetch_add(1, std::memory_order_acq_rel);
  futex::wake(&ctrl_->attached);
  token_ = ri.token;
  if (!lent) ctrl_name_ = ri.ctrl_name;
  watches_[0] = std::move(root);
  if (ri.nranks != static_cast<uint32_t>(nranks_)) {
    std::string msg = "comm_init: nranks mismatch: rank 0 created the communicator with nranks=" +
                      std::to_string(ri.nranks) + " but rank " + std::to_string(rank_) + " (pid " +
                      std::to_string(pid_) + ") called comm_init with nranks=" + std::to_string(nranks_);
    abort_all(CHIPMESH_ERR_COMM, msg);
    throw CommError(msg);
  }
  claim_slot();
  return true;
}

void SimComm::claim_slot() {
  RankSlot& slot = ctrl_->slots[rank_];
  int32_t expected = 0;
  if (!slot.pid.compare_exchange_strong(expected, static_cast<int32_t>(pid_), std::memory_order_acq_rel)) {
    std::string msg = "comm_init: rank " + std::to_string(rank_) + " claimed twice: by pid " +
                      std::to_string(expected) + " and by pid " + std::to_string(pid_);
    abort_all(CHIPMESH_ERR_COMM, msg);
    throw CommError(msg);
  }
  slot.start_time = process::start_time(pid_);
}

}  // namespace chipmesh::sim

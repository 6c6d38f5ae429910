// The sim communicator: ranks are processes on one host; every rank's window
// is a POSIX shared-memory object that all ranks map.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chipmesh/comm.h"
#include "common/process.h"
#include "comm_layout.h"
#include "name_registry.h"
#include "window_cache.h"
#include "rendezvous/store.h"

namespace chipmesh::sim {

// Per-communicator settings, resolved from chipmesh_comm_options_t and the
// environment defaults (comm.cpp).
struct CommOptions {
  std::chrono::milliseconds timeout;
  std::string job;  // job token; "" = none
};

class SimComm {
 public:
  // Rendezvous through rootinfo_path (comm_rendezvous.cpp).
  SimComm(int rank, int nranks, const std::string& rootinfo_path, CommOptions options);
  ~SimComm();
  SimComm(const SimComm&) = delete;
  SimComm& operator=(const SimComm&) = delete;

  // comm_windows.cpp
  uint64_t alloc_windows(size_t requested);
  uint64_t local_window_base() const;
  size_t window_size() const;
  // This rank's window object, kept open for other processes of the user
  // (/proc/<pid>/fd/<fd>): the transport table's window_fd. -1 when the
  // window lies in the communicator's one object at an offset other than 0.
  int window_fd() const;
  // The object that holds this rank's window and where (the transport
  // table's window_file): this rank's own object at 0, or the
  // communicator's one object at rank * segment.
  int window_file(uint64_t* offset) const;
  // The transport table's adopt_window: the next alloc_windows makes this
  // file (a descriptor of our own, dup'ed here) this rank's window.
  void adopt_window(int fd);
  // adopt_window_at: the window is the file's bytes from `offset` (a page
  // multiple); the file may hold other ranks' windows and is never grown.
  void adopt_window_at(int fd, uint64_t offset);
  // What a window of `requested` bytes takes in a file (rounded window +
  // scratch): the adopted_window_stride of the transport table, and the
  // size of each rank's mapping. ConfigError for 0 or an overflow.
  static size_t segment_for(size_t requested);

  void barrier();

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }

 private:
  // --- rendezvous (comm_rendezvous.cpp) ---
  void create_as_root();
  // The control block as a shared-memory object of its own (no store lends one).
  void create_ctrl_segment();
  // Takes `ctrl` (lent by the store, or mapped from the object the rootinfo
  // names) when it matches the rootinfo; false with why otherwise.
  bool attach_ctrl(CtrlBlock* ctrl, bool lent, const RootInfo& ri, process::Watch root, std::string* why);
  void join_published();
  // Format and trust checks of a rootinfo read from the store.
  // false (with why) for a rootinfo worth waiting past: absent, stale, of
  // another user. Throws CommError for one of a live other job.
  // `root` gets a watch of the publishing rank 0, opened once: the same
  // pidfd judges it alive here and watches it afterwards (one /proc read).
  bool trusted(const rendezvous::Bytes& value, RootInfo* out, process::Watch* root, std::string* why) const;
  // Rank 0: CommError when the path holds a live other communicator's rootinfo.
  void refuse_live_foreign_rootinfo() const;
  std::string in_use_message(const RootInfo& other) const;
  // Attaches to the communicator a trusted rootinfo names; false with the
  // reason when it cannot (yet), an Error when the communicator must fail.
  bool try_attach(const rendezvous::Bytes& value, std::string* why);
  void claim_slot();
  void publish_rootinfo();
  void remove_rootinfo_if_ours() noexcept;

  // --- collective waits and failure (comm.cpp) ---
  // Arrive at the shared barrier; the last arriver runs on_last (noexcept)
  // before releasing the others. `what` names the phase in errors.
  void collective_barrier(const char* what, const std::function<void()>& on_last = {});
  // Stacked barrier waits in a row before a rank moves off a shared core.
  static constexpr int kStackedBarrierWaits = 8;
  // The barrier's wait before it sleeps for generation `gen` to pass;
  // returns released()'s last value.
  template <typename Released>
  bool spin_in_barrier(Released&& released, uint32_t gen);
  // Throws when the communicator was aborted, a claimed peer died or the
  // owner of its rendezvous abandoned it.
  void check_peers(const char* what);
  // "rank 2 (pid 1234), ..." for claimed peers that have exited; "" if none.
  std::string exited_peers();
  // The rendezvous's owner gave it up (Store::abandoned): a rank that never
  // joined, so no pid to watch, will not come (a Worker's domain member
  // that died first).
  bool rendezvous_abandoned() const;
  [[noreturn]] void throw_aborted(const char* what) const;
  // Marks the communicator failed for every rank (first message wins) and
  // wakes all waiters, so peers fail now instead of at their deadline.
  void abort_all(int status, const std::string& message) noexcept;
  // On a collective failure during comm_init: wait (briefly) until every
  // rank has mapped the control segment, so none is left waiting for a
  // rootinfo file that is already gone.
  void linger_for_late_joiners() noexcept;
  // Removes every name this communicator may have created (failure paths).
  void unlink_all_names() noexcept;
  void unmap_all() noexcept;
  // alloc_windows' three ways to make and map the windows (comm_windows.cpp).
  void map_own_objects(size_t actual, size_t scratch, size_t segment);
  void publish_adopted_file(size_t segment);
  bool one_file_adopted_by_all(size_t segment) const;
  void map_adopted_file(size_t actual, size_t scratch, size_t segment);
  size_t one_object_bytes(size_t actual, size_t scratch, size_t segment) const;
  // The object rank 0 makes: every window and scratch, then the tail page
  // (ObjectTail).
  size_t made_object_bytes(size_t actual, size_t scratch, size_t segment) const;
  std::string one_object_name() const;
  int create_one_object(size_t actual, size_t scratch, size_t segment);
  void drop_one_object(int fd);
  void map_one_object(int fd, size_t actual, size_t scratch, size_t segment);
  // Rank 0: a cached object of `bytes` that every rank of its last
  // communicator has released (window_cache.h), zeroed and published in
  // the control block; -1 when none.
  int reuse_cached_object(size_t bytes);
  // The one object's mapping on a peer when rank 0 reuses a cached object:
  // this process's own cached mapping of it, or a fresh one through
  // /proc/<rank 0>/fd/<n>. Sets window_fd_.
  void* map_reused_object(size_t bytes);
  // At destroy: keeps the one object's mapping for reuse and counts this
  // rank in its tail; false when it must be unmapped.
  bool cache_one_object() noexcept;
  // Names this process created, registered for emergency_cleanup until they
  // are removed (name_registry.h).
  void remember_name(names::Kind kind, const std::string& name);
  void forget_names() noexcept;

  int rank_;
  int nranks_;
  // This process's ids, read once: a domain's allocation asked for them
  // about ten times per rank, a system call each (~1 us on a PVM guest).
  const pid_t pid_ = ::getpid();
  const uid_t uid_ = ::geteuid();
  std::string rootinfo_path_;
  std::unique_ptr<rendezvous::Store> store_;  // where rank 0 publishes the rootinfo
  std::string store_key_;
  std::chrono::milliseconds timeout_;
  uint64_t token_ = 0;
  std::string job_;
  std::string ctrl_name_;
  CtrlBlock* ctrl_ = nullptr;
  bool ctrl_lent_ = false;  // ctrl_ is the store's (shared_control): never unmapped here
  std::vector<process::Watch> watches_;  // index = rank; opened when claimed
  bool failed_ = false;
  bool published_ = false;  // rank 0: its rootinfo went out
  std::vector<int> name_slots_;

  // windows
  size_t requested_window_ = 0;
  size_t actual_window_ = 0;
  size_t segment_size_ = 0;  // window + scratch: the size of each mapping
  std::vector<void*> windows_;  // index = rank, this process's mapping
  // One object for every rank's window (no rank adopted one): this
  // process's one mapping of it, nranks * segment_size_ bytes; else null.
  void* all_windows_ = nullptr;
  size_t all_windows_bytes_ = 0;  // its mapping
  CachedObject reused_;  // rank 0: the cached object it reuses, until map_one_object takes it
  // all_windows_ maps the object rank 0 made (map_one_object), not a file
  // the Worker lent (map_adopted_file): only such an object is cached.
  bool made_object_ = false;
  int window_fd_ = -1;          // my window object (window_fd()); closed by unmap_all
  int adopted_fd_ = -1;         // adopt_window's file until alloc_windows takes it
  int given_fd_ = -1;           // the number adopt_window was given (RankSlot::given_window_fd)
  bool adopted_at_ = false;     // through adopt_window_at: a file ranks may share, never grown
  uint64_t adopted_offset_ = 0;  // adopt_window_at's offset (0 otherwise): where the adopted file holds the window
  void* workspace_ = nullptr;
  size_t workspace_size_ = 0;
  std::unique_ptr<CommContext> context_;
};

}  // namespace chipmesh::sim

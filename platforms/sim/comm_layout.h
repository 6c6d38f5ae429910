// What sim ranks share: the rootinfo file rank 0 publishes, and the control
// segment every rank maps. Both carry magic, version, sizes, owner uid and a
// per-communicator random token so that nothing left by a crashed run, another
// job or another user is ever mistaken for the communicator being built.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "chipmesh/comm.h"

namespace chipmesh::sim {

inline constexpr uint64_t kRootInfoMagic = 0x31544f4f524d4843ULL;  // "CHMROOT1"
inline constexpr uint64_t kCtrlMagic = 0x314c5254434d4843ULL;      // "CHMCTRL1"
inline constexpr uint32_t kLayoutVersion = 4;  // 2: RankSlot::adopted_window_fd; 3: given_window_fd, adopted_at, window_dev/ino; 4: CtrlBlock::reused_*, ObjectTail
// RankSlot::adopted_at of a window adopted through adopt_window_at: this
// bit, and the offset in pages below it.
inline constexpr uint32_t kAdoptedAt = 0x80000000u;
inline constexpr size_t kJobTokenBytes = 64;
inline constexpr size_t kShmNameBytes = 32;  // names are at most 31 characters
inline constexpr size_t kAbortMessageBytes = 512;
// RootInfo::ctrl_name when the control block lives in memory the store
// lends (Store::shared_control), not in a shared-memory object.
inline constexpr char kStoreControlName[] = "@store";

// The rootinfo file (binary, written to a temp name and renamed into place).
struct RootInfo {
  uint64_t magic;
  uint32_t version;
  uint32_t size;          // sizeof(RootInfo)
  uint64_t token;         // random per communicator; also in the control block
  uint32_t uid;           // owner; must equal the reader's euid
  int32_t root_pid;       // rank 0
  uint64_t root_start;    // rank 0's start time: a reused pid does not match
  uint32_t nranks;
  uint32_t reserved;
  uint64_t ctrl_size;     // sizeof(CtrlBlock)
  char ctrl_name[kShmNameBytes];
  char job[kJobTokenBytes];  // CHIPMESH_JOB_TOKEN of rank 0 ("" when unset)
};

// One cache line per rank, written mostly by its owner.
struct alignas(64) RankSlot {
  std::atomic<int32_t> pid;          // 0 = unclaimed; claimed by CAS
  std::atomic<uint32_t> arrived_gen; // last barrier generation + 1 it reached
  uint64_t start_time;               // owner's start time, for liveness
  uint64_t requested_window;         // comm_alloc_windows argument
  uint64_t actual_window;
  // An adopted window has no name: peers open /proc/<pid>/fd/<this>.
  // -1: the window is the named object window_shm_name(pid, token, rank).
  int32_t adopted_window_fd;
  // The CPU the owner ran on when it last arrived at or waited in a
  // barrier, plus one (0: not seen yet; a segment of an older build leaves
  // it so). Peers read it to tell a rank that shares their core.
  std::atomic<int32_t> cpu;
  // The descriptor number adopt_window was given (-1: none) and the file's
  // identity. Ranks forked from one parent inherit each other's window
  // files at the same number: a peer that holds this number for the same
  // file (device and inode) maps it without opening /proc/<pid>/fd/<n>,
  // about 4 us each, N x N at bring-up.
  int32_t given_window_fd;
  // 0: adopt_window (a file of the owner's own, window at offset 0), or
  // kAdoptedAt | offset in pages (adopt_window_at: a file ranks may share).
  uint32_t adopted_at;
  uint64_t window_dev;
  uint64_t window_ino;
};

// The control segment: rendezvous, barrier, abort.
struct CtrlBlock {
  uint64_t magic;
  uint32_t version;
  uint32_t nranks;
  uint64_t token;
  uint32_t uid;
  int32_t root_pid;
  uint64_t root_start;
  char job[kJobTokenBytes];

  // Barrier: arrival count and generation on separate lines (less bouncing).
  alignas(64) std::atomic<uint32_t> bar_arrived;
  alignas(64) std::atomic<uint32_t> bar_gen;
  std::atomic<uint32_t> bar_sleepers;  // waiters inside futex_wait

  // Processes that mapped this segment (mismatched ones too): failing ranks
  // give late joiners a moment to see the abort before removing the names.
  alignas(64) std::atomic<uint32_t> attached;

  // Abort: 0 none, 1 being written, 2 message readable. First writer wins.
  alignas(64) std::atomic<uint32_t> abort_state;
  int32_t abort_rank;
  int32_t abort_status;  // chipmesh_status of the original failure
  char abort_message[kAbortMessageBytes];

  // Rank 0 reuses a cached one-object window (window_cache.h): 1, and the
  // descriptor it holds of the object and the object's identity; 0 (as
  // zeroed) when it made a new one.
  alignas(64) uint32_t reused;
  int32_t reused_fd;
  uint64_t reused_dev;
  uint64_t reused_ino;

  RankSlot slots[CHIPMESH_MAX_RANKS];
};

// The page after the last rank's scratch in the one object sim makes
// (window_cache.h): how many ranks of the communicator that used it last
// have released it. Its owner reuses it once all have.
struct ObjectTail {
  std::atomic<uint32_t> released;
};

static_assert(std::atomic<int32_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "cross-process atomics must be lock-free");
static_assert(sizeof(RankSlot) == 64, "one cache line per rank");

// "/chipmesh_<pid>_<token>_c", "/chipmesh_<pid>_<token>_w<rank>" and (every
// rank's window in one object, made by rank 0) "/chipmesh_<pid>_<token>_s":
// the creator's pid lets a cleaner tell a live job's objects from a dead
// one's.
std::string ctrl_shm_name(pid_t creator, uint64_t token);
std::string window_shm_name(pid_t creator, uint64_t token, int rank);
std::string segment_shm_name(pid_t creator, uint64_t token);

}  // namespace chipmesh::sim

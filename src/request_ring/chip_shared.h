// What a Worker and its chip processes share: one anonymous MAP_SHARED region
// made before the forks (so no name exists that a crash could leak), holding
// a header and one ChipShared block per chip.
//
// Requests travel through a ring of kRingDepth entries per chip: the parent
// fills entry[req % depth] and bumps req_seq; the chip runs entries in order
// and bumps done_seq. Copies carry their data in chunk seq % kChunkSlots,
// so up to kChunkSlots chunks are in flight and the parent's and the chip's
// memcpy overlap. Copies of memory in the chip's host arena (host_arenas.h)
// skip the ring: the parent copies straight into its mapping. The parent
// sleeps on the header's `events`; a completion, a failure or a chip death
// bumps it and wakes the parent only when the parent sleeps (and, for a
// completion, only the one named in wake_parent_at).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "chipmesh/bootstrap_channel.h"
#include "chipmesh/kernel.h"
#include "rendezvous/memory_store.h"

namespace chipmesh::worker {

// 128 entries: a stream of small tasks (an allreduce per entry) runs far
// ahead of the parent, which then leaves the cores to the chips instead of
// waiting for room after every completion. 16 chunks of 256 KiB, used by
// copies (entry seq uses chunk seq % kChunkSlots): even a 1 MiB copy is a
// 4-stage pipeline in which the parent's and the chip's memcpy overlap.
inline constexpr uint32_t kRingDepth = 128;
// A full ring is refilled once this many entries have drained (refilling
// 64 at a time held a core the chips needed too long on 4 ranks;
// PERFORMANCE.md).
inline constexpr uint32_t kRefillBurst = 16;
inline constexpr uint32_t kChunkSlots = 16;
// A stream reads a chip's completions once per this many requests (and
// whenever the ring may be full): a failure stops the others' kernels that
// much later at most, and the parent does not read the chip's completion
// line after every submission.
inline constexpr uint32_t kInspectEvery = 8;
inline constexpr size_t kChunkBytes = size_t{256} << 10;
static_assert(kRingDepth % kChunkSlots == 0, "seq % kChunkSlots stays consistent across the wrap of seq");
inline constexpr size_t kMaxTaskTensors = 16;
inline constexpr size_t kMaxTaskScalars = 32;
inline constexpr size_t kMaxLibraryPath = 1024;
inline constexpr size_t kMaxKernelName = 128;
inline constexpr size_t kErrorBytes = 1024;
inline constexpr size_t kFaultReportBytes = 1024;  // ChipShared::fault_report

// Flush: copy every store_to_host buffer into its output staging (after
// tasks submitted with Task::flush_outputs = false).
enum class Op : uint32_t { None = 0, Task, Malloc, Free, CopyTo, CopyFrom, Shutdown, CommCreate, CommDestroy, Flush };

// A task with at most this many tensors and scalars carries them in its
// ring entry; one with more carries all of them in the entry's EntryExtra.
inline constexpr size_t kInlineTensors = 4;
inline constexpr size_t kInlineScalars = 8;

// TaskDesc::flags. kTaskFlushOutputs: flush the store_to_host buffers
// after a successful kernel (Task::flush_outputs). kTaskRepeatable: the
// parent may grant runs of this entry beyond the first (grant_repeat).
inline constexpr uint32_t kTaskFlushOutputs = 1;
inline constexpr uint32_t kTaskRepeatable = 2;

// Hot fields first: a task of the kernel before with a few scalars and
// tensors is read by the chip from the entry's first lines only, and the
// parent rewrites no more of the entry than that.
struct TaskDesc {
  uint32_t num_tensors;
  uint32_t num_scalars;
  uint32_t flags;  // kTaskFlushOutputs | kTaskRepeatable
  // Nonzero: the library and kernel are those of the task the parent queued
  // on this chip before (its strings are then not written here).
  uint32_t same_kernel;
  // The CommContext the kernel gets: a domain's device_ctx on this chip, or
  // 0 for the bring-up communicator's.
  uint64_t comm_ctx;
  uint64_t scalars[kInlineScalars];   // num_scalars <= kInlineScalars
  chipmesh_tensor tensors[kInlineTensors];  // num_tensors <= kInlineTensors
};

// CommCreate: join a domain's communicator (comm_init + comm_alloc_windows)
// as `rank` of `nranks`, meeting at `rootinfo`; the chip fills the outputs.
// (CommDestroy carries the communicator's `handle` in Entry::a.)
struct CommDesc {
  char rootinfo[kMaxLibraryPath];
  int32_t rank;
  int32_t nranks;
  uint64_t window_size;
  uint64_t timeout_ms;  // deadline of the communicator's waits
  // outputs
  uint64_t handle;
  uint64_t device_ctx;
  uint64_t local_window_base;
  uint64_t actual_window_size;
  int32_t window_fd;  // the fd on the window the chip lends the parent, or kNoWindowFd
  uint64_t window_offset;  // where the window lies in that fd's file
};

// One request of the ring: what every request reads and writes, a few
// lines (the first holds the request, a task's counts and its
// communicator). 128 of them span 14 pages: the parent's and the chip's
// first pass through a fresh ring faults on those only (an entry of 3.7 KiB
// with its strings cost a fault of each side per request, ~4 us, for the
// first 128 requests after init).
struct Entry {
  Op op;
  int32_t status;  // chipmesh_status (or a kernel's own code); 0 = success (cleared by the parent's commit)
  uint64_t a;      // address (dst / src / ptr), malloc size, CommDestroy's handle, or Flush's number of chips flushing
  uint64_t b;      // byte count
  uint64_t result; // malloc's pointer
  uint64_t arena_offset;  // malloc: where it lies in the chip's host arena (CHIPMESH_NO_ARENA_OFFSET: not there)
  TaskDesc task;   // Op::Task
};

// What a request needs only now and then, in an array beside the ring, so
// that its pages are touched only when used: the names of a task whose
// kernel differs from the one before, more tensors or scalars than an
// entry holds, a domain's communicator, and the error text of a failure.
struct EntryExtra {
  uint64_t scalars[kMaxTaskScalars];         // a task's, when num_scalars > kInlineScalars
  chipmesh_tensor tensors[kMaxTaskTensors];  // a task's, when num_tensors > kInlineTensors
  char kernel[kMaxKernelName];               // unless TaskDesc::same_kernel
  char library[kMaxLibraryPath];
  CommDesc comm;                             // Op::CommCreate
  char error[kErrorBytes];  // "<kind>: <message>" when status != 0 (only then written)
};

// Where a task's tensors and scalars lie: in its entry up to the inline
// limits, else all of them in its extra part (the parent writes, the chip
// reads through these).
template <typename D, typename X>
auto* task_tensors(D& task, X& extra) {
  return task.num_tensors <= kInlineTensors ? task.tensors : extra.tensors;
}
template <typename D, typename X>
auto* task_scalars(D& task, X& extra) {
  return task.num_scalars <= kInlineScalars ? task.scalars : extra.scalars;
}

static_assert(offsetof(Entry, task) + offsetof(TaskDesc, scalars) == 64,
              "an entry's first line holds the request, the task's counts and its communicator");

// ChipShared::window_fd before the chip has said (the parent then takes
// the ring), and when its window has no fd to lend.
inline constexpr int32_t kWindowFdUnknown = -2;
inline constexpr int32_t kNoWindowFd = -1;

struct alignas(4096) ChipShared {
  unsigned char mailbox[CHIP_BOOTSTRAP_MAILBOX_SIZE];
  alignas(64) std::atomic<uint32_t> req_seq;       // parent -> chip (chip sleeps on it)
  std::atomic<uint32_t> chip_sleeping;
  alignas(64) std::atomic<uint32_t> done_seq;      // chip -> parent
  // The done_seq from which a completion wakes a sleeping parent (set by
  // the parent before it sleeps; a failure wakes it regardless): a parent
  // waiting for a whole stream is not woken by each of its completions.
  std::atomic<uint32_t> wake_parent_at;
  alignas(64) std::atomic<uint32_t> abort;         // parent -> running kernels
  // The CPU the chip last ran on (futex::current_cpu), for the parent's
  // spin: a waiter never spins on the core of the process it waits for.
  alignas(64) std::atomic<int32_t> cpu;
  // The fd (in the chip) on its bring-up window that the parent may open
  // as /proc/<pid>/fd/<n> (worker/window_views.h): kWindowFdUnknown until
  // the chip has said, kNoWindowFd when it has none. window_offset: where
  // the window lies in that file, written before window_fd.
  std::atomic<int32_t> window_fd;
  std::atomic<uint64_t> window_offset;
  // The BootstrapStep the chip's bring-up is at (chipmesh/chip_worker.h),
  // for the parent's message when the bring-up times out.
  std::atomic<uint32_t> bringup_step;
  // Repeats of the chip's latest task entry (see grant_repeat): on a line
  // of its own, which stays in the chip's cache unless the parent grants.
  alignas(64) std::atomic<uint64_t> repeat;
  // The chip's last words (chip/fault_report.h): what the fault that killed
  // it hit, then the signal, stored after the text. The parent reads them
  // only once it has found the chip dead of that signal.
  alignas(64) std::atomic<int32_t> fault_signo;
  char fault_report[kFaultReportBytes];
  alignas(64) Entry entries[kRingDepth];
  alignas(4096) EntryExtra extras[kRingDepth];
  alignas(4096) unsigned char chunks[kChunkSlots][kChunkBytes];

  // Request `seq`'s entry, its extra part and its copy chunk: the one place
  // seq maps to slots.
  Entry& entry(uint32_t seq) { return entries[seq % kRingDepth]; }
  EntryExtra& extra(uint32_t seq) { return extras[seq % kRingDepth]; }
  unsigned char* chunk(uint32_t seq) { return chunks[seq % kChunkSlots]; }
};

// A directory the job owns (a rootinfo directory the Worker made), listed
// for the chips: each chip's terminating-signal handler rmdir()s them after
// its own cleanup, so a job whose parent dies first leaves none (rmdir
// only: a directory goes once the rank that owns its rootinfo has removed
// that). `state`: 0 free, 1 being written, 2 set.
inline constexpr size_t kOwnedDirPath = 252;
struct OwnedDir {
  std::atomic<uint32_t> state;
  char path[kOwnedDirPath];
};
inline constexpr size_t kMaxOwnedDirs = 16;

struct alignas(64) SharedHeader {
  std::atomic<uint32_t> events;           // the parent's futex word: bumped to wake it
  std::atomic<uint32_t> parent_sleeping;  // parent is (about to be) in futex_wait
  alignas(64) std::atomic<int32_t> parent_cpu;  // the CPU the parent last waited on, for the chips' spins
  // How many chips the current run() has given work so far: a chip found
  // stacked on the parent's CPU moves only when they and the parent fit the
  // cores (futex::spin_then_yield's unstack).
  std::atomic<int32_t> run_chips;
  alignas(64) OwnedDir owned_dirs[kMaxOwnedDirs];
  // Where the chips meet for the bring-up (an empty rootinfo_path) and for
  // every domain, and the control blocks of those communicators: the chips
  // map it at the same address, inherited from the fork, so no file and no
  // control object is needed.
  alignas(64) rendezvous::MemoryTable rendezvous;
};

// Repeats. A stream of one collective (a training step's allreduce in a
// loop) need not take a ring entry per call: while the chip has not
// finished its latest task entry, the parent may ask it to run that entry
// once more. ChipShared::repeat holds (seq << 32) | the runs of entry seq
// granted beyond the first, with kRepeatClosed set once the chip has
// finished entry seq. Both sides change it by compare-exchange only, so a
// grant either reaches the chip before it finishes the entry or is refused
// to the parent (which then queues an entry). Every chip runs the task as
// many times either way; the parent grants on all members of a group or
// queues entries for those that refused. The parent grants only entries it
// marked kTaskRepeatable (a typed collective's), and the chip closes only
// those: any other task costs the chip no write to this line.
inline constexpr uint64_t kRepeatClosed = uint64_t{1} << 31;

inline uint64_t repeat_word(uint32_t seq, uint64_t low) { return (uint64_t{seq} << 32) | low; }
inline uint32_t repeat_seq(uint64_t w) { return static_cast<uint32_t>(w >> 32); }

// Parent: one more run of entry `seq` (its latest on the chip); false when
// the chip has finished it, or may still be running an earlier entry's
// repeats (the word holds an earlier seq, open), which a grant would
// overwrite.
inline bool grant_repeat(std::atomic<uint64_t>& w, uint32_t seq) {
  uint64_t v = w.load(std::memory_order_relaxed);
  for (;;) {
    const bool closed = (v & kRepeatClosed) != 0;
    uint64_t next = repeat_word(seq, 1);  // the first grant of entry seq
    if (repeat_seq(v) == seq) {
      if (closed || static_cast<uint32_t>(v) + 1 == kRepeatClosed) return false;
      next = v + 1;
    } else if (!closed) {
      return false;
    }
    if (w.compare_exchange_weak(v, next, std::memory_order_relaxed)) return true;
  }
}

// Chip, having run entry `seq` `ran` + 1 times: true when another run is
// granted; otherwise (or with `stop`: the run failed) closes entry seq and
// returns false. The chip publishes done_seq only after this returned
// false, so every grant the parent got was run. A word tagged with a later
// seq holds grants of an entry the chip has not reached: it stays.
inline bool next_repeat(std::atomic<uint64_t>& w, uint32_t seq, uint32_t ran, bool stop) {
  uint64_t v = w.load(std::memory_order_relaxed);
  for (;;) {
    if (static_cast<int32_t>(repeat_seq(v) - seq) > 0) return false;
    const uint32_t granted = repeat_seq(v) == seq ? static_cast<uint32_t>(v) : 0;
    if (!stop && ran < granted) return true;
    if (w.compare_exchange_weak(v, repeat_word(seq, kRepeatClosed), std::memory_order_relaxed)) return false;
  }
}

// Wakes the parent (bumps `events`, futex wake) if it sleeps, after what it
// waits for was published (Dekker pairing with the parent's parent_sleeping
// store before it re-checks its condition). With `wake_at` (a chip's
// wake_parent_at, after it published done_seq = `done`), only when `done`
// has reached it.
void notify_parent(SharedHeader* h, const std::atomic<uint32_t>* wake_at = nullptr, uint32_t done = 0);

}  // namespace chipmesh::worker

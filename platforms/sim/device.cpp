#include "device.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <string>

#include "arena.h"
#include "chipmesh/device_abi.h"
#include "chipmesh/errors.h"
#include "common/env.h"
#include "common/stream_copy.h"

namespace chipmesh::sim::device {
namespace {

// Device-to-host copies from this size on are streamed (copy_from_device).
constexpr size_t kStreamFromBytes = size_t{1} << 20;

struct Region {
  size_t size;
  bool owned;  // allocated by malloc() here (freed by free/reset)
  bool in_arena = false;  // ... from the host arena rather than the heap
};

struct State {
  std::mutex mu;
  // Written under mu; read without it by current_device(), once per kernel
  // launch (a lock there was two locked instructions per task).
  std::atomic<int> device{-1};
  std::map<uint64_t, Region> regions;  // base -> region
  Arena arena;  // unattached unless a Worker gave one
};

State& state() {
  static State* s = new State;  // never destroyed: usable from atexit paths
  return *s;
}

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

void require_device(const State& s, const char* what) {
  if (s.device < 0) throw DeviceError(std::string(what) + ": no sim device is set (call set_device first)");
}

// True when [addr, addr + n) lies inside one registered region.
bool covered(const State& s, uint64_t addr, size_t n) {
  auto it = s.regions.upper_bound(addr);
  if (it == s.regions.begin()) return false;
  --it;
  uint64_t base = it->first;
  return addr >= base && n <= it->second.size && addr - base <= it->second.size - n;
}

void check_range(const State& s, const char* what, const char* role, uint64_t addr, size_t n) {
  if (n == 0) return;
  if (addr == 0 || !covered(s, addr, n))
    throw DeviceError(std::string(what) + ": " + role + " " + hex(addr) + " (nbytes=" + std::to_string(n) +
                      ") is not inside any allocation or window of sim device " + std::to_string(s.device));
}

void free_owned(State& s) {
  for (auto it = s.regions.begin(); it != s.regions.end();) {
    if (it->second.owned) {
      if (!it->second.in_arena) std::free(reinterpret_cast<void*>(it->first));
      it = s.regions.erase(it);
    } else {
      ++it;
    }
  }
  s.arena.release_all();
}

}  // namespace

void set_device(int device_id) {
  int count = env::sim_num_devices();
  if (device_id < 0 || device_id >= count)
    throw DeviceError("set_device: device id " + std::to_string(device_id) + " is outside [0, " +
                      std::to_string(count) + ") of the sim platform (CHIPMESH_SIM_NUM_DEVICES)");
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.device = device_id;
}

void reset_device() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  require_device(s, "reset_device");
  free_owned(s);
}

void finalize() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  free_owned(s);
  s.device = -1;
}

int current_device() { return state().device.load(std::memory_order_acquire); }

uint64_t malloc(size_t nbytes) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  require_device(s, "malloc");
  if (auto p = s.arena.allocate(nbytes)) {
    s.regions[*p] = Region{nbytes, true, true};
    return *p;
  }
  // 64-byte alignment like a device allocator; never hand out null, even for 0.
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded < nbytes) throw DeviceError("malloc: " + std::to_string(nbytes) + " bytes is too large");
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw DeviceError("malloc: out of memory allocating " + std::to_string(nbytes) + " bytes on sim device " +
                            std::to_string(s.device));
  s.regions[reinterpret_cast<uint64_t>(p)] = Region{nbytes, true};
  return reinterpret_cast<uint64_t>(p);
}

void free(uint64_t ptr) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  require_device(s, "free");
  auto it = s.regions.find(ptr);
  if (it == s.regions.end() || !it->second.owned)
    throw DeviceError("free: " + hex(ptr) + " was not returned by malloc on sim device " + std::to_string(s.device));
  if (it->second.in_arena)
    s.arena.release(ptr, it->second.size);
  else
    std::free(reinterpret_cast<void*>(ptr));
  s.regions.erase(it);
}

void copy_to_device(uint64_t dst, const void* src, size_t nbytes) {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    require_device(s, "copy_to_device");
    check_range(s, "copy_to_device", "destination", dst, nbytes);
  }
  if (nbytes != 0 && src == nullptr) throw DeviceError("copy_to_device: null host source (nbytes=" + std::to_string(nbytes) + ")");
  // Device memory is host memory here: one copy, streamed past the cache
  // (copy_bulk), as Worker::copy_to does through the arena.
  if (nbytes) copy_bulk(reinterpret_cast<void*>(dst), src, nbytes);
}

void copy_from_device(void* dst, uint64_t src, size_t nbytes) {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    require_device(s, "copy_from_device");
    check_range(s, "copy_from_device", "source", src, nbytes);
  }
  if (nbytes != 0 && dst == nullptr) throw DeviceError("copy_from_device: null host destination (nbytes=" + std::to_string(nbytes) + ")");
  // A flush (store_to_host) copies into the parent's output staging, whose
  // lines sit in the parent's core from its last read or reset: plain
  // stores take each one back first, streamed ones do not ("lines a peer
  // reads", common/stream_copy.h). A 1-4 MiB flush the parent read before
  // ran at 0.12-0.79 of memcpy with plain stores (bimodal), 0.59-0.80
  // streamed (docs/PERFORMANCE.md). Smaller copies stay plain: a flush of
  // 256 KiB is its round trip either way, and the ring's 256 KiB chunks
  // (copy_from without an arena), which the parent reads at once from the
  // cache, ran 5-25 % slower streamed (4 MiB in chunks). Several chips
  // flushing at once share the memory's write bandwidth: ChipWorker copies
  // those itself, plainly, while they fit the cache (store_to_host(n)).
  if (nbytes) copy_streamed_if(nbytes >= kStreamFromBytes, dst, reinterpret_cast<const void*>(src), nbytes);
}

void attach_host_arena(int fd, uint64_t size) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.arena.attach(fd, size);
}

void host_range(uint64_t ptr, size_t nbytes, void** host, uint64_t* arena_offset) {
  if (!host || !arena_offset) throw ConfigError("host_range: null output pointer");
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  require_device(s, "host_range");
  check_range(s, "host_range", "range", ptr, nbytes);
  *host = reinterpret_cast<void*>(ptr);
  *arena_offset = s.arena.contains(ptr, nbytes) ? s.arena.offset_of(ptr) : CHIPMESH_NO_ARENA_OFFSET;
}

void register_region(uint64_t base, size_t size) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.regions[base] = Region{size, false};
}

void unregister_region(uint64_t base) noexcept {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.regions.find(base);
  if (it != s.regions.end() && !it->second.owned) s.regions.erase(it);
}

}  // namespace chipmesh::sim::device

#include "name_registry.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "rootinfo.h"

namespace chipmesh::sim::names {
namespace {

constexpr int kSlots = 16;

struct Slot {
  std::atomic<int> state{0};  // 0 free, 1 being written, 2 valid
  Kind kind = Kind::Shm;
  uint64_t token = 0;
  char name[PATH_MAX] = {};
};

Slot g_slots[kSlots];

void unlink_rootinfo(const char* path, uint64_t token) {
  if (rootinfo_file_has_token(path, token)) ::unlink(path);
}

}  // namespace

int add(Kind kind, const std::string& name, uint64_t token) {
  if (name.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_slots[i].state.compare_exchange_strong(expected, 1)) continue;
    g_slots[i].kind = kind;
    g_slots[i].token = token;
    std::memcpy(g_slots[i].name, name.c_str(), name.size() + 1);
    g_slots[i].state.store(2, std::memory_order_release);
    return i;
  }
  return -1;
}

void remove(int slot) noexcept {
  if (slot >= 0 && slot < kSlots) g_slots[slot].state.store(0, std::memory_order_release);
}

void emergency_unlink() noexcept {
  for (Slot& s : g_slots) {
    if (s.state.load(std::memory_order_acquire) != 2) continue;
    if (s.kind == Kind::Shm) shm_unlink(s.name);
    else if (s.kind == Kind::File) ::unlink(s.name);
    else unlink_rootinfo(s.name, s.token);
  }
}

}  // namespace chipmesh::sim::names

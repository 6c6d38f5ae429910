#include "window_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <mutex>

namespace chipmesh::sim::window_cache {
namespace {

std::mutex g_mutex;
std::deque<CachedObject>& entries() {
  static auto* e = new std::deque<CachedObject>();  // never destroyed: usable until exit
  return *e;
}

void release(const CachedObject& o) noexcept {
  if (o.map) munmap(o.map, o.bytes);
  if (o.fd >= 0) ::close(o.fd);
}

template <typename Match>
std::optional<CachedObject> take_if(Match&& match) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& e = entries();
  for (auto it = e.begin(); it != e.end(); ++it) {
    if (!match(*it)) continue;
    CachedObject o = *it;
    e.erase(it);
    return o;
  }
  return std::nullopt;
}

}  // namespace

std::optional<CachedObject> take_owned(pid_t self, size_t bytes, bool (*usable)(const CachedObject&)) {
  return take_if([&](const CachedObject& o) { return o.owner == self && o.bytes == bytes && usable(o); });
}

std::optional<CachedObject> take(uint64_t dev, uint64_t ino, size_t bytes) {
  return take_if([&](const CachedObject& o) { return o.dev == dev && o.ino == ino && o.bytes == bytes; });
}

bool put(const CachedObject& o) {
  if (o.bytes > kMaxObjectBytes || !o.map || o.fd < 0) return false;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& e = entries();
  e.push_back(o);
  while (e.size() > kMaxEntries) {
    release(e.front());
    e.pop_front();
  }
  return true;
}

}  // namespace chipmesh::sim::window_cache

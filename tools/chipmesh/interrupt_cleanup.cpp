#include "interrupt_cleanup.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace chipmesh::cli::interrupt_cleanup {

namespace {

enum Kind { Shm, File, Dir };

constexpr int kMaxNames = 160;  // 64 chips x 2 staging + rootinfo files + dir
constexpr size_t kMaxName = 256;

struct Slot {
  Kind kind;
  char name[kMaxName];
};

Slot g_slots[kMaxNames];
std::atomic<int> g_count{0};
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_previous[3];
bool g_mine[3] = {false, false, false};  // our handler is installed for kSignals[k]
bool g_installed = false;

void on_signal(int sig) {
  const int n = g_count.load(std::memory_order_acquire);
  // Files and objects first, directories last (they must be empty).
  for (int i = 0; i < n; ++i) {
    if (g_slots[i].kind == Shm) shm_unlink(g_slots[i].name);
    if (g_slots[i].kind == File) unlink(g_slots[i].name);
  }
  for (int i = n - 1; i >= 0; --i)
    if (g_slots[i].kind == Dir) rmdir(g_slots[i].name);
  for (size_t k = 0; k < 3; ++k)
    if (kSignals[k] == sig) sigaction(sig, &g_previous[k], nullptr);
  raise(sig);
}

void add(Kind kind, const std::string& name) {
  if (name.size() >= kMaxName) return;
  const int i = g_count.load(std::memory_order_relaxed);
  if (i >= kMaxNames) return;
  g_slots[i].kind = kind;
  std::memcpy(g_slots[i].name, name.c_str(), name.size() + 1);
  g_count.store(i + 1, std::memory_order_release);
}

}  // namespace

void install() {
  if (g_installed) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int s : kSignals) sigaddset(&sa.sa_mask, s);
  for (size_t k = 0; k < 3; ++k) {
    // A signal the caller ignores (nohup) stays ignored.
    if (sigaction(kSignals[k], nullptr, &g_previous[k]) != 0 || g_previous[k].sa_handler == SIG_IGN) continue;
    g_mine[k] = sigaction(kSignals[k], &sa, nullptr) == 0;
  }
  g_installed = true;
}

void add_shm(const std::string& name) { add(Shm, name); }
void add_file(const std::string& path) { add(File, path); }
void add_dir(const std::string& path) { add(Dir, path); }

void reset() {
  g_count.store(0, std::memory_order_release);
  if (!g_installed) return;
  for (size_t k = 0; k < 3; ++k) {
    if (!g_mine[k]) continue;
    // Only when nobody replaced our handler since.
    struct sigaction cur;
    if (sigaction(kSignals[k], nullptr, &cur) == 0 && cur.sa_handler == on_signal)
      sigaction(kSignals[k], &g_previous[k], nullptr);
    g_mine[k] = false;
  }
  g_installed = false;
}

}  // namespace chipmesh::cli::interrupt_cleanup

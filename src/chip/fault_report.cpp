#include "chip/fault_report.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/statfs.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <typeinfo>

namespace chipmesh::worker {
namespace {

// Appends to a fixed buffer, always NUL-terminated, cutting what does not
// fit. Async-signal-safe (no snprintf: not on POSIX's list).
class Text {
 public:
  Text(char* out, size_t bytes) : out_(out), cap_(bytes ? bytes - 1 : 0) {
    if (bytes) out_[0] = '\0';
  }
  Text& put(const char* s) { return put(s, std::strlen(s)); }
  Text& put(const char* s, size_t len) {
    for (size_t i = 0; i < len && n_ < cap_; ++i) out_[n_++] = s[i];
    if (cap_) out_[n_] = '\0';
    return *this;
  }
  Text& dec(uint64_t v) {
    char d[24];
    size_t k = 0;
    do d[k++] = static_cast<char>('0' + v % 10);
    while ((v /= 10) != 0);
    while (k) put(&d[--k], 1);
    return *this;
  }
  Text& hex(uint64_t v) {
    char d[16];
    size_t k = 0;
    do d[k++] = "0123456789abcdef"[v & 15];
    while ((v >>= 4) != 0);
    put("0x", 2);
    while (k) put(&d[--k], 1);
    return *this;
  }
  size_t size() const { return n_; }

 private:
  char* out_;
  size_t cap_;
  size_t n_ = 0;
};

// One line of /proc/self/maps.
struct Mapping {
  uint64_t start = 0, end = 0, offset = 0;
  char path[256] = {};  // empty for anonymous memory
};

bool parse_hex(const char*& p, uint64_t* v) {
  const char* s = p;
  *v = 0;
  for (;; ++p) {
    const char c = *p;
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) break;
    *v = *v << 4 | static_cast<uint64_t>(d);
  }
  return p != s;
}

// "start-end perms offset dev inode   path": true (and *m) when addr lies in it.
bool parse_line(const char* line, uint64_t addr, Mapping* m) {
  const char* p = line;
  uint64_t start, end, offset;
  if (!parse_hex(p, &start) || *p++ != '-' || !parse_hex(p, &end) || *p++ != ' ') return false;
  if (addr < start || addr >= end) return false;
  for (int field = 0; field < 1 && *p; ++p)  // perms
    if (*p == ' ') ++field;
  if (!parse_hex(p, &offset)) offset = 0;
  for (int field = 0; field < 3 && *p; ++p)  // the space after offset, dev, inode
    if (*p == ' ') {
      ++field;
      while (p[1] == ' ') ++p;
    }
  m->start = start;
  m->end = end;
  m->offset = offset;
  size_t k = 0;
  for (; p[k] && p[k] != '\n' && k + 1 < sizeof(m->path); ++k) m->path[k] = p[k];
  m->path[k] = '\0';
  return true;
}

// The mapping holding addr, from /proc/self/maps (open/read/close only).
bool find_mapping(uint64_t addr, Mapping* m) {
  int fd;
  do fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return false;
  char buf[4096];
  char line[512];
  size_t len = 0;
  bool found = false;
  for (;;) {
    const ssize_t got = read(fd, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    for (ssize_t i = 0; i < got && !found; ++i) {
      if (buf[i] != '\n') {
        if (len + 1 < sizeof(line)) line[len++] = buf[i];  // a longer path is cut
        continue;
      }
      line[len] = '\0';
      found = parse_line(line, addr, m);
      len = 0;
    }
    if (found) break;
  }
  close(fd);
  return found;
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGBUS: return "SIGBUS";
    case SIGSEGV: return "SIGSEGV";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    default: return "signal";
  }
}

const char* code_meaning(int sig, int code) {
  switch (sig) {
    case SIGBUS:
      if (code == BUS_ADRERR) return "no page can back the address";
      if (code == BUS_ADRALN) return "misaligned address";
      if (code == BUS_OBJERR) return "object-specific hardware error";
#ifdef BUS_MCEERR_AR
      if (code == BUS_MCEERR_AR || code == BUS_MCEERR_AO) return "hardware memory error";
#endif
      break;
    case SIGSEGV:
      if (code == SEGV_MAPERR) return "address not mapped";
      if (code == SEGV_ACCERR) return "access not permitted by the mapping";
      break;
    case SIGILL:
      if (code == ILL_ILLOPC || code == ILL_ILLOPN) return "illegal instruction (one this CPU lacks?)";
      if (code == ILL_PRVOPC) return "privileged instruction";
      break;
    case SIGFPE:
      if (code == FPE_INTDIV) return "integer division by zero";
      if (code == FPE_INTOVF) return "integer overflow";
      break;
    default: break;
  }
  return nullptr;
}

// " in <path> at offset 0x..", or " in anonymous memory", or nothing.
void put_mapping(Text& t, uint64_t addr, Mapping* m) {
  if (!find_mapping(addr, m)) {
    t.put(" (in no mapping)");
    return;
  }
  if (!m->path[0]) {
    t.put(" in anonymous memory");
    return;
  }
  t.put(" in ").put(m->path).put(" at offset ").hex(m->offset + (addr - m->start));
}

// A SIGBUS in a file's mapping: a page past the file's end, or one its
// file system cannot allocate (tmpfs full). Says how much is free there.
void put_free_space(Text& t, const Mapping& m) {
  if (m.path[0] != '/' || std::strncmp(m.path, "/memfd:", 7) == 0 || std::strncmp(m.path, "/SYSV", 5) == 0) return;
  // Its directory: "/dev/shm" for "/dev/shm/chipmesh_... (deleted)".
  char dir[sizeof(m.path)] = "/";
  size_t slash = 0;
  for (size_t i = 0; m.path[i]; ++i)
    if (m.path[i] == '/') slash = i;
  if (slash) {
    std::memcpy(dir, m.path, slash);
    dir[slash] = '\0';
  }
  struct statfs st;
  if (statfs(dir, &st) != 0) return;
  const auto unit = static_cast<uint64_t>(st.f_bsize);
  t.put("; ").put(dir).put(" has ").dec(static_cast<uint64_t>(st.f_bavail) * unit).put(" of ")
      .dec(static_cast<uint64_t>(st.f_blocks) * unit)
      .put(" bytes free (a page of a shared-memory file is allocated at its first touch: one its file system "
           "has no room for, or one past the file's end, is a SIGBUS)");
}

char* g_text = nullptr;
size_t g_bytes = 0;
std::atomic<int32_t>* g_signo = nullptr;
constexpr int kSignals[] = {SIGBUS, SIGSEGV, SIGILL, SIGFPE, SIGABRT};
constexpr size_t kNumSignals = sizeof(kSignals) / sizeof(kSignals[0]);
struct sigaction g_previous[kNumSignals];
// The alternate stack, when the process had none: in .bss, so it costs no
// memory until a fault runs on it.
alignas(64) char g_alt_stack[64 * 1024];

// Why std::terminate ran (an exception that left a noexcept function or a
// thread), written by the chip's terminate handler before it aborts.
char g_terminate_text[512];
std::terminate_handler g_previous_terminate = nullptr;

// glibc keeps the message of a failed assert() and of its own fatal errors
// ("free(): invalid pointer") in `__abort_msg` before it aborts (a
// GLIBC_PRIVATE symbol crash reporters read: looked up, never linked, and
// missing is fine). Looked up when the library loads, in the parent, so
// the chips inherit the address and a chip's bring-up pays no lookup.
struct AbortMsg {
  unsigned int size;  // of the whole mapping holding it
  char msg[1];        // NUL-terminated
};
AbortMsg* const* const g_abort_msg = reinterpret_cast<AbortMsg* const*>(dlsym(RTLD_DEFAULT, "__abort_msg"));

[[noreturn]] void on_terminate() {
  Text t(g_terminate_text, sizeof(g_terminate_text));
  t.put("terminate called");
  if (const std::type_info* type = abi::__cxa_current_exception_type()) {
    int status = -1;
    char* name = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
    t.put(" after throwing an instance of '").put(status == 0 && name ? name : type->name()).put("'");
    std::free(name);
    try {
      throw;
    } catch (const std::exception& e) {
      t.put(": what(): ").put(e.what());
    } catch (...) {
    }
  } else {
    t.put(" without an active exception");
  }
  if (g_previous_terminate) g_previous_terminate();  // libstdc++'s prints the same to stderr and aborts
  std::abort();
}

// What the chip said before abort(), into `out`: the terminate handler's
// text, else glibc's message; "" when neither said anything.
void abort_reason(char* out, size_t bytes) {
  Text t(out, bytes);
  if (g_terminate_text[0]) {
    t.put(g_terminate_text);
    return;
  }
  const AbortMsg* m = g_abort_msg ? *g_abort_msg : nullptr;
  if (!m || m->size <= sizeof(unsigned int)) return;
  size_t len = strnlen(m->msg, m->size - sizeof(unsigned int));
  while (len > 0 && (m->msg[len - 1] == '\n' || m->msg[len - 1] == ' ')) --len;
  t.put("libc's message: ").put(m->msg, len);
}

size_t slot_of(int sig) {
  for (size_t i = 0; i < kNumSignals; ++i)
    if (kSignals[i] == sig) return i;
  return 0;
}

// The action the process had before: its handler, or the default one.
void pass_on(int sig, siginfo_t* info, void* uc) {
  const struct sigaction& old = g_previous[slot_of(sig)];
  if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction) {
    old.sa_sigaction(sig, info, uc);
    return;
  }
  if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
    old.sa_handler(sig);
    return;
  }
  sigaction(sig, &old, nullptr);
  // A fault repeats on return and meets the old action; a sent signal
  // must be raised again (it stays pending until this handler returns).
  if (info->si_code <= 0 && old.sa_handler == SIG_DFL) raise(sig);
}

void on_fault(int sig, siginfo_t* info, void* uc) {
  const int saved_errno = errno;
  const void* pc = nullptr;
#if defined(__x86_64__)
  pc = reinterpret_cast<const void*>(static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  pc = reinterpret_cast<const void*>(static_cast<ucontext_t*>(uc)->uc_mcontext.pc);
#endif
  char reason[768] = "";
  if (sig == SIGABRT) abort_reason(reason, sizeof(reason));
  format_fault_report(g_text, g_bytes, sig, info->si_code, info->si_addr, pc, info->si_pid, reason);
  g_signo->store(sig, std::memory_order_release);
  errno = saved_errno;
  pass_on(sig, info, uc);
}

}  // namespace

size_t format_fault_report(char* out, size_t bytes, int sig, int code, const void* addr, const void* pc,
                           pid_t sender, const char* reason) {
  Text t(out, bytes);
  t.put(signal_name(sig));
  if (code <= 0) {  // sent (kill, raise, sigqueue, abort), not a fault
    if (sender == getpid())
      t.put(" raised by the chip itself");
    else
      t.put(" sent by pid ").dec(static_cast<uint64_t>(sender));
    if (reason && reason[0])
      t.put(": ").put(reason);
    else if (sig == SIGABRT && sender == getpid())
      t.put(" (abort(): what it printed went to its stderr)");
    return t.size();
  }
  const auto a = reinterpret_cast<uint64_t>(addr);
  if (code == SI_KERNEL) {  // no address: for SIGSEGV a general protection fault
    t.put(" from the kernel, no address (for a SIGSEGV: a general protection fault, e.g. a non-canonical "
          "address)");
  } else {
    if (const char* meaning = code_meaning(sig, code))
      t.put(" (").put(meaning).put(")");
    else
      t.put(" (code ").dec(static_cast<uint64_t>(code)).put(")");
    Mapping m;
    t.put(" at ").hex(a);
    put_mapping(t, a, &m);
    if (sig == SIGBUS && code == BUS_ADRERR && m.path[0]) put_free_space(t, m);
  }
  if (pc && reinterpret_cast<uint64_t>(pc) != a) {
    const auto p = reinterpret_cast<uint64_t>(pc);
    Mapping code_map;
    t.put("; instruction at ").hex(p);
    if (find_mapping(p, &code_map) && code_map.path[0])
      t.put(" in ").put(code_map.path).put("+").hex(code_map.offset + (p - code_map.start));
  }
  return t.size();
}

void install_fault_report(char* text, size_t bytes, std::atomic<int32_t>* signo) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer intercepts sigaction and runs handlers itself: a signal
  // handed back to the default action from inside ours is reported as a
  // nested bug (exit status 66) instead of ending the chip by the signal.
  (void)text, (void)bytes, (void)signo;
  return;
#endif
  g_text = text;
  g_bytes = bytes;
  g_signo = signo;
  stack_t current{};
  if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
    stack_t mine{};
    mine.ss_sp = g_alt_stack;
    mine.ss_size = sizeof(g_alt_stack);
    sigaltstack(&mine, nullptr);
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < kNumSignals; ++i) sigaction(kSignals[i], &sa, &g_previous[i]);
  g_previous_terminate = std::set_terminate(on_terminate);
}

}  // namespace chipmesh::worker

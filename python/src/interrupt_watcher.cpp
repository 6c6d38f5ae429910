// The watcher thread behind InterruptArm (interrupt_watcher.h).
#include "interrupt_watcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <thread>
#include <vector>

#include "common/process.h"

namespace chipmesh::py_ext {
namespace {

// The thread Python runs signal handlers on (the main thread of the main
// interpreter), the only one that may set the wakeup fd. Its id is read
// from `threading` once per process (os.fork() from a thread makes that
// thread the child's main thread); each call then compares thread ids, two
// Python calls fewer per init() and run().
bool on_main_thread() {
  if (PyInterpreterState_Get() != PyInterpreterState_Main()) return false;
  static pid_t read_in = 0;  // the process that read main_ident
  static unsigned long main_ident = 0;
  if (const pid_t now = process::this_pid(); read_in != now) {
    static py::handle threading = py::module_::import("threading").release();
    main_ident = threading.attr("main_thread")().attr("ident").cast<unsigned long>();
    read_in = now;
  }
  return PyThread_get_thread_ident() == main_ident;
}

// signal.set_wakeup_fd, looked up once: every init() and run() sets and
// restores the wakeup fd, and an import of a loaded module still goes
// through the import machinery (~0.3 us here each time).
py::handle set_wakeup_fd() {
  static py::handle fn = py::object(py::module_::import("signal").attr("set_wakeup_fd")).release();
  return fn;
}

}  // namespace

// The reader of Python's signal wakeup fd while an init() or run() blocks on
// the main thread: one thread per process, started on first use (and again
// in a forked child, which has no threads), idle in poll() between calls.
// Each call arms it for its Worker; on SIGINT it interrupts every armed one.
class InterruptWatcher {
 public:
  static InterruptWatcher& get() {
    static InterruptWatcher* w = new InterruptWatcher;  // never destroyed: the thread outlives main()
    return *w;
  }

 private:
  friend class InterruptArm;

  bool start() {
    if (pid_ == process::this_pid()) return true;
    // First use, or a forked child: the parent's thread is not here.
    if (read_fd_ >= 0) {
      ::close(read_fd_);
      ::close(write_fd_);
    }
    read_fd_ = write_fd_ = -1;
    armed_.clear();
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    pid_ = process::this_pid();
    std::thread([this] { loop(); }).detach();
    return true;
  }

  void loop() {
    pollfd p{read_fd_, POLLIN, 0};
    for (;;) {
      if (poll(&p, 1, -1) < 0 && errno != EINTR) return;
      drain();
    }
  }

  void drain() {
    std::lock_guard<std::mutex> drain_lock(drain_mu_);
    unsigned char buf[64];
    for (;;) {
      const ssize_t n = read(read_fd_, buf, sizeof(buf));
      if (n <= 0) return;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != SIGINT) continue;
        std::lock_guard<std::mutex> lock(mu_);
        for (InterruptArm* a : armed_)
          if (!a->interrupted_.exchange(true)) a->worker_.interrupt();
      }
      // Whoever set a wakeup fd before us (asyncio) still hears of them.
      const int old = old_fd_.load();
      if (old >= 0 && write(old, buf, static_cast<size_t>(n)) < 0) {
        // a full or closed fd of someone else: as Python itself would, drop them
      }
    }
  }

  pid_t pid_ = 0;
  int read_fd_ = -1, write_fd_ = -1;
  std::atomic<int> old_fd_{-1};
  std::mutex mu_;        // armed_
  std::mutex drain_mu_;  // one reader at a time
  std::vector<InterruptArm*> armed_;
};

InterruptArm::InterruptArm(Worker& w) : worker_(w) {
  if (!on_main_thread()) return;
  InterruptWatcher& iw = InterruptWatcher::get();
  if (!iw.start()) return;  // no watcher: Ctrl-C waits for the call
  try {
    old_fd_ = set_wakeup_fd()(iw.write_fd_, py::arg("warn_on_full_buffer") = false).cast<int>();
  } catch (const py::error_already_set&) {
    return;  // e.g. a subinterpreter
  }
  iw.old_fd_.store(old_fd_);
  std::lock_guard<std::mutex> lock(iw.mu_);
  iw.armed_.push_back(this);
  armed_ = true;
}

InterruptArm::~InterruptArm() {
  if (!armed_) return;
  InterruptWatcher& iw = InterruptWatcher::get();
  try {
    set_wakeup_fd()(old_fd_);
  } catch (const py::error_already_set&) {
    // old_fd_ was closed meanwhile by its owner: leave none
    try {
      set_wakeup_fd()(-1);
    } catch (const py::error_already_set&) {
    }
  }
  iw.drain();  // a signal that arrived as the call returned
  iw.old_fd_.store(-1);
  std::lock_guard<std::mutex> lock(iw.mu_);
  std::erase(iw.armed_, this);
}

}  // namespace chipmesh::py_ext

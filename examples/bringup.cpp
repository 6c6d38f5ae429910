// Bring-up by hand, without the Worker: N sim chips, one process per chip,
// each printing what it reported through its bootstrap mailbox. (The main
// job is `chipmesh demo`; this example shows the layer under the Worker.)
//
// The parent stages one input region per rank in POSIX shared memory, maps
// one mailbox page per rank, forks the chips and waits for every mailbox to be
// published. Each chip runs ChipWorker::bootstrap_context (communicator,
// window, two buffers, input loaded from host), checks its input by reading
// it back, and exits. A watcher thread turns a chip that dies before
// publishing into an ERROR on its mailbox, so the parent never waits out the
// deadline for a dead child.
//
//   chipmesh_bringup [--chips N]      (N in 1..64, default 4)

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "chipmesh/chipmesh.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kElements = 1024;
constexpr size_t kBytes = kElements * sizeof(float);
constexpr size_t kWindowBytes = size_t{1} << 20;

float pattern(int rank, size_t i) { return static_cast<float>(rank * 10000 + static_cast<int>(i)); }

void usage(FILE* out) {
  std::fprintf(out, "usage: chipmesh_bringup [--chips N]   (N in 1..%d, default 4)\n",
               CHIPMESH_MAX_RANKS);
}

bool parse_chips(const char* text, int* out) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 1 || v > CHIPMESH_MAX_RANKS) return false;
  *out = static_cast<int>(v);
  return true;
}

// Deadline for the whole bring-up: the communicator's own deadline plus slack.
std::chrono::milliseconds bringup_deadline() { return chipmesh::comm_timeout() + std::chrono::seconds(30); }

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  void* mailbox = nullptr;
  chipmesh::SharedMemory staging;
  int pidfd = -1;
  bool reaped = false;
  int wait_status = 0;
};

// ---------------------------------------------------------------- child side

[[noreturn]] void chip_main(int rank, int nranks, pid_t parent, const std::string& rootinfo,
                            const std::string& shm_name, void* mailbox) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(3);  // the parent died before prctl took effect

  chipmesh::ChipBootstrapChannel channel(mailbox, 2);
  int code = 0;
  try {
    chipmesh::ChipWorker worker;
    worker.init("sim");

    chipmesh::ChipBootstrapConfig cfg;
    cfg.comm = chipmesh::ChipCommBootstrapConfig{rank, nranks, rootinfo, kWindowBytes};
    chipmesh::ChipBufferSpec input;
    input.name = "input";
    input.dtype = chipmesh::DataType::FLOAT32;
    input.count = kElements;
    input.nbytes = kBytes;
    input.load_from_host = true;
    chipmesh::ChipBufferSpec output = input;
    output.name = "output";
    output.load_from_host = false;
    cfg.buffers = {input, output};
    cfg.host_inputs = {chipmesh::HostBufferStaging{"input", shm_name, kBytes}};

    // Publishes SUCCESS (or ERROR, then throws) on the mailbox. It returns
    // only once every rank has attached, so destroying our communicator
    // below cannot strand a peer.
    chipmesh::ChipBootstrapResult res = worker.bootstrap_context(rank, cfg, &channel);

    std::vector<float> back(kElements);
    worker.copy_from(back.data(), res.buffer_ptrs.at(0), kBytes);
    for (size_t i = 0; i < kElements; ++i) {
      if (back[i] != pattern(rank, i)) {
        std::fprintf(stderr, "rank %d: input[%zu] = %g, expected %g\n", rank, i,
                     static_cast<double>(back[i]), static_cast<double>(pattern(rank, i)));
        code = 2;
        break;
      }
    }
    worker.shutdown_bootstrap();
    worker.finalize();
  } catch (const chipmesh::Error& e) {
    if (channel.state() == chipmesh::ChipBootstrapMailboxState::IDLE)
      channel.write_error(1, chipmesh::describe(e));
    code = 1;
  } catch (const std::exception& e) {
    if (channel.state() == chipmesh::ChipBootstrapMailboxState::IDLE)
      channel.write_error(1, std::string("Error: ") + e.what());
    else
      std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    code = 1;
  }
  std::fflush(stderr);
  _exit(code);
}

// --------------------------------------------------------------- parent side

// Blocks on the children's pidfds (no polling) and makes a failed bring-up
// fail fast. When a child exits before publishing SUCCESS (its own ERROR, or
// a death with the mailbox still IDLE), the watcher writes an ERROR for a
// dead child that could not, and kills every other chip: those exit too and
// get an ERROR saying why, which wakes the parent's wait_published at once.
// Stops when every child has exited or `stop_fd` becomes readable.
void watch_children(std::vector<Rank>* ranks, int stop_fd, int* first_failed) {
  std::vector<bool> done(ranks->size(), false);
  std::vector<bool> killed(ranks->size(), false);
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<size_t> which;
    fds.push_back({stop_fd, POLLIN, 0});
    for (size_t i = 0; i < ranks->size(); ++i) {
      if (!done[i] && (*ranks)[i].pidfd >= 0) {
        fds.push_back({(*ranks)[i].pidfd, POLLIN, 0});
        which.push_back(i);
      }
    }
    if (which.empty()) return;
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents) return;
    for (size_t k = 0; k < which.size(); ++k) {
      if (!fds[k + 1].revents) continue;
      const size_t i = which[k];
      Rank& r = (*ranks)[i];
      done[i] = true;
      // The child has exited: it can no longer write its mailbox.
      chipmesh::ChipBootstrapChannel channel(r.mailbox, 2);
      auto state = channel.state();
      if (state == chipmesh::ChipBootstrapMailboxState::SUCCESS) continue;
      if (state == chipmesh::ChipBootstrapMailboxState::IDLE) {
        std::string how;
        if (killed[i]) {
          how = "stopped after rank " + std::to_string(*first_failed) + " failed";
        } else {
          how = "chip process exited before publishing its mailbox";
          siginfo_t info{};
          if (waitid(P_PID, static_cast<id_t>(r.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
              info.si_pid == r.pid) {
            if (info.si_code == CLD_EXITED)
              how += " (exit status " + std::to_string(info.si_status) + ")";
            else
              how += std::string(" (killed by signal ") + strsignal(info.si_status) + ")";
          }
        }
        channel.write_error(1, how);
      }
      if (*first_failed < 0 && !killed[i]) {
        *first_failed = r.rank;
        for (size_t j = 0; j < ranks->size(); ++j) {
          if (!done[j] && (*ranks)[j].pid > 0) {
            killed[j] = true;
            kill((*ranks)[j].pid, SIGKILL);
          }
        }
      }
    }
  }
}

// After a failed bring-up whose chips we killed (and reaped): remove what
// they may have left in /dev/shm. The sim communicator names every object it
// creates "/chipmesh_<creator pid, 8 hex digits>_...", so objects carrying the
// pid of one of our dead children are ours to remove.
void remove_leftovers_of(const std::vector<Rank>& ranks) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = entry.path().filename().string();
    for (const Rank& r : ranks) {
      if (r.pid <= 0 || !r.reaped) continue;
      char prefix[32];
      std::snprintf(prefix, sizeof prefix, "chipmesh_%08x_", static_cast<unsigned>(r.pid));
      if (name.rfind(prefix, 0) == 0) shm_unlink(("/" + name).c_str());
    }
  }
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

int run(int nranks) {
  const pid_t self = getpid();

  // One random token per job so our ranks never join another job's rootinfo.
  chipmesh::ensure_job_token("bringup");

  std::string tmpl = (std::filesystem::temp_directory_path() / "chipmesh_bringup_XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::filesystem::path tmpdir = tmpl;
  const std::string rootinfo = (tmpdir / "rootinfo").string();

  std::vector<Rank> ranks(static_cast<size_t>(nranks));
  auto cleanup = [&] {
    for (Rank& r : ranks) {
      if (r.pid > 0 && !r.reaped) {
        kill(r.pid, SIGKILL);
        waitpid(r.pid, &r.wait_status, 0);
        r.reaped = true;
      }
      if (r.pidfd >= 0) close(r.pidfd);
      r.pidfd = -1;
      if (r.staging.is_open()) {
        r.staging.unlink();
        r.staging.close();
      }
      if (r.mailbox) munmap(r.mailbox, chipmesh::CHIP_BOOTSTRAP_MAILBOX_SIZE);
      r.mailbox = nullptr;
    }
    std::error_code ec;
    std::filesystem::remove_all(tmpdir, ec);
  };

  try {
    for (int rank = 0; rank < nranks; ++rank) {
      Rank& r = ranks[static_cast<size_t>(rank)];
      r.rank = rank;
      r.staging = chipmesh::SharedMemory::create(
          "/chipmesh_demo_" + std::to_string(self) + "_" + std::to_string(rank), kBytes);
      float* data = static_cast<float*>(r.staging.data());
      for (size_t i = 0; i < kElements; ++i) data[i] = pattern(rank, i);
      r.mailbox = mmap(nullptr, chipmesh::CHIP_BOOTSTRAP_MAILBOX_SIZE, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (r.mailbox == MAP_FAILED) {
        r.mailbox = nullptr;
        throw std::runtime_error(std::string("mmap mailbox: ") + std::strerror(errno));
      }
      chipmesh::ChipBootstrapChannel(r.mailbox, 2).reset();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chipmesh_bringup: staging failed: %s\n", e.what());
    cleanup();
    return 1;
  }

  std::fflush(stdout);
  std::fflush(stderr);
  const auto t0 = Clock::now();
  for (Rank& r : ranks) {
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      cleanup();
      return 1;
    }
    if (pid == 0) chip_main(r.rank, nranks, self, rootinfo, r.staging.name(), r.mailbox);
    r.pid = pid;
    r.pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  }

  int stop_pipe[2];
  if (pipe(stop_pipe) != 0) {
    std::perror("pipe");
    cleanup();
    return 1;
  }
  int first_failed = -1;  // written by the watcher, read after join
  std::thread watcher(watch_children, &ranks, stop_pipe[0], &first_failed);

  // Wait for every mailbox to leave IDLE: futex waits, no polling.
  const auto deadline = t0 + bringup_deadline();
  bool failed = false;
  for (Rank& r : ranks) {
    chipmesh::ChipBootstrapChannel channel(r.mailbox, 2);
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
    auto state = channel.wait_published(std::max(left, std::chrono::nanoseconds(0)));
    if (state == chipmesh::ChipBootstrapMailboxState::IDLE) {
      std::fprintf(stderr, "chipmesh_bringup: rank %d (pid %d) did not publish its mailbox within %llds\n",
                   r.rank, static_cast<int>(r.pid),
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(bringup_deadline()).count()));
      failed = true;
    } else if (state == chipmesh::ChipBootstrapMailboxState::ERROR) {
      failed = true;
    }
  }
  const auto t1 = Clock::now();

  if (write(stop_pipe[1], "x", 1) < 0) { /* the watcher also ends when all children exit */ }
  watcher.join();
  close(stop_pipe[0]);
  close(stop_pipe[1]);

  if (failed) {
    // Fail fast: chips still running are killed by cleanup(). The chip that
    // failed first is reported first.
    std::vector<size_t> order;
    if (first_failed >= 0) order.push_back(static_cast<size_t>(first_failed));
    for (size_t i = 0; i < ranks.size(); ++i)
      if (static_cast<int>(i) != first_failed) order.push_back(i);
    for (size_t i : order) {
      Rank& r = ranks[i];
      chipmesh::ChipBootstrapChannel channel(r.mailbox, 2);
      if (channel.state() == chipmesh::ChipBootstrapMailboxState::ERROR)
        std::fprintf(stderr, "chipmesh_bringup: rank %d (pid %d) failed: %s\n", r.rank,
                     static_cast<int>(r.pid), channel.error_message().c_str());
    }
    cleanup();
    remove_leftovers_of(ranks);
    return 1;
  }

  for (Rank& r : ranks) {
    if (waitpid(r.pid, &r.wait_status, 0) == r.pid) r.reaped = true;
    if (!r.reaped || !WIFEXITED(r.wait_status) || WEXITSTATUS(r.wait_status) != 0) {
      std::fprintf(stderr, "chipmesh_bringup: rank %d (pid %d) %s after bring-up\n", r.rank,
                   static_cast<int>(r.pid), describe_exit(r.wait_status).c_str());
      failed = true;
    }
  }

  std::printf("chipmesh bring-up: %d sim chips, window %zu bytes requested, buffers input+output (%zu x float32 each)\n\n",
              nranks, kWindowBytes, kElements);
  std::printf("%4s %8s %18s %18s %10s %18s %18s\n", "rank", "pid", "device_ctx", "window_base",
              "win_size", "input", "output");
  for (Rank& r : ranks) {
    chipmesh::ChipBootstrapChannel channel(r.mailbox, 2);
    std::vector<uint64_t> ptrs = channel.buffer_ptrs();
    auto ptr = [&](size_t i) { return i < ptrs.size() ? ptrs[i] : uint64_t{0}; };
    std::printf("%4d %8d 0x%016" PRIx64 " 0x%016" PRIx64 " %10" PRIu64 " 0x%016" PRIx64 " 0x%016" PRIx64 "\n",
                r.rank, static_cast<int>(r.pid), channel.device_ctx(), channel.local_window_base(),
                channel.actual_window_size(), ptr(0), ptr(1));
  }
  const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  std::printf("\nbring-up time (fork to all mailboxes published): %.1f ms\n", ms);

  cleanup();
  if (failed) return 1;
  std::printf("OK\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int chips = 4;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    }
    if (arg == "--chips" && i + 1 < argc) {
      if (!parse_chips(argv[++i], &chips)) {
        usage(stderr);
        return 2;
      }
    } else if (arg.rfind("--chips=", 0) == 0) {
      if (!parse_chips(arg.c_str() + 8, &chips)) {
        usage(stderr);
        return 2;
      }
    } else {
      std::fprintf(stderr, "chipmesh_bringup: unknown argument '%s'\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  return run(chips);
}

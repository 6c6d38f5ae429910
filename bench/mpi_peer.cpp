#include "mpi_peer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <sstream>

#include "knobs/knobs.h"

extern char** environ;

namespace chipmesh::bench {

void parse_peer_output(const std::string& out, std::map<uint64_t, PeerPoint>& into) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    if (line.rfind("stream ", 0) == 0) {
      std::string tag;
      unsigned long long bytes = 0;
      int ops = 0;
      if (!(in >> tag >> bytes >> ops)) continue;
      for (double t; in >> t;) into[bytes].stream_us.push_back(t);
      continue;
    }
    unsigned long long bytes = 0;
    long long count = 0, wrong = 0;
    if (!(in >> bytes >> count >> wrong)) continue;
    PeerPoint& p = into[bytes];
    p.wrong = std::max<int64_t>(p.wrong, wrong);
    for (double t; in >> t;) p.us.push_back(t);
  }
}

namespace fs = std::filesystem;

std::string ProcessResult::describe() const {
  std::string s;
  if (!started) return "could not start: " + err;
  if (timed_out) s = "timed out";
  else if (signal) s = "killed by signal " + std::to_string(signal);
  else s = "exit status " + std::to_string(exit_code);
  std::string tail = err.empty() ? out : err;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  if (tail.size() > 400) tail = "..." + tail.substr(tail.size() - 400);
  for (char& c : tail)
    if (c == '\n') c = ' ';
  if (!tail.empty()) s += ": " + tail;
  return s;
}

ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s) {
  ProcessResult r;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    r.err = std::strerror(errno);
    return r;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.err = std::strerror(errno);
    close(out_pipe[0]);
    close(out_pipe[1]);
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const auto t0 = Clock::now();
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    r.err = argv[0] + ": " + std::strerror(rc);
    return r;
  }
  r.started = true;
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      kill(-pid, SIGKILL);
      break;
    }
    int n = poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // mpirun's own children must not outlive it (a killed or broken launch).
  kill(-pid, SIGKILL);
  r.wall_ms = ms_between(t0, Clock::now());
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

namespace {

[[maybe_unused]] std::string which(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    if (dir.empty()) dir.assign(1, '.');  // (not = ".": a GCC 12 -Wrestrict false positive)
    std::string full = dir + "/" + name;
    if (access(full.c_str(), X_OK) == 0) return full;
    start = end + 1;
  }
  return "";
}

[[maybe_unused]] std::string self_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

}  // namespace

MpiPeer::MpiPeer(const BenchOptions& o) {
  if (o.no_mpi) {
    reason_ = "disabled (--no-mpi)";
    return;
  }
#ifndef CHIPMESH_BENCH_HAVE_MPI
  reason_ = "Open MPI was not found when chipmesh was configured (install openmpi-bin libopenmpi-dev and "
            "reconfigure; scripts/bench.sh does both)";
  return;
#else
  std::vector<std::string> dirs;
  if (knobs::is_set(knobs::Id::BenchMpiDir)) dirs.push_back(knobs::text(knobs::Id::BenchMpiDir));
  if (std::string d = self_dir(); !d.empty()) dirs.push_back(d);
  dirs.emplace_back(CHIPMESH_BENCH_MPI_DIR);
  for (const auto& d : dirs) {
    if (access((d + "/" + kBringupProgram).c_str(), X_OK) == 0 &&
        access((d + "/" + kAllreduceProgram).c_str(), X_OK) == 0) {
      dir_ = d;
      break;
    }
  }
  if (dir_.empty()) {
    reason_ = std::string("the MPI programs (") + kBringupProgram + ", " + kAllreduceProgram + ") were not found in " +
              dirs.back() + " (build them: cmake --build <build>)";
    return;
  }
  mpirun_ = which(knobs::is_set(knobs::Id::BenchMpirun) ? knobs::text(knobs::Id::BenchMpirun) : CHIPMESH_BENCH_MPIEXEC);
  if (mpirun_.empty()) mpirun_ = which("mpirun");
  if (mpirun_.empty()) {
    reason_ = "mpirun not found (install openmpi-bin)";
    return;
  }
  ProcessResult v = run_process({mpirun_, "--version"}, 20);
  if (!v.ok()) {
    reason_ = mpirun_ + " --version failed: " + v.describe();
    return;
  }
  version_ = v.out.substr(0, v.out.find('\n'));
  if (version_.find("Open MPI") == std::string::npos && version_.find("OpenRTE") == std::string::npos) {
    reason_ = "mpirun is not Open MPI (" + version_ + ")";
    return;
  }
  flags_ = {"--oversubscribe"};
  if (geteuid() == 0) flags_.push_back("--allow-run-as-root");
  // Shared memory only; no CMA single-copy (containers usually forbid
  // process_vm_readv), the same data path as chipmesh's windows.
  flags_.insert(flags_.end(), {"--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none"});
  available_ = true;
#endif
}

std::string MpiPeer::program_path(const std::string& name) const { return dir_ + "/" + name; }

std::vector<std::string> MpiPeer::command(int np, const std::string& program, const std::vector<std::string>& args) const {
  std::vector<std::string> cmd{mpirun_, "-np", std::to_string(np)};
  cmd.insert(cmd.end(), flags_.begin(), flags_.end());
  cmd.push_back(program_path(program));
  cmd.insert(cmd.end(), args.begin(), args.end());
  return cmd;
}

std::string MpiPeer::command_line(int np, const std::string& program, const std::vector<std::string>& args) const {
  std::string s;
  for (const auto& a : command(np, program, args)) s += (s.empty() ? "" : " ") + a;
  return s;
}

ProcessResult MpiPeer::run(int np, const std::string& program, const std::vector<std::string>& args, double timeout_s) {
  ProcessResult r;
  if (!available_) return r;
  r = run_process(command(np, program, args), timeout_s);
  if (!r.ok()) {
    available_ = false;
    failed_ = true;
    reason_ = "mpirun -np " + std::to_string(np) + " " + program + " failed: " + r.describe();
  }
  return r;
}

std::string MpiPeer::note() const {
  if (failed_) return "Open MPI peer failed (points after this failure have no peer figures): " + reason_;
  if (!available_) return "Open MPI peer unavailable: " + reason_;
  std::string flags;
  for (const auto& f : flags_) flags += " " + f;
  return "Open MPI peer: " + version_ + "; mpirun -np N" + flags;
}

}  // namespace chipmesh::bench

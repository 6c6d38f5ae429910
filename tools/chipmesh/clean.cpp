// Removal rules, most careful first:
//  - only names starting with "chipmesh" in /dev/shm, owned by this user;
//  - only when the name says which process made it (see ownership.h) and
//    that process is gone (or a zombie);
//  - a rootinfo file only when it is a valid sim rootinfo whose rank 0 is
//    gone or whose pid now names another process (start time differs).
// Everything else is kept, and the reason printed.

#include "clean.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "comm_layout.h"
#include "ownership.h"

namespace chipmesh::cli {

namespace {

namespace fs = std::filesystem;

// Where POSIX shared-memory names live on Linux.
constexpr const char* kShmDir = "/dev/shm";

struct Tally {
  int removed = 0;
  int kept = 0;
  int failed = 0;
};

// "owner pid 123 is gone", "rank 0 pid 123 has exited (zombie)".
std::string gone_reason(const char* who, pid_t pid, ProcessState state) {
  return std::string(who) + " pid " + std::to_string(pid) +
         (state == ProcessState::Zombie ? " has exited (zombie)" : " is gone");
}

// Removes (or, dry run, announces) one object. `unlink_fn` returns 0 or -1
// with errno; ENOENT means someone else removed it first, which is fine.
template <typename Unlink>
void remove_one(const CleanOptions& opts, const std::string& shown, const std::string& why,
                Unlink unlink_fn, Tally& t, FILE* out, FILE* err) {
  if (opts.dry_run) {
    std::fprintf(out, "would remove %s (%s)\n", shown.c_str(), why.c_str());
    ++t.removed;
    return;
  }
  if (unlink_fn() == 0 || errno == ENOENT) {
    std::fprintf(out, "removed %s (%s)\n", shown.c_str(), why.c_str());
    ++t.removed;
  } else {
    std::fprintf(err, "chipmesh clean: could not remove %s: %s\n", shown.c_str(), std::strerror(errno));
    ++t.failed;
  }
}

void keep_one(const std::string& shown, const std::string& why, Tally& t, FILE* out) {
  std::fprintf(out, "kept %s (%s)\n", shown.c_str(), why.c_str());
  ++t.kept;
}

void clean_shm(const CleanOptions& opts, Tally& t, FILE* out, FILE* err) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kShmDir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("chipmesh", 0) == 0) names.push_back(std::move(name));
  }
  if (ec) {
    std::fprintf(err, "chipmesh clean: cannot list %s: %s\n", kShmDir, ec.message().c_str());
    ++t.failed;
    return;
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) std::fprintf(out, "no chipmesh objects in %s\n", kShmDir);

  const uid_t me = geteuid();
  for (const std::string& name : names) {
    const std::string shown = std::string(kShmDir) + "/" + name;
    struct stat st;
    if (::lstat(shown.c_str(), &st) != 0) continue;  // removed meanwhile
    if (!S_ISREG(st.st_mode)) {
      keep_one(shown, "not a shared-memory object", t, out);
      continue;
    }
    if (st.st_uid != me) {
      keep_one(shown, "owned by uid " + std::to_string(st.st_uid) + ", not this user", t, out);
      continue;
    }
    std::optional<pid_t> pid = owner_pid_of_shm_name(name);
    if (!pid) {
      keep_one(shown, "owner unknown: the name does not say which process made it", t, out);
      continue;
    }
    ProcessInfo info = process_info(*pid);
    if (info.state == ProcessState::Alive) {
      keep_one(shown, "owner pid " + std::to_string(*pid) + " is alive", t, out);
      continue;
    }
    const std::string shm_name = "/" + name;
    remove_one(opts, shown, gone_reason("owner", *pid, info.state),
               [&] { return ::shm_unlink(shm_name.c_str()); }, t, out, err);
  }
}

// Reads a sim rootinfo file; false (and why) when it is not one.
bool read_rootinfo(const std::string& path, sim::RootInfo* ri, std::string* why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    *why = std::strerror(errno);
    return false;
  }
  struct stat st;
  bool ok = false;
  if (::fstat(fd, &st) != 0) {
    *why = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    *why = "not a regular file";
  } else if (st.st_uid != geteuid()) {
    *why = "owned by uid " + std::to_string(st.st_uid) + ", not this user";
  } else if (st.st_size != static_cast<off_t>(sizeof(sim::RootInfo))) {
    *why = "not a chipmesh rootinfo: " + std::to_string(st.st_size) + " bytes, expected " +
           std::to_string(sizeof(sim::RootInfo));
  } else if (::pread(fd, ri, sizeof(*ri), 0) != static_cast<ssize_t>(sizeof(*ri))) {
    *why = "short read";
  } else if (ri->magic != sim::kRootInfoMagic || ri->version != sim::kLayoutVersion ||
             ri->size != sizeof(sim::RootInfo)) {
    *why = "not a chipmesh rootinfo: foreign magic, version or size";
  } else {
    ok = true;
  }
  ::close(fd);
  return ok;
}

void clean_rootinfo(const CleanOptions& opts, const std::string& path, Tally& t, FILE* out, FILE* err) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    std::fprintf(out, "no rootinfo at %s (%s)\n", path.c_str(), std::strerror(errno));
  } else {
    sim::RootInfo ri{};
    std::string why;
    if (!read_rootinfo(path, &ri, &why)) {
      keep_one(path, why, t, out);
    } else {
      const pid_t root = static_cast<pid_t>(ri.root_pid);
      ProcessInfo info = process_info(root);
      const std::string rank0 = "rank 0 pid " + std::to_string(root);
      if (info.state != ProcessState::Alive) {
        remove_one(opts, path, gone_reason("rank 0", root, info.state), [&] { return ::unlink(path.c_str()); }, t,
                   out, err);
      } else if (info.start_time == 0 || ri.root_start == 0) {
        keep_one(path, rank0 + " runs and its start time cannot be compared", t, out);
      } else if (info.start_time == ri.root_start) {
        keep_one(path, rank0 + " is alive", t, out);
      } else {
        remove_one(opts, path, rank0 + " now names another process (start time differs)",
                   [&] { return ::unlink(path.c_str()); }, t, out, err);
      }
    }
  }

  // Temp files of a publisher that died between create and rename:
  // "<rootinfo>.tmp.<pid>.<16 hex>" next to it.
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string base = p.filename().string();
  std::error_code ec;
  std::vector<std::string> temps;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (owner_pid_of_rootinfo_temp(name, base)) temps.push_back(std::move(name));
  }
  std::sort(temps.begin(), temps.end());
  for (const std::string& name : temps) {
    const std::string shown = (dir / name).string();
    struct stat tst;
    if (::lstat(shown.c_str(), &tst) != 0) continue;
    if (!S_ISREG(tst.st_mode) || tst.st_uid != geteuid()) {
      keep_one(shown, "not a regular file of this user", t, out);
      continue;
    }
    const pid_t pid = *owner_pid_of_rootinfo_temp(name, base);
    ProcessInfo info = process_info(pid);
    if (info.state == ProcessState::Alive) {
      keep_one(shown, "owner pid " + std::to_string(pid) + " is alive", t, out);
      continue;
    }
    remove_one(opts, shown, gone_reason("owner", pid, info.state), [&] { return ::unlink(shown.c_str()); }, t, out,
               err);
  }
}

}  // namespace

int run_clean(const CleanOptions& opts, FILE* out, FILE* err) {
  Tally t;
  clean_shm(opts, t, out, err);
  for (const std::string& path : opts.rootinfo_paths) clean_rootinfo(opts, path, t, out, err);
  std::string summary = std::to_string(t.removed) + (opts.dry_run ? " would be removed, " : " removed, ") +
                        std::to_string(t.kept) + " kept";
  if (t.failed) summary += ", " + std::to_string(t.failed) + " failed";
  std::fprintf(out, "chipmesh clean: %s\n", summary.c_str());
  return t.failed ? 1 : 0;
}

}  // namespace chipmesh::cli

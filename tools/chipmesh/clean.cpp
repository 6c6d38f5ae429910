// Removal rules, most careful first:
//  - only names starting with "chipmesh" in /dev/shm, owned by this user;
//  - only when the name says which process made it and that process is gone
//    (or a zombie). The command's own staging names (ownership.h) are
//    judged here; every other name is judged by the platform that made it,
//    through its transport's inspect_leftover hook (transport_abi.h);
//  - a rootinfo file (and the rendezvous temp files next to it) only when a
//    platform recognises it and says its owner is gone.
// Everything else is kept, and the reason printed. clean knows no
// platform's layout: it only asks.

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

#include "chipmesh/chip_worker.h"
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

// The platforms' leftover hooks.
struct Inspectors {
  std::vector<const chipmesh_transport_t*> transports;

  Inspectors(const std::vector<std::string>& platforms, FILE* err) {
    for (const std::string& name : platforms) {
      try {
        ChipWorker w;
        w.init(name);
        if (w.has_transport() && w.transport().inspect_leftover) transports.push_back(&w.transport());
      } catch (const std::exception& e) {
        std::fprintf(err, "chipmesh clean: platform '%s' skipped: %s\n", name.c_str(), e.what());
      }
    }
  }

  struct Judgement {
    int verdict = CHIPMESH_LEFTOVER_NOT_OURS;
    std::string reason;  // for NOT_OURS: every platform's reason
  };

  // The first platform that claims `name` decides. A platform that fails to
  // inspect it makes clean keep it (LIVE), with the error as the reason.
  Judgement judge(int kind, const std::string& name) const {
    Judgement out;
    for (const chipmesh_transport_t* t : transports) {
      int verdict = CHIPMESH_LEFTOVER_NOT_OURS;
      char reason[512] = "";
      if (t->inspect_leftover(kind, name.c_str(), &verdict, reason, sizeof(reason)) != CHIPMESH_SUCCESS)
        return {CHIPMESH_LEFTOVER_LIVE, std::string("platform ") + t->name + " could not inspect it: " + t->last_error()};
      if (verdict != CHIPMESH_LEFTOVER_NOT_OURS) return {verdict, reason};
      if (*reason) out.reason += (out.reason.empty() ? "" : "; ") + std::string(reason);
    }
    return out;
  }
};

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

void clean_shm(const CleanOptions& opts, const Inspectors& platforms, Tally& t, FILE* out, FILE* err) {
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
    const std::string shm_name = "/" + name;
    auto unlink_it = [&] { return ::shm_unlink(shm_name.c_str()); };
    // The command's own staging names first, then the platforms'.
    if (std::optional<pid_t> pid = owner_pid_of_shm_name(name)) {
      ProcessInfo info = process_info(*pid);
      if (info.state == ProcessState::Alive) keep_one(shown, process::describe("owner", *pid, info.state), t, out);
      else remove_one(opts, shown, process::describe("owner", *pid, info.state), unlink_it, t, out, err);
      continue;
    }
    Inspectors::Judgement j = platforms.judge(CHIPMESH_LEFTOVER_SHM, name);
    if (j.verdict == CHIPMESH_LEFTOVER_STALE) remove_one(opts, shown, j.reason, unlink_it, t, out, err);
    else if (j.verdict == CHIPMESH_LEFTOVER_LIVE) keep_one(shown, j.reason, t, out);
    else keep_one(shown, "owner unknown: the name does not say which process made it", t, out);
  }
}

void clean_rootinfo(const CleanOptions& opts, const Inspectors& platforms, const std::string& path, Tally& t,
                    FILE* out, FILE* err) {
  auto unlink_path = [](const std::string& p) { return [p] { return ::unlink(p.c_str()); }; };
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    std::fprintf(out, "no rootinfo at %s (%s)\n", path.c_str(), std::strerror(errno));
  } else {
    Inspectors::Judgement j = platforms.judge(CHIPMESH_LEFTOVER_FILE, path);
    if (j.verdict == CHIPMESH_LEFTOVER_STALE) remove_one(opts, path, j.reason, unlink_path(path), t, out, err);
    else keep_one(path, j.reason.empty() ? "no platform recognises it" : j.reason, t, out);
  }

  // Files next to it that a platform's rendezvous made for it ("<name>.*",
  // e.g. the temp file of a publisher that died before its rename). Names no
  // platform claims are not ours to mention.
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string prefix = p.filename().string() + ".";
  std::error_code ec;
  std::vector<std::string> related;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) related.push_back(std::move(name));
  }
  std::sort(related.begin(), related.end());
  for (const std::string& name : related) {
    const std::string shown = (dir / name).string();
    Inspectors::Judgement j = platforms.judge(CHIPMESH_LEFTOVER_FILE, shown);
    if (j.verdict == CHIPMESH_LEFTOVER_STALE) remove_one(opts, shown, j.reason, unlink_path(shown), t, out, err);
    else if (j.verdict == CHIPMESH_LEFTOVER_LIVE) keep_one(shown, j.reason, t, out);
  }
}

}  // namespace

int run_clean(const CleanOptions& opts, FILE* out, FILE* err) {
  Tally t;
  const Inspectors platforms(opts.platforms, err);
  clean_shm(opts, platforms, t, out, err);
  for (const std::string& path : opts.rootinfo_paths) clean_rootinfo(opts, platforms, path, t, out, err);
  std::string summary = std::to_string(t.removed) + (opts.dry_run ? " would be removed, " : " removed, ") +
                        std::to_string(t.kept) + " kept";
  if (t.failed) summary += ", " + std::to_string(t.failed) + " failed";
  std::fprintf(out, "chipmesh clean: %s\n", summary.c_str());
  return t.failed ? 1 : 0;
}

}  // namespace chipmesh::cli

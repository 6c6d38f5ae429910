#include "rendezvous/file_store.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "chipmesh/errors.h"
#include "common/deadline.h"

namespace chipmesh::rendezvous {
namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)); }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

uint64_t random_nonce() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof(v), 0) != static_cast<ssize_t>(sizeof(v))) v = static_cast<uint64_t>(getpid()) << 32;
  return v;
}

// One inotify instance per thread, kept for the life of the process: closing
// one waits for an SRCU grace period in the kernel (measured 7-15 ms here),
// which would otherwise land on every waiting rank's comm_init. -1 (errno
// set) where none can be had; the next wait tries again.
int thread_inotify() {
  thread_local int fd = -1;
  if (fd < 0) fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  return fd;
}

// Out of a resource that inotify needs (instances or watches of this user,
// file descriptors, kernel memory): the wait polls instead of failing the
// rendezvous. With fs.inotify.max_user_instances at its usual 128, a busy
// machine's other processes can leave none.
bool inotify_exhausted(int err) { return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOSPC; }

void drain(int fd) {
  alignas(struct inotify_event) char buf[4096];
  while (::read(fd, buf, sizeof(buf)) > 0) {
  }
}

// How long a waiter sleeps at most between two looks: bounds how long a
// value refused for a reason that can change without a file event (its
// writer died) goes unnoticed.
constexpr std::chrono::milliseconds kWaitSlice{200};

}  // namespace

FileStore::FileStore(std::string dir) : dir_(dir.empty() ? std::string(".") : std::move(dir)), nonce_(random_nonce()) {}

std::string FileStore::path(const std::string& key) const { return (std::filesystem::path(dir_) / key).string(); }

std::string FileStore::temp_path(const std::string& key) const {
  char suffix[64];
  std::snprintf(suffix, sizeof(suffix), ".tmp.%d.%016llx", static_cast<int>(getpid()),
                static_cast<unsigned long long>(nonce_));
  return path(key) + suffix;
}

std::vector<std::string> FileStore::local_names(const std::string& key) const { return {temp_path(key), path(key)}; }

std::string FileStore::describe(const std::string& key) const { return "rendezvous file '" + path(key) + "'"; }

std::optional<pid_t> FileStore::temp_owner(const std::string& file_name) {
  const size_t at = file_name.rfind(".tmp.");
  if (at == std::string::npos || at == 0) return std::nullopt;
  const size_t pos = at + 5;
  size_t end = pos;
  while (end < file_name.size() && std::isdigit(static_cast<unsigned char>(file_name[end]))) ++end;
  if (end == pos || end - pos > 10 || end >= file_name.size() || file_name[end] != '.') return std::nullopt;
  if (file_name.size() != end + 1 + 16) return std::nullopt;
  for (size_t i = end + 1; i < file_name.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(file_name[i]))) return std::nullopt;
  unsigned long long v = std::strtoull(file_name.substr(pos, end - pos).c_str(), nullptr, 10);
  if (v == 0 || v > 0x7fffffffULL) return std::nullopt;
  return static_cast<pid_t>(v);
}

void FileStore::set(const std::string& key, const Bytes& value) { publish(key, value, false); }

bool FileStore::set_if_absent(const std::string& key, const Bytes& value) { return publish(key, value, true); }

bool FileStore::publish(const std::string& key, const Bytes& value, bool only_if_absent) {
  const std::string final_path = path(key);
  // rename() would replace a link (or anything not a regular file) with our
  // file, and our cleanup would then delete it: the user's, not ours.
  struct stat existing;
  if (::lstat(final_path.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode))
    throw ConfigError("rendezvous: '" + final_path + "' exists and is " +
                      (S_ISLNK(existing.st_mode) ? "a symbolic link" : "not a regular file") +
                      "; refusing to replace it (choose another rootinfo path)");
  const std::string tmp = temp_path(key);
  int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    throw ConfigError("rendezvous: cannot create '" + final_path + "' (via " + tmp + "): " + errno_text(errno));
  bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  int err = errno;
  ::close(fd);
  if (ok && only_if_absent) {
    int rc = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL) {  // no RENAME_NOREPLACE here: link() refuses an existing name too
      rc = ::link(tmp.c_str(), final_path.c_str());
      if (rc == 0) ::unlink(tmp.c_str());
    }
    if (rc == 0) return true;
    err = errno;
    ::unlink(tmp.c_str());
    if (err == EEXIST) return false;
    throw CommError("rendezvous: cannot publish '" + final_path + "': " + errno_text(err));
  }
  if (!ok || ::rename(tmp.c_str(), final_path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    throw CommError("rendezvous: cannot publish '" + final_path + "': " + errno_text(err));
  }
  return true;
}

std::optional<Bytes> FileStore::check(const std::string& key, std::string* why) {
  const std::string p = path(key);
  Fd f{::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
  if (f.fd < 0) {
    *why = errno == ENOENT ? "no file yet" : "cannot open it: " + errno_text(errno);
    return std::nullopt;
  }
  struct stat st;
  if (fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = "not a regular file";
    return std::nullopt;
  }
  if (st.st_uid != geteuid()) {
    *why = "owned by uid " + std::to_string(st.st_uid) + ", not by this uid " + std::to_string(geteuid());
    return std::nullopt;
  }
  if (st.st_size < 0 || static_cast<size_t>(st.st_size) > kMaxValueBytes) {
    *why = "it has " + std::to_string(st.st_size) + " bytes, more than a value of this store (" +
           std::to_string(kMaxValueBytes) + ")";
    return std::nullopt;
  }
  Bytes value(static_cast<size_t>(st.st_size));
  if (::pread(f.fd, value.data(), value.size(), 0) != static_cast<ssize_t>(value.size())) {
    *why = "short read";
    return std::nullopt;
  }
  return value;
}

Bytes FileStore::wait(const std::string& key, std::chrono::milliseconds timeout, const Accept& accept,
                      const std::string& what) {
  // Watch the directory before the first look, so a rename that lands
  // between the look and the wait still wakes us.
  const int in = thread_inotify();
  if (in < 0 && !inotify_exhausted(errno))
    throw CommError(what + ": inotify_init1 failed: " + errno_text(errno));
  const int watch = in < 0 ? -1 : inotify_add_watch(in, dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB);
  if (in >= 0 && watch < 0 && !inotify_exhausted(errno))
    throw ConfigError(what + ": cannot watch directory '" + dir_ + "' of " + describe(key) + ": " + errno_text(errno));
  if (watch < 0) {
    // What inotify_add_watch would have refused, refused alike.
    struct stat st;
    const bool found = ::stat(dir_.c_str(), &st) == 0;
    const int err = found ? ENOTDIR : errno;
    if (!found || !S_ISDIR(st.st_mode))
      throw ConfigError(what + ": cannot watch directory '" + dir_ + "' of " + describe(key) + ": " + errno_text(err));
  }
  struct Unwatch {
    int in, watch;
    ~Unwatch() {
      if (watch < 0) return;
      inotify_rm_watch(in, watch);
      drain(in);
    }
  } unwatch{in, watch};

  Deadline deadline(timeout);
  const Deadline yielding(kWaiterYieldPhase);
  // Without a watch, looks come at growing intervals instead: at most
  // kPollMax late, and no busier than a look per kPollMax once it is reached.
  constexpr std::chrono::microseconds kPollFirst{50}, kPollMax{5000};
  std::chrono::microseconds poll_every = kPollFirst;
  std::string why;
  for (;;) {
    if (std::optional<Bytes> value = check(key, &why); value && accept(*value, &why)) return std::move(*value);
    if (deadline.expired())
      throw TimeoutError(what + " timed out after " + std::to_string(deadline.budget_ms()) + " ms waiting for " +
                         describe(key) + " (" + why + ")");
    if (watch < 0) {
      if (!yielding.expired()) {
        sched_yield();
      } else {
        const auto slice = std::min<std::chrono::microseconds>(
            poll_every, std::chrono::duration_cast<std::chrono::microseconds>(deadline.next_slice(kPollMax)));
        ::usleep(static_cast<useconds_t>(std::max<int64_t>(slice.count(), 1)));
        poll_every = std::min(poll_every * 2, kPollMax);
      }
      continue;
    }
    struct pollfd pfd{in, POLLIN, 0};
    bool event = false;
    while (!event && !yielding.expired()) {
      event = ::poll(&pfd, 1, 0) > 0;
      if (!event) sched_yield();
    }
    if (!event) {
      auto slice = std::chrono::duration_cast<std::chrono::milliseconds>(deadline.next_slice(kWaitSlice));
      event = ::poll(&pfd, 1, static_cast<int>(slice.count()) + 1) > 0;
    }
    if (event) drain(in);
  }
}

void FileStore::remove_if(const std::string& key, const std::function<bool(const Bytes&)>& is_ours) noexcept {
  try {
    std::string why;
    std::optional<Bytes> value = check(key, &why);
    // A newer value (another communicator's) may already be there: leave it.
    if (value && is_ours(*value)) ::unlink(path(key).c_str());
  } catch (...) {
  }
}

}  // namespace chipmesh::rendezvous

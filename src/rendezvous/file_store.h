// The file store: one file per key in a directory every rank sees (a local
// /tmp on one host). set() writes a private temp file and renames it into
// place, so readers never see a partial value and a stale file of a crashed
// run is replaced atomically; check() trusts only a regular file of this
// user, opened without following links; wait() blocks on inotify (one
// instance per thread, kept for the process) instead of polling.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "rendezvous/store.h"

namespace chipmesh::rendezvous {

class FileStore : public Store {
 public:
  // dir: the directory that holds one file per key ("" or "." for the
  // current directory). Nothing is created until set().
  explicit FileStore(std::string dir);

  void set(const std::string& key, const Bytes& value) override;
  // renameat2(RENAME_NOREPLACE) of the temp file: atomic against another
  // publisher (or link() where the file system has no RENAME_NOREPLACE).
  bool set_if_absent(const std::string& key, const Bytes& value) override;
  std::optional<Bytes> check(const std::string& key, std::string* why) override;
  Bytes wait(const std::string& key, std::chrono::milliseconds timeout, const Accept& accept,
             const std::string& what) override;
  void remove_if(const std::string& key, const std::function<bool(const Bytes&)>& is_ours) noexcept override;
  // {temp file, final file} of set(key) in this process.
  std::vector<std::string> local_names(const std::string& key) const override;
  std::string describe(const std::string& key) const override;

  // The file that holds `key`.
  std::string path(const std::string& key) const;
  // The temp file set(key) writes before its rename:
  // "<path>.tmp.<decimal pid>.<16 hex nonce>".
  std::string temp_path(const std::string& key) const;

  // The pid in a temp file name ("<anything>.tmp.<decimal pid>.<16 hex>"),
  // for cleaners; nullopt for any other name.
  static std::optional<pid_t> temp_owner(const std::string& file_name);

  // Values are small (a rootinfo is a few hundred bytes): larger files are
  // not a value of this store.
  static constexpr size_t kMaxValueBytes = 64 << 10;

 private:
  bool publish(const std::string& key, const Bytes& value, bool only_if_absent);
  std::string dir_;
  uint64_t nonce_;  // random per store: temp names of two stores never collide
};

}  // namespace chipmesh::rendezvous

// How the ranks of one communicator find each other: a small key/value store
// (gloo's rendezvous::Store is the model). Rank 0 sets a key, the others wait
// for a value they can trust. The stores: a file in a directory every rank
// sees (file_store.h), and a slot of a table in memory every rank maps, for
// the chips of one Worker (memory_store.h). An MPI- or TCP-based store
// implements the same interface; make_store() is the one place that picks
// one, so a platform never names a store type.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace chipmesh::rendezvous {

using Bytes = std::vector<char>;

class Store {
 public:
  virtual ~Store() = default;

  // Publishes `value` under `key` atomically: a reader sees the whole value
  // or none. Replaces an older value. Throws an Error naming the key.
  virtual void set(const std::string& key, const Bytes& value) = 0;

  // The same, but only when `key` holds no value: false (and nothing
  // published) when one is there, decided atomically, so of two publishers
  // racing on one key exactly one wins. A store that cannot decide it
  // atomically checks, then sets.
  virtual bool set_if_absent(const std::string& key, const Bytes& value) {
    std::string why;
    if (check(key, &why)) return false;
    set(key, value);
    return true;
  }

  // The value under `key` now, or nullopt with the reason in *why (absent,
  // unreadable, not this user's).
  virtual std::optional<Bytes> check(const std::string& key, std::string* why) = 0;

  // Blocks until check(key) yields a value `accept` takes (accept may refuse
  // with a reason, e.g. a stale value of a crashed run) and returns it.
  // TimeoutError after `timeout`, naming the key and the last reason.
  // `what` prefixes errors ("comm_init: rank 1 of 2").
  using Accept = std::function<bool(const Bytes& value, std::string* why)>;
  virtual Bytes wait(const std::string& key, std::chrono::milliseconds timeout, const Accept& accept,
                     const std::string& what) = 0;

  // Removes `key` when its value still satisfies `is_ours` (a newer value
  // set by someone else stays). Never throws.
  virtual void remove_if(const std::string& key, const std::function<bool(const Bytes&)>& is_ours) noexcept = 0;

  // System-wide names (file paths) that set(key) creates in this process,
  // so that a crash handler can remove them: the final one last. Empty for
  // stores that leave nothing behind.
  virtual std::vector<std::string> local_names(const std::string& key) const { (void)key; return {}; }

  // Memory of `bytes` that every rank of this rendezvous maps at the same
  // place and that stays theirs until the communicator is destroyed (its
  // owner lends it for that long), for the communicator's control block:
  // no shared-memory object to create, open, map and unlink. Null when the
  // store has none (a file store; a memory address without a lent area).
  virtual void* shared_control(size_t bytes) { (void)bytes; return nullptr; }

  // True when the owner of the rendezvous gave it up (a member died or
  // failed before it joined): nobody is coming, so a communicator waiting
  // on its peers stops now instead of at its deadline. Cheap: one load.
  virtual bool abandoned() const { return false; }

  // True when a value can only have been written for this very rendezvous
  // (never one left by a crashed run whose writer's pid may be reused), so
  // a reader need not check who wrote it by its start time.
  virtual bool values_are_fresh() const { return false; }

  // "rootinfo '/tmp/x'": how errors name a key.
  virtual std::string describe(const std::string& key) const = 0;
};

// In the message of every failure that an abandoned rendezvous caused
// (Store::abandoned), so that the owner can tell them from the failure
// that made it give up.
inline constexpr char kAbandonedMark[] = "rendezvous abandoned by its owner";

// How long a waiter of any store first yields its core, looking for the
// value without sleeping: it usually lands within ~100 us (rank 0 publishes
// right after the others start), and waking a sleeper costs tens of
// microseconds where an idle vCPU halts.
inline constexpr std::chrono::microseconds kWaiterYieldPhase{200};

// The store behind a rendezvous address, and the key inside it: a
// "chipmesh-mem:..." address is a slot of a Worker's shared table
// (memory_store.h); any other is a file path, a FileStore over its
// directory keyed by its file name. (A future "tcp://host:port/key" or MPI
// address is chosen here.)
struct Opened {
  std::unique_ptr<Store> store;
  std::string key;
};
Opened make_store(const std::string& address);

}  // namespace chipmesh::rendezvous

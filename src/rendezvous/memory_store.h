// The memory store: keys live in slots of a table in memory that every rank
// maps at the same address, as the chips of one Worker inherit the Worker's
// shared region from the fork. A domain's rendezvous, and the bring-up's
// when its rootinfo_path is left empty, then need no file, no inotify and
// no directory: rank 0 writes the slot, the others read it
// (about two thirds of a 2-chip allocate_domain was the file store's work on
// the AMD EPYC VM; docs/PERFORMANCE.md).
//
// Address: "chipmesh-mem:<table address, hex>:<slot>:<generation>[:<control>]".
// The optional last field lends control area <control> of the table to the
// communicator that meets there (Store::shared_control): its owner lends an
// area to one communicator at a time, for its whole life. The
// owner of the table (the Worker) resets a slot to an empty generation
// before it hands out the address; a value of another generation (a reader
// left over from a failed allocation) is never seen. The owner may also
// abandon a generation (a member died or failed before it joined): its
// waiters, publishers and communicators then fail at once instead of at
// their deadline (Store::abandoned). Only a table this process maps, with
// the right magic, is accepted (ConfigError otherwise).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "rendezvous/store.h"

namespace chipmesh::rendezvous {

struct MemorySlot {
  // generation << 2 | state (kEmpty, kWriting, kPublished, kAbandoned); a futex word
  // would need 32 bits, so `bell` is bumped on every change instead.
  std::atomic<uint64_t> word;
  std::atomic<uint32_t> bell;
  uint32_t size;
  char value[240];
};

struct MemoryTable {
  static constexpr uint64_t kMagic = 0x32424154454d4d43ull;  // "CMMETAB2"
  static constexpr uint32_t kSlots = 8;
  static constexpr uint32_t kControls = 8;
  static constexpr size_t kControlBytes = 8192;
  static constexpr uint32_t kNoControl = ~0u;
  uint64_t magic;
  uint32_t slots;
  uint32_t controls;
  MemorySlot slot[kSlots];
  // Lent to communicators (`reset`'s `control`); whoever gets one zeroes
  // what it uses before any peer can see it.
  alignas(4096) unsigned char control[kControls][kControlBytes];

  // Zeroed memory plus this is a valid table (every slot empty, generation 0).
  void init() {
    magic = kMagic;
    slots = kSlots;
    controls = kControls;
  }
  // Makes slot `s` empty at `generation` and returns its address string,
  // which lends control area `control` unless it is kNoControl.
  std::string reset(uint32_t s, uint64_t generation, uint32_t control = kNoControl);
  // Marks generation `generation` of slot `s` abandoned, whatever it holds
  // (nothing once the slot moved on to another generation), and wakes its
  // waiters.
  void abandon(uint32_t s, uint64_t generation);
};

inline constexpr char kMemoryAddressPrefix[] = "chipmesh-mem:";

class MemoryStore : public Store {
 public:
  // Parses what follows the prefix; ConfigError for a malformed address or
  // a table that is not mapped here or has no magic.
  explicit MemoryStore(const std::string& address);

  void set(const std::string& key, const Bytes& value) override;
  bool set_if_absent(const std::string& key, const Bytes& value) override;
  std::optional<Bytes> check(const std::string& key, std::string* why) override;
  Bytes wait(const std::string& key, std::chrono::milliseconds timeout, const Accept& accept,
             const std::string& what) override;
  void remove_if(const std::string& key, const std::function<bool(const Bytes&)>& is_ours) noexcept override;
  std::string describe(const std::string& key) const override;
  void* shared_control(size_t bytes) override;
  // A generation is read only by the rendezvous it was reset for.
  bool values_are_fresh() const override { return true; }
  bool abandoned() const override;

  static constexpr size_t kMaxValueBytes = sizeof(MemorySlot::value);

 private:
  bool publish(const Bytes& value, bool only_if_absent);
  std::string abandoned_message() const;
  MemoryTable* table_ = nullptr;
  MemorySlot* slot_ = nullptr;
  uint32_t index_ = 0;
  uint32_t control_ = MemoryTable::kNoControl;
  uint64_t generation_ = 0;
};

}  // namespace chipmesh::rendezvous

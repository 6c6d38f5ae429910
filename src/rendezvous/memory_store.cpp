#include "rendezvous/memory_store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "chipmesh/errors.h"
#include "common/deadline.h"
#include "common/futex.h"

namespace chipmesh::rendezvous {
namespace {

constexpr uint64_t kEmpty = 0, kWriting = 1, kPublished = 2, kAbandoned = 3;
constexpr uint64_t word_of(uint64_t generation, uint64_t state) { return generation << 2 | state; }
constexpr uint64_t generation_of(uint64_t word) { return word >> 2; }
constexpr uint64_t state_of(uint64_t word) { return word & 3; }

// How long a waiter sleeps at most between two looks: bounds how long a
// value refused for a reason that can change without a store event (its
// writer died) goes unnoticed.
constexpr std::chrono::milliseconds kWaitSlice{50};

void ring(MemorySlot& s) {
  s.bell.fetch_add(1, std::memory_order_seq_cst);
  futex::wake(&s.bell);
}

// Every page of [p, p + bytes) is mapped in this process.
bool mapped(const void* p, size_t bytes) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const auto end = reinterpret_cast<uintptr_t>(p) + bytes;
  return msync(reinterpret_cast<void*>(begin), end - begin, MS_ASYNC) == 0;
}

// The unsigned number `text` spells in `base`, all of it, or false.
// (<charconv>, not strtoull: every chip parses an address at bring-up, and
// strtoull's code is a page of libc a fresh chip has not touched.)
bool parse_number(const std::string& text, int base, uint64_t* out) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return false;
  *out = v;
  return true;
}

}  // namespace

std::string MemoryTable::reset(uint32_t s, uint64_t generation, uint32_t lent) {
  MemorySlot& m = slot[s];
  m.word.store(word_of(generation, kEmpty), std::memory_order_release);
  ring(m);
  char buf[112];
  int n = std::snprintf(buf, sizeof buf, "%s%llx:%u:%llu", kMemoryAddressPrefix,
                        static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(this)), s,
                        static_cast<unsigned long long>(generation));
  if (lent != kNoControl) std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), ":%u", lent);
  return buf;
}

void MemoryTable::abandon(uint32_t s, uint64_t generation) {
  MemorySlot& m = slot[s];
  uint64_t w = m.word.load(std::memory_order_acquire);
  while (generation_of(w) == generation && state_of(w) != kAbandoned)
    if (m.word.compare_exchange_weak(w, word_of(generation, kAbandoned), std::memory_order_acq_rel)) {
      ring(m);
      return;
    }
}

MemoryStore::MemoryStore(const std::string& address) {
  const std::string prefix = kMemoryAddressPrefix;
  const std::string bad = "rendezvous: memory address '" + address + "' ";
  if (address.compare(0, prefix.size(), prefix) != 0) throw ConfigError(bad + "does not start with " + prefix);
  const std::string rest = address.substr(prefix.size());
  const size_t a = rest.find(':'), b = a == std::string::npos ? a : rest.find(':', a + 1);
  const size_t c = b == std::string::npos ? b : rest.find(':', b + 1);
  uint64_t table = 0, index = 0, control = MemoryTable::kNoControl;
  if (b == std::string::npos || !parse_number(rest.substr(0, a), 16, &table) ||
      !parse_number(rest.substr(a + 1, b - a - 1), 10, &index) ||
      !parse_number(rest.substr(b + 1, c == std::string::npos ? c : c - b - 1), 10, &generation_) ||
      (c != std::string::npos && !parse_number(rest.substr(c + 1), 10, &control)) || table == 0 ||
      table % alignof(MemoryTable) != 0)
    throw ConfigError(bad + "is not " + prefix + "<table address, hex>:<slot>:<generation>[:<control area>]");
  auto* t = reinterpret_cast<MemoryTable*>(static_cast<uintptr_t>(table));
  if (!mapped(t, sizeof(MemoryTable)))
    throw ConfigError(bad + "names memory this process does not map (a table of another process?)");
  if (t->magic != MemoryTable::kMagic || t->slots != MemoryTable::kSlots)
    throw ConfigError(bad + "names no rendezvous table (magic " + std::to_string(t->magic) + ")");
  if (index >= t->slots)
    throw ConfigError(bad + "names slot " + std::to_string(index) + " of " + std::to_string(t->slots));
  if (control != MemoryTable::kNoControl && control >= t->controls)
    throw ConfigError(bad + "names control area " + std::to_string(control) + " of " + std::to_string(t->controls));
  table_ = t;
  index_ = static_cast<uint32_t>(index);
  slot_ = &t->slot[index_];
  control_ = static_cast<uint32_t>(control);
}

void* MemoryStore::shared_control(size_t bytes) {
  if (control_ == MemoryTable::kNoControl || bytes > MemoryTable::kControlBytes) return nullptr;
  return table_->control[control_];
}

std::string MemoryStore::describe(const std::string&) const {
  return "rendezvous slot " + std::to_string(index_) + " (generation " + std::to_string(generation_) +
         ") of the Worker's shared memory";
}

bool MemoryStore::abandoned() const {
  return slot_->word.load(std::memory_order_acquire) == word_of(generation_, kAbandoned);
}

std::string MemoryStore::abandoned_message() const {
  return describe("") + ": " + kAbandonedMark + " (a member died or failed before it joined)";
}

bool MemoryStore::publish(const Bytes& value, bool only_if_absent) {
  if (value.size() > kMaxValueBytes)
    throw CommError("rendezvous: a value of " + std::to_string(value.size()) + " bytes does not fit " +
                    describe("") + " (at most " + std::to_string(kMaxValueBytes) + ")");
  for (;;) {
    uint64_t w = slot_->word.load(std::memory_order_acquire);
    if (generation_of(w) != generation_)
      throw CommError("rendezvous: " + describe("") + " now holds generation " +
                      std::to_string(generation_of(w)) + ": its allocation is over");
    if (state_of(w) == kAbandoned) throw CommError("rendezvous: " + abandoned_message());
    if (state_of(w) == kPublished && only_if_absent) return false;
    if (state_of(w) == kWriting) {  // another publisher, mid-write
      if (only_if_absent) return false;
      futex::yield_cpu();
      continue;
    }
    if (!slot_->word.compare_exchange_strong(w, word_of(generation_, kWriting), std::memory_order_acq_rel)) continue;
    std::memcpy(slot_->value, value.data(), value.size());
    slot_->size = static_cast<uint32_t>(value.size());
    // Abandoned meanwhile (by the owner, the only other writer of a slot
    // in kWriting): the value is not published.
    uint64_t writing = word_of(generation_, kWriting);
    if (!slot_->word.compare_exchange_strong(writing, word_of(generation_, kPublished), std::memory_order_acq_rel))
      throw CommError("rendezvous: " + abandoned_message());
    ring(*slot_);
    return true;
  }
}

void MemoryStore::set(const std::string&, const Bytes& value) { publish(value, false); }

bool MemoryStore::set_if_absent(const std::string&, const Bytes& value) { return publish(value, true); }

std::optional<Bytes> MemoryStore::check(const std::string&, std::string* why) {
  const uint64_t w = slot_->word.load(std::memory_order_acquire);
  if (generation_of(w) != generation_) {
    *why = "the slot holds generation " + std::to_string(generation_of(w));
    return std::nullopt;
  }
  if (state_of(w) != kPublished) {
    *why = state_of(w) == kAbandoned ? abandoned_message() : "no value yet";
    return std::nullopt;
  }
  const uint32_t size = std::min<uint32_t>(slot_->size, kMaxValueBytes);
  Bytes value(slot_->value, slot_->value + size);
  // A value is written once per generation, before it is published; a
  // removal and a new value in between (a stale value replaced) show here.
  if (slot_->word.load(std::memory_order_acquire) != w) {
    *why = "the value changed while it was read";
    return std::nullopt;
  }
  return value;
}

Bytes MemoryStore::wait(const std::string& key, std::chrono::milliseconds timeout, const Accept& accept,
                        const std::string& what) {
  Deadline deadline(timeout);
  std::string why;
  for (;;) {
    // Read the bell before the look: a change after the look rings it.
    const uint32_t bell = slot_->bell.load(std::memory_order_acquire);
    if (std::optional<Bytes> value = check(key, &why); value && accept(*value, &why)) return std::move(*value);
    if (abandoned()) throw CommError(what + ": " + abandoned_message());
    if (deadline.expired())
      throw TimeoutError(what + " timed out after " + std::to_string(deadline.budget_ms()) + " ms waiting for " +
                         describe(key) + " (" + why + ")");
    auto rang = [&] { return slot_->bell.load(std::memory_order_acquire) != bell; };
    // Yield first, as every store's waiter does (store.h), then sleep on
    // the bell.
    const Deadline yielding(kWaiterYieldPhase);
    bool changed = rang();
    while (!changed && !yielding.expired()) {
      futex::yield_cpu();
      changed = rang();
    }
    if (!changed) futex::wait(&slot_->bell, bell, deadline.next_slice(kWaitSlice));
  }
}

void MemoryStore::remove_if(const std::string& key, const std::function<bool(const Bytes&)>& is_ours) noexcept {
  try {
    std::string why;
    const uint64_t w = slot_->word.load(std::memory_order_acquire);
    std::optional<Bytes> value = check(key, &why);
    if (!value || !is_ours(*value)) return;
    uint64_t expected = w;
    if (slot_->word.compare_exchange_strong(expected, word_of(generation_, kEmpty), std::memory_order_acq_rel))
      ring(*slot_);
  } catch (...) {
  }
}

}  // namespace chipmesh::rendezvous

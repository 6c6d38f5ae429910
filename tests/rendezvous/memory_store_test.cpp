// The rendezvous store interface through its memory implementation (a slot
// of a table in shared memory, as a Worker's chips use for domains):
// addresses it refuses, publish-once, generations, compare-and-remove, and
// a wait across processes with a deadline.
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "chipmesh/errors.h"
#include "rendezvous/memory_store.h"
#include "support/fork_ranks.h"
#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

using rendezvous::Bytes;
using rendezvous::MemoryStore;
using rendezvous::MemoryTable;
using namespace std::chrono_literals;

Bytes bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }
bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// A table in shared anonymous memory, inherited by fork_ranks' children.
struct SharedTable {
  SharedTable() {
    void* p = mmap(nullptr, sizeof(MemoryTable), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    table = static_cast<MemoryTable*>(p);
    table->init();
  }
  ~SharedTable() { munmap(table, sizeof(MemoryTable)); }
  MemoryTable* table;
};

std::string config_error_of(const std::string& address) {
  try {
    rendezvous::make_store(address);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(MemoryStore, RefusesAddressesThatNameNoTableOfThisProcess) {
  SharedTable t;
  const std::string good = t.table->reset(2, 7);
  EXPECT_EQ(rendezvous::make_store(good).key, "value");
  EXPECT_TRUE(contains(config_error_of("chipmesh-mem:zz:1:1"), "is not chipmesh-mem:<table address"));
  EXPECT_TRUE(contains(config_error_of("chipmesh-mem:1000:1"), "is not chipmesh-mem:<table address"));
  EXPECT_TRUE(contains(config_error_of("chipmesh-mem:1000:-1:1"), "is not chipmesh-mem:<table address"));
  // Signs, spaces, a 0x prefix and numbers past 64 bits are no numbers here.
  for (const char* bad : {"chipmesh-mem:1000:+1:1", "chipmesh-mem:1000: 1:1", "chipmesh-mem:1000:1:1 ",
                          "chipmesh-mem:0x1000:1:1", "chipmesh-mem:1ffffffffffffffff:1:1",
                          "chipmesh-mem:1000:1:18446744073709551616"})
    EXPECT_TRUE(contains(config_error_of(bad), "is not chipmesh-mem:<table address")) << bad;
  // Page 0x1000 is never mapped.
  EXPECT_TRUE(contains(config_error_of("chipmesh-mem:1000:1:1"), "does not map"));
  // Mapped, but no table there.
  void* zeros = mmap(nullptr, sizeof(MemoryTable), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(zeros, MAP_FAILED);
  char addr[64];
  std::snprintf(addr, sizeof addr, "chipmesh-mem:%llx:1:1", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(zeros)));
  EXPECT_TRUE(contains(config_error_of(addr), "names no rendezvous table"));
  munmap(zeros, sizeof(MemoryTable));
  std::snprintf(addr, sizeof addr, "chipmesh-mem:%llx:%u:1", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(t.table)),
                MemoryTable::kSlots);
  EXPECT_TRUE(contains(config_error_of(addr), "names slot 8 of 8"));
}

// An address may lend one control area of the table (its last field): the
// store hands that area out, sized up to kControlBytes; without the field,
// or for more bytes, nothing. An area the table does not have is refused.
TEST(MemoryStore, LendsTheControlAreaItsAddressNamesAndNoOther) {
  SharedTable t;
  auto lent = rendezvous::make_store(t.table->reset(1, 3, 5));
  EXPECT_EQ(lent.store->shared_control(MemoryTable::kControlBytes), t.table->control[5]);
  EXPECT_EQ(lent.store->shared_control(MemoryTable::kControlBytes + 1), nullptr);
  EXPECT_EQ(rendezvous::make_store(t.table->reset(1, 4)).store->shared_control(64), nullptr);
  char addr[96];
  std::snprintf(addr, sizeof addr, "chipmesh-mem:%llx:1:4:%u",
                static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(t.table)), MemoryTable::kControls);
  EXPECT_TRUE(contains(config_error_of(addr), "names control area 8 of 8"));
  std::snprintf(addr, sizeof addr, "chipmesh-mem:%llx:1:4:x",
                static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(t.table)));
  EXPECT_TRUE(contains(config_error_of(addr), "is not chipmesh-mem:<table address"));
}

TEST(MemoryStore, PublishesOncePerGenerationAndRemovesOnlyItsOwnValue) {
  SharedTable t;
  auto opened = rendezvous::make_store(t.table->reset(3, 5));
  rendezvous::Store& s = *opened.store;
  std::string why;
  EXPECT_FALSE(s.check(opened.key, &why));
  EXPECT_EQ(why, "no value yet");
  EXPECT_TRUE(s.set_if_absent(opened.key, bytes("first")));
  EXPECT_FALSE(s.set_if_absent(opened.key, bytes("second")));
  EXPECT_EQ(s.check(opened.key, &why), bytes("first"));
  s.set(opened.key, bytes("replaced"));
  EXPECT_EQ(s.check(opened.key, &why), bytes("replaced"));
  EXPECT_TRUE(s.local_names(opened.key).empty());  // nothing on disk
  s.remove_if(opened.key, [](const Bytes& v) { return v == bytes("someone else's"); });
  EXPECT_EQ(s.check(opened.key, &why), bytes("replaced"));
  s.remove_if(opened.key, [](const Bytes& v) { return v == bytes("replaced"); });
  EXPECT_FALSE(s.check(opened.key, &why));
  // The owner hands the slot to the next allocation: the old address sees
  // nothing of it and cannot publish into it.
  auto next = rendezvous::make_store(t.table->reset(3, 6));
  EXPECT_TRUE(next.store->set_if_absent(next.key, bytes("new")));
  EXPECT_FALSE(s.check(opened.key, &why));
  EXPECT_EQ(why, "the slot holds generation 6");
  EXPECT_THROW(s.set(opened.key, bytes("late")), CommError);
  EXPECT_THROW(next.store->set(next.key, Bytes(MemoryStore::kMaxValueBytes + 1, 'x')), CommError);
}

TEST(MemoryStore, AWaiterInAnotherProcessGetsTheValueItAccepts) {
  SharedTable t;
  const std::string address = t.table->reset(0, 11);
  // Slot 1 carries rank 1's "refused" back, so the stale value is surely
  // seen (and refused) before the fresh one replaces it.
  const std::string refused_at = t.table->reset(1, 12);
  auto accept_any = [](const Bytes&, std::string*) { return true; };
  auto outcomes = fork_ranks(2, [&](int rank) {
    auto opened = rendezvous::make_store(address);
    auto refused = rendezvous::make_store(refused_at);
    if (rank == 0) {
      opened.store->set(opened.key, bytes("stale"));
      refused.store->wait(refused.key, 20s, accept_any, "rank 0");
      opened.store->set(opened.key, bytes("fresh"));
      return;
    }
    int refusals = 0;
    Bytes v = opened.store->wait(opened.key, 20s,
                                 [&](const Bytes& b, std::string* why) {
                                   if (b == bytes("fresh")) return true;
                                   *why = "not fresh";
                                   if (refusals++ == 0) refused.store->set(refused.key, bytes("refused"));
                                   return false;
                                 },
                                 "rank 1");
    CM_REQUIRE(v == bytes("fresh"));
    CM_REQUIRE(refusals >= 1);
  });
  for (const auto& o : outcomes) EXPECT_TRUE(o.ok()) << o.describe();
}

TEST(MemoryStore, AWaitForAValueThatNeverComesTimesOutNamingTheSlot) {
  SharedTable t;
  auto opened = rendezvous::make_store(t.table->reset(4, 9));
  try {
    opened.store->wait(opened.key, 30ms, [](const Bytes&, std::string*) { return true; }, "rank 1 of 2");
    FAIL() << "no timeout";
  } catch (const TimeoutError& e) {
    EXPECT_TRUE(contains(e.what(), "rank 1 of 2 timed out after 30 ms waiting for rendezvous slot 4 (generation 9)"))
        << e.what();
    EXPECT_TRUE(contains(e.what(), "no value yet")) << e.what();
  }
}

}  // namespace
}  // namespace chipmesh::testing

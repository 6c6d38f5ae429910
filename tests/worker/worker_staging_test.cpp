// Worker::stage_input straight into the window: when the platform's
// transport adopts window files (sim does), an input is written into the
// chip's window at its buffer's offset and bring-up copies nothing: in one
// file of every chip's window when the transport adopts windows at an
// offset (adopt_window_at), else in a file per chip. Checked: every byte at
// every buffer (offsets and sizes that are not page multiples, a 1-byte
// input, an empty one), zeros where nothing was staged, peers reading the
// staged inputs through a collective, nothing named in /dev/shm; and the
// same inputs through a platform that cannot adopt (copied at bring-up, as
// before).
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "chipmesh/shared_memory.h"
#include "chipmesh/worker.h"
#include "support/leak_check.h"
#include "worker/worker_support.h"

namespace chipmesh::testing {
namespace {

constexpr size_t kA = 4097, kB = 1, kC = 5000, kWindow = 64 * 1024;

unsigned char value(int chip, const std::string& buffer, size_t i) {
  return static_cast<unsigned char>(chip * 31 + static_cast<int>(buffer[0]) + i * 7);
}

// Where stage_input puts an input.
enum class Placement { OneFileOfEveryWindow, FilePerWindow, ObjectOfItsOwn };

// 3 chips: "pad" (3 bytes, never staged) first, so nothing after it is
// page-aligned; inputs a, b (1 byte), empty and c; "g" for an allgather of a.
void stage_and_check(const std::string& platform, Placement placement) {
  ScratchDir scratch;
  const int n = 3;
  WorkerConfig cfg = comm_config(n, scratch.file("rootinfo"), kWindow,
                                 {{"pad", DataType::UINT8, 3, 3, "window", false, false},
                                  {"a", DataType::UINT8, kA, kA, "window", true, false},
                                  {"b", DataType::UINT8, kB, kB, "window", true, false},
                                  {"empty", DataType::UINT8, 0, 0, "window", true, false},
                                  {"c", DataType::UINT8, kC, kC, "window", true, false},
                                  {"g", DataType::UINT8, n * kA, n * kA, "window", false, false}});
  if (!platform.empty()) cfg.platform = platform;
  Worker w(cfg);
  std::set<ino_t> files;  // of the non-empty inputs
  std::vector<std::tuple<int, std::string, SharedMemory*>> staged;
  for (int chip = 0; chip < n; ++chip)
    for (const auto& [name, bytes] : std::vector<std::pair<std::string, size_t>>{{"a", kA}, {"b", kB}, {"empty", 0},
                                                                                {"c", kC}}) {
      SharedMemory& in = w.stage_input(chip, name, bytes);
      ASSERT_EQ(in.size(), bytes);
      staged.emplace_back(chip, name, &in);
      EXPECT_TRUE(in.is_anonymous()) << in.name();
      // In place: the object is the window file (one for every chip's
      // window, each window followed by its scratch, or the chip's own of
      // the window's size); else an object of the input's own.
      struct stat st{};
      ASSERT_EQ(stat(in.name().c_str(), &st), 0) << in.name();
      if (bytes > 0) files.insert(st.st_ino);
      if (bytes > 0 && placement == Placement::OneFileOfEveryWindow)
        EXPECT_GE(static_cast<size_t>(st.st_size), n * kWindow) << name;
      else if (bytes > 0 && placement == Placement::FilePerWindow)
        EXPECT_EQ(static_cast<size_t>(st.st_size), kWindow) << name;
      else
        EXPECT_EQ(static_cast<size_t>(st.st_size), bytes) << name;
      auto* p = static_cast<unsigned char*>(in.data());
      for (size_t i = 0; i < bytes; ++i) p[i] = value(chip, name, i);
    }
  EXPECT_EQ(files.size(), placement == Placement::OneFileOfEveryWindow ? 1u
                          : placement == Placement::FilePerWindow      ? static_cast<size_t>(n)
                                                                       : static_cast<size_t>(n) * 3);
  w.init();
  EXPECT_EQ(shm_objects_of(getpid()), 0u);
  for (int chip = 0; chip < n; ++chip) EXPECT_EQ(shm_objects_of(w.chip_pid(chip)), 0u) << "chip " << chip;

  for (int chip = 0; chip < n; ++chip) {
    const auto& ptrs = w.chip_contexts()[static_cast<size_t>(chip)].buffer_ptrs;
    for (const auto& [name, bytes] : std::vector<std::pair<std::string, size_t>>{{"a", kA}, {"b", kB}, {"c", kC}}) {
      std::vector<unsigned char> got(bytes);
      w.copy_from(chip, got.data(), ptrs.at(name), bytes);
      size_t wrong = 0;
      for (size_t i = 0; i < bytes; ++i) wrong += got[i] != value(chip, name, i);
      EXPECT_EQ(wrong, 0u) << "chip " << chip << " buffer " << name;
    }
    std::vector<unsigned char> pad(3, 0xFF);
    w.copy_from(chip, pad.data(), ptrs.at("pad"), 3);
    EXPECT_EQ(pad, std::vector<unsigned char>(3, 0)) << "chip " << chip << ": the window is zero where nothing was staged";
  }
  // Peers read each other's staged input.
  w.run([&](Orchestrator& o) { o.allgather(w.world(), "a", "g", kA, DataType::UINT8); });
  for (int chip = 0; chip < n; ++chip) {
    std::vector<unsigned char> g(n * kA);
    w.copy_from(chip, g.data(), w.chip_contexts()[static_cast<size_t>(chip)].buffer_ptrs.at("g"), g.size());
    size_t wrong = 0;
    for (int from = 0; from < n; ++from)
      for (size_t i = 0; i < kA; ++i) wrong += g[from * kA + i] != value(from, "a", i);
    EXPECT_EQ(wrong, 0u) << "chip " << chip << "'s allgather of the staged inputs";
  }
  w.close();
  EXPECT_TRUE(scratch.entries().empty());
  // The views outlive the chips with what was staged: closing the windows
  // (sim keeps a released object of its own for reuse, and empties it) never
  // empties the file the Worker lent.
  for (const auto& [chip, name, in] : staged) {
    size_t wrong = 0;
    const auto* p = static_cast<const unsigned char*>(in->data());
    for (size_t i = 0; i < in->size(); ++i) wrong += p[i] != value(chip, name, i);
    EXPECT_EQ(wrong, 0u) << "chip " << chip << " input " << name << " after close()";
  }
}

TEST(WorkerStaging, StageInputWritesIntoTheWindowAtTheBufferOffsets) {
  stage_and_check("", Placement::OneFileOfEveryWindow);
}

// A transport that adopts a window file but not one at an offset (a table
// built before adopt_window_at): a file per chip, mapped by every peer.
TEST(WorkerStaging, WithoutAdoptionAtAnOffsetEachChipHasAWindowFileOfItsOwn) {
  stage_and_check(kLibDir + "/libchipmesh_platform_perchipfiles.so", Placement::FilePerWindow);
}

// A platform whose transport cannot adopt a window file (a table built
// before adopt_window): the inputs are objects of their own, copied at
// bring-up; the same checks hold.
TEST(WorkerStaging, WithoutAdoptionTheInputsAreCopiedAtBringUp) {
  stage_and_check(kLibDir + "/libchipmesh_platform_oldtable.so", Placement::ObjectOfItsOwn);
}

}  // namespace
}  // namespace chipmesh::testing

// A chip's last words (chip/fault_report.h): the report its fault handler
// writes, formatted here without a fault. The handler itself, in a dying
// chip, is tested through the Worker (worker_failure_test.cpp).
#include "chip/fault_report.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "support/leak_check.h"

namespace chipmesh::testing {
namespace {

using worker::format_fault_report;

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

std::string report(int sig, int code, const void* addr, const void* pc = nullptr, pid_t sender = 0) {
  char out[1024];
  const size_t n = format_fault_report(out, sizeof(out), sig, code, addr, pc, sender);
  EXPECT_EQ(n, std::string(out).size());
  return out;
}

// A mapping of `pages` pages of a file, unmapped at the end.
struct Mapped {
  Mapped(int fd, size_t pages) : bytes(pages * 4096) {
    p = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
  }
  ~Mapped() { munmap(p, bytes); }
  size_t bytes;
  char* p;
};

TEST(FaultReport, NamesTheFileAndOffsetOfABusError) {
  // A memfd: its name, the offset in it; no free space (no filesystem a
  // user fills).
  int fd = memfd_create("chipmesh_fault_report_test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  Mapped m(fd, 2);
  const std::string r = report(SIGBUS, BUS_ADRERR, m.p + 4096 + 16);
  EXPECT_TRUE(contains(r, "SIGBUS (no page can back the address) at 0x")) << r;
  EXPECT_TRUE(contains(r, " in /memfd:chipmesh_fault_report_test")) << r;
  EXPECT_TRUE(contains(r, " at offset 0x1010")) << r;
  EXPECT_FALSE(contains(r, "bytes free")) << r;
  close(fd);
}

TEST(FaultReport, SaysHowFullTheFilesystemOfABusErrorIs) {
  ScratchDir dir;
  const std::string path = dir.file("window");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  Mapped m(fd, 1);  // the file is empty: its first page would be a SIGBUS
  const std::string r = report(SIGBUS, BUS_ADRERR, m.p);
  EXPECT_TRUE(contains(r, " in " + path + " at offset 0x0")) << r;
  // Its directory and that filesystem's free and total bytes.
  const std::string where = path.substr(0, path.rfind('/'));
  EXPECT_TRUE(contains(r, "; " + where + " has ")) << r;
  EXPECT_TRUE(contains(r, " bytes free (")) << r;
  close(fd);
  unlink(path.c_str());
}

TEST(FaultReport, NamesTheCodeOfAnInstruction) {
  int local = 0;
  const void* pc = reinterpret_cast<const void*>(&report);  // in this test's binary
  const std::string r = report(SIGSEGV, SEGV_MAPERR, reinterpret_cast<void*>(0x10), pc);
  EXPECT_TRUE(contains(r, "SIGSEGV (address not mapped) at 0x10 (in no mapping)")) << r;
  EXPECT_TRUE(contains(r, "; instruction at 0x")) << r;
  EXPECT_TRUE(contains(r, "chip_worker_test+0x")) << r;
  // An address on the stack: anonymous memory or "[stack]".
  const std::string s = report(SIGSEGV, SEGV_ACCERR, &local);
  EXPECT_TRUE(contains(s, "(access not permitted by the mapping)")) << s;
  EXPECT_TRUE(contains(s, "[stack]") || contains(s, "anonymous memory")) << s;
}

TEST(FaultReport, SentSignalsNameTheSender) {
  EXPECT_EQ(report(SIGSEGV, SI_USER, nullptr, nullptr, 1234), "SIGSEGV sent by pid 1234");
  EXPECT_EQ(report(SIGBUS, SI_TKILL, nullptr, nullptr, getpid()), "SIGBUS raised by the chip itself");
  EXPECT_TRUE(contains(report(SIGSEGV, SI_KERNEL, nullptr), "general protection fault"));
  EXPECT_TRUE(contains(report(SIGILL, ILL_ILLOPC, reinterpret_cast<void*>(0x1000)), "illegal instruction"));
  EXPECT_TRUE(contains(report(SIGFPE, FPE_INTDIV, reinterpret_cast<void*>(0x1000)), "integer division by zero"));
}

TEST(FaultReport, AnAbortCarriesWhatTheChipSaidBefore) {
  char out[256];
  format_fault_report(out, sizeof(out), SIGABRT, SI_TKILL, nullptr, nullptr, getpid(),
                      "libc's message: x.cpp:3: f: Assertion `n' failed.");
  EXPECT_STREQ(out, "SIGABRT raised by the chip itself: libc's message: x.cpp:3: f: Assertion `n' failed.");
  // Nothing said: where to look.
  format_fault_report(out, sizeof(out), SIGABRT, SI_TKILL, nullptr, nullptr, getpid(), "");
  EXPECT_STREQ(out, "SIGABRT raised by the chip itself (abort(): what it printed went to its stderr)");
  // Sent by someone else: no reason of the chip's.
  format_fault_report(out, sizeof(out), SIGABRT, SI_USER, nullptr, nullptr, 99);
  EXPECT_STREQ(out, "SIGABRT sent by pid 99");
  // A long reason is cut to the buffer, NUL-terminated.
  const std::string reason(1000, 'r');
  EXPECT_EQ(format_fault_report(out, sizeof(out), SIGABRT, SI_TKILL, nullptr, nullptr, getpid(), reason.c_str()),
            sizeof(out) - 1);
  EXPECT_EQ(std::string(out).size(), sizeof(out) - 1);
}

TEST(FaultReport, CutsToTheBuffer) {
  char out[16];
  std::memset(out, 'x', sizeof(out));
  const size_t n = format_fault_report(out, sizeof(out), SIGSEGV, SI_USER, nullptr, nullptr, 1234);
  EXPECT_EQ(n, 15u);
  EXPECT_EQ(std::string(out), "SIGSEGV sent by");
  char none[1] = {'x'};
  EXPECT_EQ(format_fault_report(none, 1, SIGSEGV, SI_USER, nullptr, nullptr, 1), 0u);
  EXPECT_EQ(none[0], '\0');
}

}  // namespace
}  // namespace chipmesh::testing

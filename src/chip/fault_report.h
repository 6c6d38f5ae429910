// A chip's last words. "killed by signal 7 (Bus error)" alone does not say
// that /dev/shm filled up under a window (its pages are allocated on first
// touch, so a full /dev/shm is a SIGBUS of the first writer), nor which
// kernel library a SIGSEGV or SIGILL came from. A chip writes what the
// fault hit into its ChipShared::fault_report, and the parent adds it to
// the ChipError when it finds the chip dead of that signal
// (worker/child_watcher.h).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace chipmesh::worker {

// Installs handlers for SIGBUS, SIGSEGV, SIGILL, SIGFPE and SIGABRT (on an
// alternate stack when the process has none, so a stack overflow is told
// too), and a std::terminate handler that notes the exception before the
// one it replaces runs (for the SIGABRT that follows). Each signal handler
// writes the report into `text` (`bytes`, NUL-terminated),
// stores the signal number into `signo` (release) and then hands the signal
// to the action the process had before: by default the chip dies of it, as
// it would have without these handlers. Call once, in the chip process.
// Under ThreadSanitizer it installs nothing (its own handlers stay).
void install_fault_report(char* text, size_t bytes, std::atomic<int32_t>* signo);

// The report, as the handler writes it (async-signal-safe: no allocation,
// no stdio; /proc/self/maps is read with open/read): the signal and its
// code, the address and the mapping it lies in (file and offset), for a
// SIGBUS in a file's mapping the free space of that file's filesystem, and
// the instruction's mapping. `sender`: si_pid, for a signal that was sent
// rather than raised by a fault (`code` <= 0). `reason`: what the chip
// said before it raised the signal itself (for SIGABRT: the uncaught
// exception std::terminate met, or glibc's message of a failed assert() or
// of a corrupt heap), appended to a sent signal's report. Returns the
// length written.
size_t format_fault_report(char* out, size_t bytes, int sig, int code, const void* addr, const void* pc,
                           pid_t sender, const char* reason = nullptr);

}  // namespace chipmesh::worker

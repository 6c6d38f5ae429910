// The name of an anonymous shared-memory file (SharedMemory::create_anonymous,
// a window file): "/proc/<pid>/fd/<fd>", descriptor <fd> of process <pid>.
// Processes forked after <pid> opened it hold the same descriptor; any
// other process of the same user reopens it through /proc.
#pragma once

#include <string>
#include <string_view>

namespace chipmesh::fd_path {

std::string format(int pid, int fd);
// pid and fd of such a name: decimal digits only, nothing before or after;
// false for any other name. Parsed by hand, not with sscanf: chips parse
// these names at bring-up, and sscanf's code is a page of libc a fresh chip
// has not touched, one page fault in its staging phase (20-30 us on a
// paravirtualized VM, docs/PERFORMANCE.md).
bool parse(std::string_view name, int* pid, int* fd);
// Whether descriptor <fd> of such a name is this process's own <fd> too:
// <pid> is this process, or its parent, which opened it before it forked
// this one (the names a parent hands its chips).
bool held_here(int pid);

}  // namespace chipmesh::fd_path

// How many processes the kernel's OOM killer has killed since boot, from
// /proc/vmstat's `oom_kill` (Linux 4.13+; it counts a memory cgroup's OOM
// kills as well as the whole machine's). A chip the OOM killer ends dies of
// SIGKILL like any other kill -9; the counter rising while the chip ran is
// what tells the two apart in the chip's error (worker/child_watcher.h).
// The kernel raises the counter before it sends the signal, so a reaped
// victim's count is always visible.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace chipmesh::oom_kills {

// The count, or nothing where /proc/vmstat cannot be read or has no such
// line (an older kernel, a /proc a container virtualizes). Allocates
// nothing.
std::optional<uint64_t> count() noexcept;
// The value of the `oom_kill` line in /proc/vmstat text.
std::optional<uint64_t> parse(std::string_view vmstat) noexcept;

}  // namespace chipmesh::oom_kills

// The system-wide names this process created and has not yet seen removed:
// its control segment, its window object, its rootinfo file. Kept in fixed
// static storage so emergency_unlink() is async-signal-safe (a SIGTERM
// handler may run it at any point of a bring-up).
#pragma once

#include <cstdint>
#include <string>

namespace chipmesh::sim::names {

// Shm: a shared-memory name; File: a private file (unlinked as is);
// Rootinfo: unlinked only while it still carries our token.
enum class Kind { Shm, File, Rootinfo };

// Returns a slot id (or -1 when full: the name is then only cleaned normally).
int add(Kind kind, const std::string& name, uint64_t token);
void remove(int slot) noexcept;
// Unlinks every registered name (a rootinfo only if it still holds our
// token). Only async-signal-safe calls.
void emergency_unlink() noexcept;

}  // namespace chipmesh::sim::names

// The one reader and writer of the sim rootinfo format (comm_layout.h): the
// rendezvous, the emergency cleanup and the leftover hook all use these.
#pragma once

#include <cstdint>
#include <string>

#include "comm_layout.h"
#include "rendezvous/store.h"

namespace chipmesh::sim {

rendezvous::Bytes encode_rootinfo(const RootInfo& ri);

// Format checks only (size, magic, version, control block size): false with
// the reason when `bytes` is not a sim rootinfo of this build. The trust
// checks (uid, job, rank 0 alive) are the reader's.
bool decode_rootinfo(const rendezvous::Bytes& bytes, RootInfo* out, std::string* why);

// True when `bytes` is a rootinfo carrying `token` (the communicator's own).
bool rootinfo_has_token(const rendezvous::Bytes& bytes, uint64_t token);

// The same for the file at `path`, with async-signal-safe calls only (for
// emergency cleanup in a signal handler).
bool rootinfo_file_has_token(const char* path, uint64_t token) noexcept;

}  // namespace chipmesh::sim

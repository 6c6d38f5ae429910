// Removes the demo's own names (staging objects, rootinfo directory) when
// the demo is stopped by SIGINT, SIGTERM or SIGHUP, then lets the signal
// take its previous course (an earlier handler or the default action).
// The names live in fixed static storage; the handler only makes
// async-signal-safe calls. Anything left anyway is `chipmesh clean`'s job.
#pragma once

#include <string>

namespace chipmesh::cli::interrupt_cleanup {

// Installs the handlers (once).
void install();
// Registers a shared-memory name to shm_unlink, a file to unlink, or an
// (empty by then) directory to rmdir. Names that do not fit are skipped.
void add_shm(const std::string& name);
void add_file(const std::string& path);
void add_dir(const std::string& path);
// Forgets every registered name (after a normal cleanup) and restores the
// previous handlers.
void reset();

}  // namespace chipmesh::cli::interrupt_cleanup

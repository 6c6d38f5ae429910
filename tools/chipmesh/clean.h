// `chipmesh clean`: removes what dead chipmesh jobs left behind.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace chipmesh::cli {

struct CleanOptions {
  bool dry_run = false;
  // Rootinfo files to check. Their location is chosen by each job, so clean
  // only looks at the ones it is told about (and their temp files).
  std::vector<std::string> rootinfo_paths;
  // Platforms asked, through their transport's inspect_leftover hook, which
  // names are theirs and whether their owner is gone. One that cannot be
  // loaded here is skipped with a note on `err`.
  std::vector<std::string> platforms = {"sim"};
};

// Prints one line per object ("removed ...", "would remove ...", "kept ...")
// on `out`, failures on `err`. Returns 0, or 1 when a removal failed.
int run_clean(const CleanOptions& opts, FILE* out = stdout, FILE* err = stderr);

}  // namespace chipmesh::cli

// The floor of any fork-per-chip bring-up: N fork()s of an empty child
// (it _exits at once) and N waitpid()s, from the benchmark's own process.
#pragma once

namespace chipmesh::bench {

// Milliseconds from the first fork until the last child is reaped; throws
// std::runtime_error when fork fails.
double fork_floor_ms(int n);

}  // namespace chipmesh::bench

/* Open MPI peer of `chipmesh bench allreduce`: MPI_Allreduce (float, sum,
 * out of place) over the sizes given, with the same input pattern and the
 * same correctness check as the chipmesh side.
 *   mpirun -np N chipmesh_bench_mpi_allreduce BYTES:ITERS:WARMUP[:OPS:REPS] ...
 * Rank 0 prints one line per size:
 *   <bytes> <count> <#wrong> <time_us> <time_us> ...
 * one time per timed iteration: MPI_Barrier, then the MPI_Allreduce, timed on
 * every rank, the max over ranks. #wrong counts wrong output elements over
 * all ranks, checked on one extra call (before the timed ones) after the
 * output is set to NaN. The loops and lines: peer_timing.h.
 * With OPS:REPS it also times REPS streams of OPS back-to-back calls
 * (MPI_Barrier, then OPS MPI_Allreduce with nothing between them, as
 * nccl-tests does; max over ranks) and prints
 *   stream <bytes> <ops> <us_per_op> <us_per_op> ...
 * one figure per stream: its time divided by OPS.
 *
 * With --hierarchical first (the peer of an allreduce across hosts,
 * scripts/multihost/bench_hosts.sh), each call is the hierarchical form
 * written in MPI: MPI_Reduce to the first rank of each node (the ranks that
 * share memory, MPI_Comm_split_type), MPI_Allreduce between those leaders,
 * MPI_Bcast within the node. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_timing.h"

/* Must match bench/allreduce.cpp: small integers, so fp32 sums are exact. */
static float input_value(int rank, uint64_t i) { return (float)((int)((i * 7 + (uint64_t)rank * 13) % 31) - 15); }

static float *in, *out;

static MPI_Comm node = MPI_COMM_NULL, leaders = MPI_COMM_NULL;

static void call(int count) { MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }

static void call_hierarchical(int count) {
  MPI_Reduce(in, out, count, MPI_FLOAT, MPI_SUM, 0, node);
  if (leaders != MPI_COMM_NULL) MPI_Allreduce(MPI_IN_PLACE, out, count, MPI_FLOAT, MPI_SUM, leaders);
  MPI_Bcast(out, count, MPI_FLOAT, 0, node);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, nranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  void (*op)(int) = call;
  if (argc > 1 && strcmp(argv[1], "--hierarchical") == 0) {
    int node_rank = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_split(MPI_COMM_WORLD, node_rank == 0 ? 0 : MPI_UNDEFINED, rank, &leaders);
    op = call_hierarchical;
    --argc;
    ++argv;
  }
  uint64_t max_bytes = 0;
  for (int a = 1; a < argc; ++a) {
    uint64_t b = strtoull(argv[a], NULL, 10);
    if (b > max_bytes) max_bytes = b;
  }
  const uint64_t max_count = max_bytes / sizeof(float);
  in = (float*)malloc((max_count ? max_count : 1) * sizeof(float));
  out = (float*)malloc((max_count ? max_count : 1) * sizeof(float));
  if (!in || !out) {
    fprintf(stderr, "rank %d: cannot allocate 2 x %llu bytes\n", rank, (unsigned long long)max_bytes);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (uint64_t i = 0; i < max_count; ++i) {
    in[i] = input_value(rank, i);
    out[i] = 0;
  }

  for (int a = 1; a < argc; ++a) {
    const struct peer_spec spec = peer_parse_spec(argv[a], rank);
    const int count = (int)(spec.bytes / sizeof(float));
    for (int w = 0; w < spec.warmup; ++w) op(count);
    /* Check one call, its output set to NaN first. */
    for (int i = 0; i < count; ++i) out[i] = NAN;
    op(count);
    long long wrong = 0, wrong_all = 0;
    for (int i = 0; i < count; ++i) {
      float want = 0;
      for (int r = 0; r < nranks; ++r) want += input_value(r, (uint64_t)i);
      if (!(out[i] == want)) ++wrong;
    }
    MPI_Reduce(&wrong, &wrong_all, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    peer_time_and_report(&spec, count, wrong_all, op, rank);
  }
  free(in);
  free(out);
  MPI_Finalize();
  return 0;
}

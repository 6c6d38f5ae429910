/* Open MPI peer of `chipmesh bench allgather|reduce_scatter|broadcast|reduce|
 * alltoall`: MPI_Allgather, MPI_Reduce_scatter_block, MPI_Bcast, MPI_Reduce
 * (root 0) or MPI_Alltoall on float32 (sum), with the input pattern and the
 * correctness check of bench/collectives.cpp.
 *   mpirun -np N chipmesh_bench_mpi_collectives COLL BYTES:ITERS:WARMUP[:OPS:REPS] ...
 * BYTES is the larger buffer of a rank (nccl-tests): n * count floats for
 * allgather's output, reduce_scatter's input and both alltoall buffers,
 * count floats otherwise. Rank 0 prints, as chipmesh_bench_mpi_allreduce:
 *   <bytes> <count> <#wrong> <time_us> ...        (MPI_Barrier, the call, max over ranks)
 *   stream <bytes> <ops> <us_per_op> ...          (OPS calls back to back)
 * #wrong counts wrong output elements over the ranks whose output is
 * significant, on one extra call after the output is set to NaN (broadcast:
 * the non-roots' buffer). Broadcast is in place by nature (MPI_Bcast). */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_timing.h"

enum coll { ALLGATHER, REDUCE_SCATTER, BROADCAST, REDUCE, ALLTOALL };

/* Must match bench/collectives.cpp: small integers, so fp32 sums are exact. */
static float input_value(int rank, uint64_t i) { return (float)((int)((i * 7 + (uint64_t)rank * 13) % 31) - 15); }

static float *in, *out;
static int nranks, rank;
static enum coll the_coll;

static void call_as(enum coll c, int count) {
  switch (c) {
    case ALLGATHER: MPI_Allgather(in, count, MPI_FLOAT, out, count, MPI_FLOAT, MPI_COMM_WORLD); break;
    case REDUCE_SCATTER: MPI_Reduce_scatter_block(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
    case BROADCAST: MPI_Bcast(out, count, MPI_FLOAT, 0, MPI_COMM_WORLD); break;
    case REDUCE: MPI_Reduce(in, out, count, MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD); break;
    case ALLTOALL: MPI_Alltoall(in, count, MPI_FLOAT, out, count, MPI_FLOAT, MPI_COMM_WORLD); break;
  }
}
static void call(int count) { call_as(the_coll, count); }

/* Wrong output elements on this rank after one checked call. */
static long long check(enum coll c, int count) {
  const int blocks_out = (c == ALLGATHER || c == ALLTOALL) ? nranks : 1;
  const uint64_t out_elems = (uint64_t)count * (uint64_t)blocks_out;
  for (uint64_t i = 0; i < out_elems; ++i) out[i] = NAN;
  if (c == BROADCAST && rank == 0)
    for (uint64_t i = 0; i < out_elems; ++i) out[i] = input_value(0, i);
  call_as(c, count);
  if (c == REDUCE && rank != 0) return 0;
  long long wrong = 0;
  for (uint64_t i = 0; i < out_elems; ++i) {
    float want = 0;
    switch (c) {
      case ALLGATHER: want = input_value((int)(i / (uint64_t)count), i % (uint64_t)count); break;
      case REDUCE_SCATTER:
        for (int j = 0; j < nranks; ++j) want += input_value(j, (uint64_t)rank * (uint64_t)count + i);
        break;
      case BROADCAST: want = input_value(0, i); break;
      case REDUCE:
        for (int j = 0; j < nranks; ++j) want += input_value(j, i);
        break;
      case ALLTOALL:
        want = input_value((int)(i / (uint64_t)count), (uint64_t)rank * (uint64_t)count + i % (uint64_t)count);
        break;
    }
    wrong += !(out[i] == want);
  }
  return wrong;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  static const char* names[] = {"allgather", "reduce_scatter", "broadcast", "reduce", "alltoall"};
  int c = -1;
  for (int k = 0; argc > 1 && k < 5; ++k)
    if (strcmp(argv[1], names[k]) == 0) c = k;
  if (c < 0) {
    if (rank == 0) fprintf(stderr, "usage: %s allgather|reduce_scatter|broadcast|reduce|alltoall SPEC...\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const enum coll coll = (enum coll)c;
  uint64_t max_bytes = 4;
  for (int a = 2; a < argc; ++a) {
    uint64_t b = strtoull(argv[a], NULL, 10);
    if (b > max_bytes) max_bytes = b;
  }
  in = (float*)malloc(max_bytes);
  out = (float*)malloc(max_bytes);
  if (!in || !out) {
    fprintf(stderr, "rank %d: cannot allocate 2 x %llu bytes\n", rank, (unsigned long long)max_bytes);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (uint64_t i = 0; i < max_bytes / sizeof(float); ++i) in[i] = input_value(rank, i), out[i] = 0;
  const int unit = 4 * ((coll == ALLGATHER || coll == REDUCE_SCATTER || coll == ALLTOALL) ? nranks : 1);

  the_coll = coll;
  for (int a = 2; a < argc; ++a) {
    const struct peer_spec spec = peer_parse_spec(argv[a], rank);
    const int count = (int)(spec.bytes / (unsigned long long)unit);
    for (int w = 0; w < spec.warmup; ++w) call(count);
    long long wrong = check(coll, count), wrong_all = 0;
    MPI_Reduce(&wrong, &wrong_all, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    peer_time_and_report(&spec, count, wrong_all, call, rank);
  }
  free(in);
  free(out);
  MPI_Finalize();
  return 0;
}

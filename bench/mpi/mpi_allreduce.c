/* Open MPI peer of `chipmesh bench allreduce`: MPI_Allreduce (float, sum,
 * out of place) over the sizes given, with the same input pattern and the
 * same correctness check as the chipmesh side.
 *   mpirun -np N chipmesh_bench_mpi_allreduce BYTES:ITERS:WARMUP[:OPS:REPS] ...
 * Rank 0 prints one line per size:
 *   <bytes> <count> <#wrong> <time_us> <time_us> ...
 * one time per timed iteration: MPI_Barrier, then the MPI_Allreduce, timed on
 * every rank, the max over ranks. #wrong counts wrong output elements over
 * all ranks, checked on one extra call after the output is set to NaN.
 * With OPS:REPS it also times REPS streams of OPS back-to-back calls
 * (MPI_Barrier, then OPS MPI_Allreduce with nothing between them, as
 * nccl-tests does; max over ranks) and prints
 *   stream <bytes> <ops> <us_per_op> <us_per_op> ...
 * one figure per stream: its time divided by OPS. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Must match bench/allreduce.cpp: small integers, so fp32 sums are exact. */
static float input_value(int rank, uint64_t i) { return (float)((int)((i * 7 + (uint64_t)rank * 13) % 31) - 15); }

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, nranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  uint64_t max_bytes = 0;
  for (int a = 1; a < argc; ++a) {
    uint64_t b = strtoull(argv[a], NULL, 10);
    if (b > max_bytes) max_bytes = b;
  }
  const uint64_t max_count = max_bytes / sizeof(float);
  float* in = (float*)malloc((max_count ? max_count : 1) * sizeof(float));
  float* out = (float*)malloc((max_count ? max_count : 1) * sizeof(float));
  if (!in || !out) {
    fprintf(stderr, "rank %d: cannot allocate 2 x %llu bytes\n", rank, (unsigned long long)max_bytes);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (uint64_t i = 0; i < max_count; ++i) {
    in[i] = input_value(rank, i);
    out[i] = 0;
  }

  for (int a = 1; a < argc; ++a) {
    unsigned long long bytes = 0;
    int iters = 0, warmup = 0, ops = 0, reps = 0;
    const int fields = sscanf(argv[a], "%llu:%d:%d:%d:%d", &bytes, &iters, &warmup, &ops, &reps);
    if ((fields != 3 && fields != 5) || iters < 1 || warmup < 0 || (fields == 5 && (ops < 1 || reps < 1))) {
      if (rank == 0) fprintf(stderr, "bad size spec '%s' (BYTES:ITERS:WARMUP or BYTES:ITERS:WARMUP:OPS:REPS)\n", argv[a]);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const int count = (int)(bytes / sizeof(float));
    for (int w = 0; w < warmup; ++w) MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double* times = (double*)malloc((size_t)iters * sizeof(double));
    for (int it = 0; it < iters; ++it) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = now_us();
      MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double dt = now_us() - t0, dt_max = 0;
      MPI_Reduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      times[it] = dt_max;
    }
    double* stream = (double*)malloc((size_t)(reps > 0 ? reps : 1) * sizeof(double));
    for (int r = 0; r < reps; ++r) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = now_us();
      for (int k = 0; k < ops; ++k) MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double dt = now_us() - t0, dt_max = 0;
      MPI_Reduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      stream[r] = dt_max / ops;
    }
    /* Check one more call. */
    for (int i = 0; i < count; ++i) out[i] = NAN;
    MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    long long wrong = 0, wrong_all = 0;
    for (int i = 0; i < count; ++i) {
      float want = 0;
      for (int r = 0; r < nranks; ++r) want += input_value(r, (uint64_t)i);
      if (!(out[i] == want)) ++wrong;
    }
    MPI_Reduce(&wrong, &wrong_all, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      printf("%llu %d %lld", bytes, count, wrong_all);
      for (int it = 0; it < iters; ++it) printf(" %.3f", times[it]);
      printf("\n");
      if (reps > 0) {
        printf("stream %llu %d", bytes, ops);
        for (int r = 0; r < reps; ++r) printf(" %.4f", stream[r]);
        printf("\n");
      }
      fflush(stdout);
    }
    free(times);
    free(stream);
  }
  free(in);
  free(out);
  MPI_Finalize();
  return 0;
}

/* Shared by the Open MPI peer programs of bench/mpi/: the size spec they
 * take, the timed loops and the lines chipmesh bench parses
 * (bench/mpi_peer.cpp, parse_peer_output):
 *   <bytes> <count> <#wrong> <time_us> ...      one per timed call
 *   stream <bytes> <ops> <us_per_op> ...        one per stream of OPS calls */
#ifndef CHIPMESH_BENCH_MPI_PEER_TIMING_H
#define CHIPMESH_BENCH_MPI_PEER_TIMING_H

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double peer_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* BYTES:ITERS:WARMUP[:OPS:REPS]; aborts the job on a bad spec. */
struct peer_spec {
  unsigned long long bytes;
  int iters, warmup, ops, reps;
};
static struct peer_spec peer_parse_spec(const char* arg, int rank) {
  struct peer_spec s = {0, 0, 0, 0, 0};
  const int fields = sscanf(arg, "%llu:%d:%d:%d:%d", &s.bytes, &s.iters, &s.warmup, &s.ops, &s.reps);
  if ((fields != 3 && fields != 5) || s.iters < 1 || s.warmup < 0 || (fields == 5 && (s.ops < 1 || s.reps < 1))) {
    if (rank == 0) fprintf(stderr, "bad size spec '%s' (BYTES:ITERS:WARMUP or BYTES:ITERS:WARMUP:OPS:REPS)\n", arg);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return s;
}

/* ITERS times MPI_Barrier then one call (the max over ranks), REPS streams of
 * OPS calls back to back (per call), then rank 0 prints both lines. */
static void peer_time_and_report(const struct peer_spec* s, int count, long long wrong_all, void (*call)(int),
                                 int rank) {
  double* times = (double*)malloc((size_t)s->iters * sizeof(double));
  double* stream = (double*)malloc((size_t)(s->reps > 0 ? s->reps : 1) * sizeof(double));
  for (int it = 0; it < s->iters; ++it) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = peer_now_us();
    call(count);
    double dt = peer_now_us() - t0, dt_max = 0;
    MPI_Reduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    times[it] = dt_max;
  }
  for (int r = 0; r < s->reps; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = peer_now_us();
    for (int k = 0; k < s->ops; ++k) call(count);
    double dt = peer_now_us() - t0, dt_max = 0;
    MPI_Reduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    stream[r] = dt_max / s->ops;
  }
  if (rank == 0) {
    printf("%llu %d %lld", s->bytes, count, wrong_all);
    for (int it = 0; it < s->iters; ++it) printf(" %.3f", times[it]);
    printf("\n");
    if (s->reps > 0) {
      printf("stream %llu %d", s->bytes, s->ops);
      for (int r = 0; r < s->reps; ++r) printf(" %.4f", stream[r]);
      printf("\n");
    }
    fflush(stdout);
  }
  free(times);
  free(stream);
}

#endif

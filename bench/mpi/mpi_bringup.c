/* Open MPI peer of `chipmesh bench bringup`: the same bring-up in MPI terms.
 *   mpirun -np N chipmesh_bench_mpi_bringup WINDOW_BYTES
 * Every rank: MPI_Init, MPI_Comm_split_type(MPI_COMM_TYPE_SHARED),
 * MPI_Win_allocate_shared of WINDOW_BYTES, MPI_Barrier, MPI_Finalize.
 * Rank 0 prints one line (times in ms, max over ranks unless noted):
 *   init_to_ready_ms=<MPI_Init start to window ready after the barrier>
 *   init_ms=<MPI_Init alone> window_ms=<split + allocate + barrier>
 *   span_ms=<earliest MPI_Init start to latest window ready, CLOCK_MONOTONIC>
 *   finalize_ms=<MPI_Win_free + MPI_Finalize, rank 0> */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  const double t0 = now_ms();
  MPI_Init(&argc, &argv);
  const double t_init = now_ms();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: %s WINDOW_BYTES\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const MPI_Aint bytes = (MPI_Aint)strtoull(argv[1], NULL, 10);

  MPI_Comm shm;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &shm);
  void* base = NULL;
  MPI_Win win;
  MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, shm, &base, &win);
  MPI_Barrier(shm);
  const double t_ready = now_ms();

  /* max of: init_to_ready, init, window, -start (=> min start), ready */
  double mine[5] = {t_ready - t0, t_init - t0, t_ready - t_init, -t0, t_ready};
  double all[5];
  MPI_Reduce(mine, all, 5, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);

  const double t_fin = now_ms();
  MPI_Win_free(&win);
  MPI_Comm_free(&shm);
  MPI_Finalize();
  if (rank == 0) {
    printf("init_to_ready_ms=%.3f init_ms=%.3f window_ms=%.3f span_ms=%.3f finalize_ms=%.3f\n", all[0], all[1],
           all[2], all[4] + all[3], now_ms() - t_fin);
    fflush(stdout);
  }
  return 0;
}

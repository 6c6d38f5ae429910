/* Open MPI peer of `chipmesh bench domains`: a communicator over every rank
 * and a shared window on it, made and freed, as allocate_domain +
 * release_domain make and free a domain.
 *   mpirun -np N chipmesh_bench_mpi_domains WINDOW_BYTES:REPS ...
 * Per spec, after one warm-up, REPS times: MPI_Barrier; MPI_Comm_split
 * (every rank, color 0) + MPI_Win_allocate_shared(WINDOW_BYTES) timed as
 * "allocate"; MPI_Win_free + MPI_Comm_free timed as "release"; max over
 * ranks. Rank 0 prints
 *   <window_bytes> alloc <ms> ... release <ms> ... */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double max_over_ranks(double v) {
  double m = 0;
  MPI_Reduce(&v, &m, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  return m;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (int a = 1; a < argc; ++a) {
    unsigned long long window = 0;
    int reps = 0;
    if (sscanf(argv[a], "%llu:%d", &window, &reps) != 2 || reps < 1 || window == 0) {
      if (rank == 0) fprintf(stderr, "bad spec '%s' (WINDOW_BYTES:REPS)\n", argv[a]);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    double* alloc = (double*)malloc((size_t)reps * sizeof(double));
    double* rel = (double*)malloc((size_t)reps * sizeof(double));
    for (int k = -1; k < reps; ++k) {  /* k = -1: warm-up */
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = now_ms();
      MPI_Comm comm;
      MPI_Win win;
      void* base = NULL;
      MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &comm);
      MPI_Win_allocate_shared((MPI_Aint)window, 1, MPI_INFO_NULL, comm, &base, &win);
      const double t1 = now_ms();
      MPI_Win_free(&win);
      MPI_Comm_free(&comm);
      const double t2 = now_ms();
      const double a_max = max_over_ranks(t1 - t0), r_max = max_over_ranks(t2 - t1);
      if (k >= 0) alloc[k] = a_max, rel[k] = r_max;
    }
    if (rank == 0) {
      printf("%llu alloc", window);
      for (int k = 0; k < reps; ++k) printf(" %.4f", alloc[k]);
      printf(" release");
      for (int k = 0; k < reps; ++k) printf(" %.4f", rel[k]);
      printf("\n");
      fflush(stdout);
    }
    free(alloc);
    free(rel);
  }
  MPI_Finalize();
  return 0;
}

/* mpi_allreduce.c — the reduce8 peer: MPI_Allreduce (MPI_SUM) of one double
 * per rank; rank 0 prints the median time of one call in microseconds over
 * ITERS calls after WARMUP.
 * usage: mpirun -np 8 mpi_allreduce [WARMUP [ITERS]] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int warmup = argc > 1 ? atoi(argv[1]) : 200;
  int iters = argc > 2 ? atoi(argv[2]) : 2000;
  double *t = malloc(sizeof *t * (size_t)iters), one = 1.0, sum = 0;
  for (int i = 0; i < warmup + iters; i++) {
    double t0 = MPI_Wtime();
    MPI_Allreduce(&one, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double t1 = MPI_Wtime();
    if (sum != size)
      MPI_Abort(MPI_COMM_WORLD, 1);
    if (i >= warmup)
      t[i - warmup] = (t1 - t0) * 1e6;
  }
  if (rank == 0) {
    qsort(t, (size_t)iters, sizeof *t, cmp);
    printf("%.3f\n", iters % 2 ? t[iters / 2]
                                : (t[iters / 2 - 1] + t[iters / 2]) / 2);
  }
  free(t);
  MPI_Finalize();
  return 0;
}

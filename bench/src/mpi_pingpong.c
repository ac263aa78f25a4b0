/* mpi_pingpong.c — the rtt peer: 8-byte ping-pong between ranks 0 and 1;
 * rank 0 prints the median per-iteration round trip in microseconds.
 * usage: mpirun -np 2 mpi_pingpong [WARMUP [ITERS]] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int warmup = argc > 1 ? atoi(argv[1]) : 2000;
  int iters = argc > 2 ? atoi(argv[2]) : 10000;
  double *t = malloc((size_t)iters * sizeof *t), buf = 0;
  for (int i = 0; i < warmup + iters; i++) {
    double t0 = MPI_Wtime();
    if (rank == 0) {
      MPI_Send(&buf, 1, MPI_DOUBLE, 1, 0, MPI_COMM_WORLD);
      MPI_Recv(&buf, 1, MPI_DOUBLE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank == 1) {
      MPI_Recv(&buf, 1, MPI_DOUBLE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(&buf, 1, MPI_DOUBLE, 0, 0, MPI_COMM_WORLD);
    }
    if (i >= warmup)
      t[i - warmup] = (MPI_Wtime() - t0) * 1e6;
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

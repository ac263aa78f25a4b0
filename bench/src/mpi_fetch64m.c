/* mpi_fetch64m.c — the peer of fetch64m_local: rank 0 asks rank 1 for a
 * 64 MiB double array (a 1-int request, then MPI_Recv of the array into a
 * buffer reused across rounds, Open MPI's best case) over its default
 * same-host transport.  Prints the median GB/s of REPS rounds after one
 * warm-up.  usage: mpirun -np 2 mpi_fetch64m [REPS] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#define NDOUBLE ((size_t)8 << 20)
#define NBYTES (NDOUBLE * sizeof(double))

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, reps = argc > 1 ? atoi(argv[1]) : 7;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  double *buf = malloc(NBYTES), *gbs = malloc(sizeof(double) * (size_t)reps);
  for (size_t i = 0; i < NDOUBLE; i++)
    buf[i] = rank ? (double)i : 0.0;
  for (int r = -1; r < reps; r++) {
    int req = r;
    if (rank == 0) {
      double t0 = MPI_Wtime();
      MPI_Send(&req, 1, MPI_INT, 1, 0, MPI_COMM_WORLD);
      MPI_Recv(buf, (int)NDOUBLE, MPI_DOUBLE, 1, 1, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
      double t1 = MPI_Wtime();
      if (buf[NDOUBLE - 1] != (double)(NDOUBLE - 1)) {
        fprintf(stderr, "mpi_fetch64m: wrong data\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (r >= 0)
        gbs[r] = NBYTES / (t1 - t0) / 1e9;
    } else {
      MPI_Recv(&req, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf, (int)NDOUBLE, MPI_DOUBLE, 0, 1, MPI_COMM_WORLD);
    }
  }
  if (rank == 0) {
    qsort(gbs, (size_t)reps, sizeof *gbs, cmp);
    printf("%.3f\n", gbs[reps / 2]);
  }
  free(buf);
  free(gbs);
  MPI_Finalize();
  return 0;
}

/* mpi_rss.c — the rss peer: rank 0's VmRSS in MiB right after MPI_Init and
 * a barrier. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Barrier(MPI_COMM_WORLD);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
      if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
        break;
    if (f)
      fclose(f);
    printf("%.3f\n", (double)kib / 1024);
  }
  MPI_Finalize();
  return 0;
}

/* mpi_init.c — the launch8 peer: MPI_Init, MPI_Finalize, nothing else. */
#include <mpi.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Finalize();
  return 0;
}

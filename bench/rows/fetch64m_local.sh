# shellcheck shell=bash
# fetch64m_local — GB/s of fetching a 64 MiB double array from a worker on
# the same host (distc_remotecall_fetch; the master copies it out of the
# worker with process_vm_readv) vs Open MPI moving 64 MiB between two ranks
# over shared memory, given its best single-copy path (ob1 + vader with CMA,
# the same kernel copy distc uses), in the same run.  Medians of 7 after one
# warm-up; the pair is run 3 times and the median of each is shown.

row_fetch64m_local() {
  local d=() m=() out
  for _ in 1 2 3; do
    out=$("$LAUNCH" -p 1 "$OUT_DIR/bench_fetch" 7)
    d+=("${out% *}")
    m+=("$("${MPIRUN[@]}" --mca pml ob1 --mca btl self,vader \
      --mca btl_vader_single_copy_mechanism cma -np 2 "$OUT_DIR/mpi_fetch64m" 7)")
  done
  row_line fetch64m_local "$(median "${d[@]}")" mpi-shm "$(median "${m[@]}")" GB/s 2
}

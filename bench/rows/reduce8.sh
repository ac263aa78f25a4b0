# shellcheck shell=bash
# reduce8 — latency of distc_reduce of one double per worker over 8 workers
# (median of 2,000 after 200 warm-up) vs MPI_Allreduce of one double with
# `mpirun -np 8` (same counts, rank 0's median).  The pair runs
# REDUCE8_REPEATS (3) times, interleaved; median of the medians, in us.

row_reduce8() {
  local reps=${REDUCE8_REPEATS:-3} d=() m=() i
  for ((i = 0; i < reps; i++)); do
    d+=("$("$LAUNCH" -p 8 "$OUT_DIR/bench_reduce" 200 2000)")
    m+=("$("${MPIRUN[@]}" -np 8 "$OUT_DIR/mpi_allreduce" 200 2000)")
  done
  row_line reduce8 "$(median "${d[@]}")" mpi-allreduce "$(median "${m[@]}")" \
    us 2
}

# shellcheck shell=bash
# rss — VmRSS of an idle distc worker (it served one call, then idled
# ~0.5 s; the master reads /proc/<pid>/status) vs one Open MPI rank right
# after MPI_Init and a barrier (rank 0 of 2 reads its own).  Median of
# RSS_RUNS (5) runs each, interleaved, in MiB.

row_rss() {
  local runs=${RSS_RUNS:-5} d=() m=() i
  for ((i = 0; i < runs; i++)); do
    d+=("$("$LAUNCH" -p 1 "$OUT_DIR/bench_rss")")
    m+=("$("${MPIRUN[@]}" -np 2 "$OUT_DIR/mpi_rss")")
  done
  row_line rss "$(median "${d[@]}")" mpi-rank "$(median "${m[@]}")" MiB 2
}

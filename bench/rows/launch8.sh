# shellcheck shell=bash
# launch8 — wall time of `distc-launch -p 8 bench_launch` (start 8 workers,
# one no-op call on each, exit) vs `mpirun -np 8` of MPI_Init/MPI_Finalize.
# One untimed run of each, then LAUNCH8_RUNS (9) timed runs of each,
# interleaved; medians in ms.

row_launch8() {
  local runs=${LAUNCH8_RUNS:-9} d=() m=() i t0
  for ((i = 0; i <= runs; i++)); do
    t0=$(now_us)
    "$LAUNCH" -p 8 "$OUT_DIR/bench_launch" >/dev/null
    ((i)) && d+=("$(( $(now_us) - t0 ))")
    t0=$(now_us)
    "${MPIRUN[@]}" -np 8 "$OUT_DIR/mpi_init" >/dev/null
    ((i)) && m+=("$(( $(now_us) - t0 ))")
  done
  row_line launch8 "$(median "${d[@]}" | awk '{ print $1 / 1000 }')" \
    mpirun "$(median "${m[@]}" | awk '{ print $1 / 1000 }')" ms 1
}

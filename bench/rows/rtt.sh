# shellcheck shell=bash
# rtt — median round trip of distc_remotecall_fetch of a no-op on one worker
# (-p 1; 2,000 warm-up calls, median of 10,000) vs an 8-byte Open MPI
# ping-pong over TCP between 2 ranks (same counts).  The pair runs
# RTT_REPEATS (3) times; the row reports the median of the medians, in us.

row_rtt() {
  local reps=${RTT_REPEATS:-3} d=() m=() i
  for ((i = 0; i < reps; i++)); do
    d+=("$("$LAUNCH" -p 1 "$OUT_DIR/bench_rtt" 2000 10000)")
    m+=("$("${MPIRUN[@]}" -np 2 --mca btl tcp,self \
          "$OUT_DIR/mpi_pingpong" 2000 10000)")
  done
  row_line rtt "$(median "${d[@]}")" mpi-tcp "$(median "${m[@]}")" us 2
}

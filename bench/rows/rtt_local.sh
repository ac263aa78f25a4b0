# shellcheck shell=bash
# rtt_local — median round trip of distc_remotecall_fetch of a no-op on one
# same-host worker (-p 1, the transport distc chooses; 2,000 warm-up calls,
# median of 10,000) vs Open MPI's default same-host 8-byte ping-pong between
# 2 ranks (its shared-memory path; same counts).  The pair runs RTT_REPEATS
# (3) times; the row reports the median of the medians, in us.
# rtt_pair (below) is shared with rtt_local_busy and rtt_tcp.

# rtt_pair ROW PEERNAME "DISTC_ENV..." "MPI_ARGS..." — runs the pair and
# prints the row's line.
rtt_pair() {
  local row=$1 peer=$2 reps=${RTT_REPEATS:-3} d=() m=() i
  local -a denv mpiargs
  read -r -a denv <<<"$3"
  read -r -a mpiargs <<<"$4"
  for ((i = 0; i < reps; i++)); do
    d+=("$(env "${denv[@]}" "$LAUNCH" -p 1 "$OUT_DIR/bench_rtt" 2000 10000)")
    m+=("$("${MPIRUN[@]}" -np 2 "${mpiargs[@]}" \
          "$OUT_DIR/mpi_pingpong" 2000 10000)")
  done
  row_line "$row" "$(median "${d[@]}")" "$peer" "$(median "${m[@]}")" us 2
}

row_rtt_local() {
  rtt_pair rtt_local mpi-shm "" ""
}

# shellcheck shell=bash
# rtt_local_busy — the rtt_local pair while a `nice -n 19` busy loop runs on
# every core (nproc of them): a host shared with other work.  Same counts,
# medians of RTT_REPEATS (3), in us.

row_rtt_local_busy() {
  local i n
  n=$(nproc)
  BUSY_PIDS=()
  # The loops go whatever happens to the row (set -e, Ctrl-C).
  trap 'kill "${BUSY_PIDS[@]}" 2>/dev/null' EXIT
  for ((i = 0; i < n; i++)); do
    nice -n 19 bash -c 'while :; do :; done' &
    BUSY_PIDS+=($!)
  done
  rtt_pair rtt_local_busy mpi-shm "" ""
  kill "${BUSY_PIDS[@]}" 2>/dev/null
  wait "${BUSY_PIDS[@]}" 2>/dev/null || true
  trap - EXIT
}

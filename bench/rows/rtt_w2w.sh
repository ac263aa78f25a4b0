# shellcheck shell=bash
# rtt_w2w — median round trip of distc_remotecall_fetch of a no-op from
# worker 2 to worker 3 (their link, made on first use) vs from the master
# to worker 3, both measured in the same run of `distc-launch -p 2` (2,000
# warm-up calls, median of 10,000 each).  The run repeats RTT_REPEATS (3)
# times; median of each side, in us.  Target: ratio <= 1.2.

row_rtt_w2w() {
  local reps=${RTT_REPEATS:-3} w=() m=() i line
  for ((i = 0; i < reps; i++)); do
    line=$("$LAUNCH" -p 2 "$OUT_DIR/bench_peers" rtt 2000 10000)
    w+=("${line% *}")
    m+=("${line#* }")
  done
  row_line rtt_w2w "$(median "${w[@]}")" master-worker "$(median "${m[@]}")" \
    us 2
}

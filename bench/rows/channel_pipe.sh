# shellcheck shell=bash
# channel_pipe — items/s of a 100,000-item pipeline between two workers:
# producer on worker 2, consumer on worker 3, a channel of capacity 64 owned
# by worker 3 (puts go straight from 2 to 3 over their link), timed from the
# consumer's first take to its last; vs multiprocessing.Queue(64) between
# two Python processes (/usr/bin/python3), same count and timing.  The pair
# runs PIPE_REPEATS (3) times, interleaved; median of each side.

row_channel_pipe() {
  local reps=${PIPE_REPEATS:-3} d=() p=() i
  for ((i = 0; i < reps; i++)); do
    d+=("$("$LAUNCH" -p 2 "$OUT_DIR/bench_peers" pipe 100000)")
    p+=("$(/usr/bin/python3 "$BENCH_DIR/src/mp_queue.py" 100000)")
  done
  row_line channel_pipe "$(median "${d[@]}")" mp-queue "$(median "${p[@]}")" \
    items/s 0
}

# shellcheck shell=bash
# heads — counting heads in 200M coin tosses: the speedup of distc_reduce
# on 2 workers over the serial C loop, vs the speedup of 2 bare forked
# processes each counting half (the machine's own limit), all three timed
# in the same run, interleaved, the fastest of 5 each (bench_heads).  The pair of
# speedups is measured HEADS_REPEATS (3) times; medians.

row_heads() {
  local reps=${HEADS_REPEATS:-3} d=() b=() i out
  for ((i = 0; i < reps; i++)); do
    out=$("$LAUNCH" -p 2 "$OUT_DIR/bench_heads" 5)
    d+=("${out% *}")
    b+=("${out#* }")
  done
  row_line heads "$(median "${d[@]}")" bare-fork "$(median "${b[@]}")" x 3
}

# shellcheck shell=bash
# pmap_auto — items/s of distc_pmap over 1,000,000 int items, f(x) = x + 1,
# automatic batches, on 2 workers vs multiprocessing.Pool(2).map(f, items)
# with its default chunks (/usr/bin/python3).  Each side: one warm-up map,
# then the median of 5; the pair runs PMAP_REPEATS (3) times, interleaved,
# and the row reports the median of the medians.

row_pmap_auto() {
  local reps=${PMAP_REPEATS:-3} d=() p=() i
  for ((i = 0; i < reps; i++)); do
    d+=("$("$LAUNCH" -p 2 "$OUT_DIR/bench_pmap" auto 1000000 5)")
    p+=("$(/usr/bin/python3 "$BENCH_DIR/src/pool_map.py" auto 1000000 5)")
  done
  row_line pmap_auto "$(median "${d[@]}")" mp-pool "$(median "${p[@]}")" \
    items/s 0
}

# shellcheck shell=bash
# pmap_batch1 — items/s of distc_pmap over 20,000 no-op int items with batch
# size 1 on 2 workers vs multiprocessing.Pool(2).map(f, items, chunksize=1)
# (/usr/bin/python3).  Each side: one warm-up map, then the median of 5
# maps; the pair runs PMAP_REPEATS (3) times, interleaved, and the row
# reports the median of the medians.

row_pmap_batch1() {
  local reps=${PMAP_REPEATS:-3} d=() p=() i
  for ((i = 0; i < reps; i++)); do
    d+=("$("$LAUNCH" -p 2 "$OUT_DIR/bench_pmap" batch1 20000 5)")
    p+=("$(/usr/bin/python3 "$BENCH_DIR/src/pool_map.py" batch1 20000 5)")
  done
  row_line pmap_batch1 "$(median "${d[@]}")" mp-pool "$(median "${p[@]}")" \
    items/s 0
}

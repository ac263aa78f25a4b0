# shellcheck shell=bash
# fetch64m — GB/s (1e9 bytes/s) of fetching a 64 MiB double array, kept in
# a static on the worker, with distc_remotecall_fetch (median of 7 after one
# warm-up) vs memcpy of 64 MiB in the master, measured in the same run.

row_fetch64m() {
  local out
  out=$("$LAUNCH" -p 1 "$OUT_DIR/bench_fetch" 7)
  row_line fetch64m "${out% *}" memcpy "${out#* }" GB/s 2
}

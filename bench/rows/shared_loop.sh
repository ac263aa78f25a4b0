# shared_loop — GB/s (1e9 bytes/s, the array's bytes once per pass) of a
# distributed loop adding 1.0 to every element of a 100M-element shared
# double array on 2 workers (median of 5 passes after a warm-up) vs memcpy of
# the same 800 MB in the master, measured in the same run.

row_shared_loop() {
  local out
  out=$("$LAUNCH" -p 2 "$OUT_DIR/bench_shared_loop" 5)
  row_line shared_loop "${out% *}" memcpy "${out#* }" GB/s 2
}

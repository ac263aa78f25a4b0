#!/usr/bin/env bash
# test_valgrind.sh — master and workers under valgrind memcheck: the
# launcher runs `valgrind ... test_api CASE` as the program, so every worker
# runs under valgrind too.  Any error in any process fails the test.
#   test_valgrind.sh DISTC_LAUNCH TEST_API
set -u
LAUNCH=$1 API=$2
command -v valgrind >/dev/null || { echo "valgrind not installed"; echo "0 passed, 1 failed"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
for c in "calls 2" "values 2" "errors 2" "kill-worker 2" "everywhere 3"; do
  set -- $c
  rm -f "$tmp"/vg.*
  "$LAUNCH" -p "$2" --timeout 120 valgrind -q --error-exitcode=99 \
    --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite \
    --log-file="$tmp/vg.%p" "$API" "$1" >"$tmp/out" 2>&1
  st=$?
  logs=$(ls "$tmp"/vg.* 2>/dev/null | wc -l)
  dirty=$(find "$tmp" -name 'vg.*' -size +0 | wc -l)
  if [ $st -eq 0 ] && [ "$logs" -eq $(($2 + 1)) ] && [ "$dirty" -eq 0 ]; then
    pass=$((pass + 1)); echo "ok   $1: $logs processes clean under valgrind"
  else
    fail=$((fail + 1)); echo "FAIL $1: status $st, $logs logs, $dirty with findings"
    tail -5 "$tmp/out"; cat "$tmp"/vg.* | head -60
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

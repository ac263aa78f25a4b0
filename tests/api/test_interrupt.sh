#!/usr/bin/env bash
# test_interrupt.sh — the launcher's first SIGINT (Ctrl-C) interrupts the
# master's running calls on the workers and the program goes on; the
# second tears everything down as before.  SIGTERM still ends the run.
# Every process is checked by pid; every wait is bounded.
#   test_interrupt.sh DISTC_LAUNCH TEST_INTERRUPT
set -u
LAUNCH=$1 PROG=$2
. "$(dirname "$0")/../lib.sh"

# Starts `distc-launch -p 2 test_interrupt ctrlc`; sets LPID, MPID, WPIDS.
start_spin() {
  rm -f "$tmp/out" "$tmp/err"
  "$LAUNCH" -p 2 "$PROG" ctrlc >"$tmp/out" 2>"$tmp/err" &
  LPID=$!
  if ! wait_for '^spinning' 100 "$tmp/out"; then
    bad "the program started its long call"; cat "$tmp/out" "$tmp/err"
    kill -9 "$LPID" 2>/dev/null; return 1
  fi
  MPID=$(cat /proc/"$LPID"/task/*/children 2>/dev/null | tr ' ' '\n' | head -1)
  WPIDS=$(cat /proc/"$LPID"/task/*/children 2>/dev/null | tr ' ' '\n' | tail -n +2 | tr '\n' ' ')
  sleep 0.3 # the call is surely running
}

wait_launcher() {
  for _ in $(seq 100); do alive "$LPID" || break; sleep 0.1; done
  wait "$LPID"; STATUS=$?
}

none_alive() {
  for p in "$@"; do alive "$p" && return 1; done
  return 0
}

# 1. First SIGINT: the call is interrupted, the program goes on.
if start_spin; then
  check "master and 2 workers found" '[ -n "$MPID" ] && [ $(echo $WPIDS | wc -w) -eq 2 ]'
  kill -INT "$LPID"
  wait_for '^continued' 100 "$tmp/out"
  check "first SIGINT: the fetch returns the interrupt, naming worker 2" \
    'grep -q "^fetch: interrupted: On worker 2: interrupted" "$tmp/out"'
  check "first SIGINT: the program goes on, worker 2 answers" \
    'grep -q "^continued: ok 2" "$tmp/out"'
  check "first SIGINT: the master says what it did" \
    'grep -q "interrupting the calls running on 2 workers" "$tmp/err"'
  check "first SIGINT: master, workers and launcher alive" \
    'alive $LPID && alive $MPID && ! none_alive $WPIDS'
  # 2. The second tears down, as before.
  kill -INT "$LPID"
  wait_launcher
  check "second SIGINT tears down: exit 130" '[ $STATUS -eq 130 ]'
  check "second SIGINT: master and workers gone" 'none_alive $MPID $WPIDS'
  [ "$fail" -ne 0 ] && cat "$tmp/out" "$tmp/err"
fi

# 3. SIGTERM keeps its meaning: the run ends at once.
if start_spin; then
  kill -TERM "$LPID"
  wait_launcher
  check "SIGTERM during a call: launcher exits 143" '[ $STATUS -eq 143 ]'
  check "SIGTERM: master and workers gone" 'none_alive $MPID $WPIDS'
fi

finish

#!/usr/bin/env bash
# test_lifecycle.sh — distc-launch with real programs: tagged output, exit
# codes, signal forwarding, a master killed with SIGKILL, a worker running a
# different binary.  Every process is checked by pid; every wait is bounded.
#   test_lifecycle.sh DISTC_LAUNCH TEST_API HELLO
set -u
LAUNCH=$1 API=$2 HELLO=$3
. "$(dirname "$0")/../lib.sh"

# Starts `distc-launch -p 2 test_api hang` in the background; sets LPID,
# MPID (the master) and WPIDS.
start_hang() {
  # The background job truncates out only once it runs: without the rm,
  # wait_for could still see the previous run's "ready".
  rm -f "$tmp/out" "$tmp/err"
  "$LAUNCH" -p 2 "$API" "${1:-hang}" >"$tmp/out" 2>"$tmp/err" &
  LPID=$!
  if ! wait_for '^ready' 100 "$tmp/out"; then
    bad "hang program became ready"; cat "$tmp/out" "$tmp/err"; return 1
  fi
  WPIDS=$(awk '/^worker-pid/ {print $2}' "$tmp/out" | tr '\n' ' ')
  # Two live worker pids, or the checks below would pass vacuously.
  set -- $WPIDS
  if [ $# -ne 2 ] || ! alive "$1" || ! alive "$2"; then
    bad "hang program reported its 2 live workers (got: $WPIDS)"
    cat "$tmp/out" "$tmp/err"; kill -9 "$LPID" 2>/dev/null; return 1
  fi
  MPID=""
  for c in $(cat /proc/"$LPID"/task/*/children 2>/dev/null); do
    case " $WPIDS " in *" $c "*) ;; *) MPID=$c ;; esac
  done
  [ -n "$MPID" ]
}

# Waits for the launcher to exit (max 10 s) and sets STATUS.
wait_launcher() {
  for _ in $(seq 100); do alive "$LPID" || break; sleep 0.1; done
  wait "$LPID"; STATUS=$?
}

none_alive() {
  for p in "$@"; do alive "$p" && return 1; done
  return 0
}

# 1. Tagged output, in order with the calls that printed it.
"$LAUNCH" -p 2 "$API" output >"$tmp/out" 2>"$tmp/err"; st=$?
check "output case exits 0" '[ $st -eq 0 ]'
check "stdout of worker 2 tagged" 'grep -qxF "      From worker 2:	line from 2" "$tmp/out"'
check "stdout of worker 3 tagged" 'grep -qxF "      From worker 3:	line from 3" "$tmp/out"'
check "stderr of a worker tagged on stdout" 'grep -qxF "      From worker 3:	err line from 3" "$tmp/out"'
check "worker output precedes the master line after the calls" \
  '[ "$(grep -n "line from 3" "$tmp/out" | tail -1 | cut -d: -f1)" -lt "$(grep -n "master done" "$tmp/out" | cut -d: -f1)" ]'

# 2. The contrib hello example with 4 workers: lines from 4 distinct workers.
"$LAUNCH" -p 4 "$HELLO" >"$tmp/out" 2>"$tmp/err"; st=$?
check "hello -p 4 exits 0" '[ $st -eq 0 ]'
check "hello: tagged lines from 4 distinct workers" \
  '[ "$(grep -o "From worker [0-9]*:" "$tmp/out" | sort -u | wc -l)" -eq 4 ]'
check "hello: Done! after the sync block's output" \
  '[ "$(tail -1 "$tmp/out")" = "Done!" ] && grep -q "From worker .*Hello" "$tmp/out"'

# 3. The launcher exits with the master's status.
"$LAUNCH" -p 1 "$API" exit 3 >/dev/null 2>&1; st=$?
check "exit status 3 passed through" '[ $st -eq 3 ]'
"$LAUNCH" -p 1 "$API" exit 0 >/dev/null 2>&1; st=$?
check "exit status 0 passed through" '[ $st -eq 0 ]'

# 4. Master killed with SIGKILL: no worker alive 5 s later; 128+9.
if start_hang; then
  kill -9 "$MPID"
  sleep 5
  check "SIGKILL of the master leaves no worker alive after 5 s" 'none_alive $WPIDS'
  wait_launcher
  check "launcher exits 137 when the master is killed" '[ $STATUS -eq 137 ]'
fi

# 5. SIGTERM to the launcher is forwarded to the master; all exit.
if start_hang; then
  kill -TERM "$LPID"
  wait_launcher
  check "SIGTERM forwarded: launcher exits 143" '[ $STATUS -eq 143 ]'
  check "SIGTERM: master and workers gone" 'none_alive $MPID $WPIDS'
fi

# 6. A master that ignores SIGINT: the first SIGINT is forwarded (and
#    ignored), the second tears everything down.
if start_hang hang-ignint; then
  kill -INT "$LPID"
  sleep 0.5
  check "first SIGINT: master still running" 'alive $MPID'
  kill -INT "$LPID"
  wait_launcher
  check "second SIGINT tears down: exit 130" '[ $STATUS -eq 130 ]'
  check "second SIGINT: master and workers gone" 'none_alive $MPID $WPIDS'
fi

# 7. The launcher killed with SIGKILL takes everything with it.
if start_hang; then
  kill -9 "$LPID"
  wait "$LPID" 2>/dev/null
  sleep 2
  check "SIGKILL of the launcher leaves nothing behind" 'none_alive $MPID $WPIDS'
fi

# 8. A worker running a different binary is refused at the handshake.
"$LAUNCH" -p 1 --timeout 10 --exename "$HELLO" "$API" identity >"$tmp/out" 2>"$tmp/err"; st=$?
check "different binary: launcher fails" '[ $st -ne 0 ]'
check "different binary: the message says so" 'grep -q "different binary" "$tmp/err" "$tmp/out"'

finish

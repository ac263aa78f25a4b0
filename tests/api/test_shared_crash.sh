#!/usr/bin/env bash
# test_shared_crash.sh — shared arrays leave nothing in /dev/shm however the
# processes end: a normal exit, and the master killed with SIGKILL while it
# creates an array (the segment's name still linked, a worker busy) and after.
# Every segment is looked for by the name prefix of its run; every wait is
# bounded.
#   test_shared_crash.sh DISTC_LAUNCH TEST_SHARED
set -u
LAUNCH=$1 PROG=$2
. "$(dirname "$0")/../lib.sh"

# segments PID — how many of that master's segments are in /dev/shm.
segments() { find /dev/shm -maxdepth 1 -name "distc-$1-*" 2>/dev/null | wc -l; }

# Waits (up to 5 s) until the master $1 has no segment left.
wait_clean() {
  for _ in $(seq 50); do [ "$(segments "$1")" -eq 0 ] && return 0; sleep 0.1; done
  return 1
}

# crash CASE [WHO] — runs the case, waits for "ready", kills the master
# (or, WHO=launcher, the launcher) with SIGKILL; sets MPID, WPIDS, SEG (the
# mapping the master reported) and BEFORE (the run's names in /dev/shm just
# before the kill).
crash() {
  # The background job truncates out only once it runs: without the rm,
  # wait_for could still see the previous case's "ready".
  rm -f "$tmp/out" "$tmp/err"
  "$LAUNCH" -p 2 "$PROG" "$1" >"$tmp/out" 2>"$tmp/err" &
  LPID=$!
  if ! wait_for '^ready' 150 "$tmp/out"; then
    bad "$1 became ready"; cat "$tmp/out" "$tmp/err"; kill -9 "$LPID"; return 1
  fi
  MPID=$(awk '/^master-pid/ {print $2}' "$tmp/out")
  WPIDS=$(awk '/^worker-pid/ {print $2}' "$tmp/out" | tr '\n' ' ')
  SEG=$(awk '/^segment/ {print $2}' "$tmp/out")
  [ -n "$MPID" ] && alive "$MPID" || { bad "$1: master pid"; cat "$tmp/out" "$tmp/err"; return 1; }
  BEFORE=$(segments "$MPID")
  if [ "${2:-master}" = launcher ]; then kill -9 "$LPID"; else kill -9 "$MPID"; fi
  for _ in $(seq 100); do alive "$LPID" || break; sleep 0.1; done
  wait "$LPID" 2>/dev/null
  return 0
}

# 1. The master dies while workers are mapping a new array.  The memory has
# no name at any time (an anonymous memfd), so there is nothing to leave.
if crash crash-master-creating; then
  check "creating: the master had mapped the array, with no name in /dev/shm" \
    '[ "$BEFORE" -eq 0 ] && [ -n "$SEG" ] && [[ $SEG == *distc-$MPID-* ]]'
  check "creating: nothing of the run in /dev/shm after SIGKILL of the master" \
    'wait_clean "$MPID"'
  check "creating: the workers are gone" \
    '(for p in $WPIDS; do ! alive $p || exit 1; done)'
fi

# 2. The master dies after creating one: it was unlinked already.
if crash crash-master-after; then
  check "after: the array existed and no name was left even before the kill" \
    'grep -qx "segments 0" "$tmp/out" && [ "$BEFORE" -eq 0 ]'
  check "after: nothing of the run in /dev/shm after SIGKILL of the master" \
    'wait_clean "$MPID"'
fi

# 3. The launcher dies (SIGKILL) while a worker keeps the creation waiting:
# every process goes with it, none of them gets to clean anything up.
shm_before=$(ls /dev/shm | sort)
if crash crash-master-creating launcher; then
  check "launcher killed: the master and the workers are gone" \
    '(for _ in $(seq 50); do ok=1; for p in $MPID $WPIDS; do alive $p && ok=0; done; [ $ok = 1 ] && exit 0; sleep 0.1; done; exit 1)'
  check "launcher killed during shared_new: /dev/shm unchanged" \
    '[ "$(segments "$MPID")" -eq 0 ] && [ "$(comm -13 <(echo "$shm_before") <(ls /dev/shm | sort) | grep -c "^distc-")" -eq 0 ]'
fi

# 4. A normal run that creates and frees arrays.
"$LAUNCH" -p 2 "$PROG" basic >"$tmp/out" 2>"$tmp/err"; st=$?
# (the program itself checks /dev/shm for its prefix after distc_finalize)
check "normal run passes, its segments gone after exit" \
  '[ $st -eq 0 ] && grep -q "^[1-9][0-9]* passed, 0 failed" "$tmp/out"'

finish

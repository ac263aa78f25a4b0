#!/usr/bin/env bash
# test_progress.sh DISTC_LAUNCH TEST_LIB SRCDIR — while workers connect
# slowly (test_lib slow-start: each sleeps 1 s before distc_init), the
# master shows "workers N/M connected" on a terminal (a pty from script(1)),
# and never when stderr is a pipe or DISTC_NO_PROGRESS is set.
set -u
launch=${1:?usage: test_progress.sh DISTC_LAUNCH TEST_LIB SRCDIR} test_lib=$2 src=$3
. "$src/tests/lib.sh"
cd "$tmp" || exit 1
command -v script >/dev/null || { echo "script(1) missing (util-linux)"; exit 77; }

cmd="$launch -p 2 $test_lib slow-start"
timeout 60 script -qec "$cmd" /dev/null >tty.out 2>&1
check "on a terminal the program runs" 'grep -q " 0 failed" tty.out'
check "on a terminal: workers 0/2 connected, then 2/2" \
  'grep -a -q "workers 0/2 connected" tty.out && grep -a -q "workers 2/2 connected" tty.out'
check "the line is redrawn in place (carriage returns)" \
  'grep -a -q "$(printf "\r")workers" tty.out'

timeout 60 $cmd >out 2>err
check "in a pipe the program runs" 'grep -q " 0 failed" out'
check "in a pipe: no progress line" '! grep -q "connected" err out'

DISTC_NO_PROGRESS=1 timeout 60 script -qec "$cmd" /dev/null >off.out 2>&1
check "DISTC_NO_PROGRESS=1 turns it off on a terminal" \
  'grep -q " 0 failed" off.out && ! grep -a -q "connected" off.out'
if [ "$fail" -gt 0 ]; then
  for f in tty.out err off.out; do echo "== $f"; cat -v "$f" | head; done
fi
finish

#!/usr/bin/env bash
# test_progress.sh DISTC_LAUNCH TEST_LIB SRCDIR — while workers connect
# slowly (test_lib slow-start: each sleeps 1 s before distc_init), the
# master shows "workers N/M connected" on a terminal (a pty from script(1)),
# and never when stderr is a pipe or DISTC_NO_PROGRESS is set.  While one
# worker is late (slow-start-last: the second sleeps 2 s), the line names
# its host, here and, on the SSH test hosts, a remote one.
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

# "host: K of C connecting": K of that host's C workers still out.
late="$launch -p 2 $test_lib slow-start-last"
timeout 60 script -qec "$late" /dev/null >late.out 2>&1
check "a late worker: its host is named" \
  'grep -q " 0 failed" late.out &&
   grep -a -q "workers 1/2 connected, [0-9.]* s (localhost: 1 of 2 connecting" late.out'
check "once all are in, no host is named" \
  'grep -a -q "workers 2/2 connected, [0-9.]* s$(printf "\033")" late.out'

# One worker here (index 0), one on node1 (index 1, the late one): the
# master names node1 from the launcher's plan.  The test hosts are shared
# (tests/ssh/test_ssh.sh): take turns, and skip when they are not running.
tb=$src/tests/ssh/testbed.sh
if "$tb" status >/dev/null 2>&1; then
  eval "$("$tb" env)"
  exec 9>"${DISTC_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-testbed}.lock"
  if flock -w 60 9; then
    ssh_cmd="$launch --ssh-config $TESTBED_SSH_CONFIG -p 1 --hosts node1:1 $test_lib slow-start-last"
    timeout 60 script -qec "$ssh_cmd" /dev/null >ssh.out 2>&1
    flock -u 9
    check "over SSH: the late remote host is named" \
      'grep -q " 0 failed" ssh.out &&
       grep -a -q "workers 1/2 connected, [0-9.]* s (node1: 1 of 1 connecting" ssh.out'
  else
    echo "skip the SSH case: the test hosts stayed busy for 60 s"
  fi
else
  echo "skip the SSH case: no SSH test hosts (tests/ssh/testbed.sh start)"
fi

timeout 60 $cmd >out 2>err
check "in a pipe the program runs" 'grep -q " 0 failed" out'
check "in a pipe: no progress line" '! grep -q "connected" err out'

DISTC_NO_PROGRESS=1 timeout 60 script -qec "$cmd" /dev/null >off.out 2>&1
check "DISTC_NO_PROGRESS=1 turns it off on a terminal" \
  'grep -q " 0 failed" off.out && ! grep -a -q "connected" off.out'
if [ "$fail" -gt 0 ]; then
  for f in tty.out late.out ssh.out err off.out; do echo "== $f"; cat -v "$f" | head; done
fi
finish

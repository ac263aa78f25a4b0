#!/usr/bin/env bash
# test_harden.sh — what the launcher must do for a run it supervises:
# a worker that leaves inside a call (a segfault, an abort, exit(3),
# SIGKILL) is reported with how it left, in the failed call's distc_errmsg
# (when the worker could say so) and on the launcher's stderr as "From
# worker 2: exited with ..." (a clean run reports nothing); descriptors
# the launcher inherited reach neither the master nor the workers.
#   test_harden.sh DISTC_LAUNCH TEST_HARDEN
set -u
LAUNCH=$1 PROG=$2
. "$(dirname "$0")/../lib.sh"

# depart HOW ERRMSG_PART STDERR_LINE
depart() {
  timeout 60 "$LAUNCH" -p 2 "$PROG" depart "$1" "$2" >"$tmp/out" 2>"$tmp/err"
  local st=$? line=$3
  check "$1: the program passed (errmsg names the cause)" \
    '[ $st -eq 0 ] && grep -q "^[1-9][0-9]* passed, 0 failed" "$tmp/out"'
  check "$1: the launcher said '$3'" 'grep -qxF "$line" "$tmp/err"'
  [ $fail -eq 0 ] || { grep -v "^ *From worker" "$tmp/out"; cat "$tmp/err"; }
}

depart segv "exited with signal 11 (Segmentation fault)" \
  "From worker 2: exited with signal 11 (Segmentation fault)"
depart exit3 "exited with status 3" "From worker 2: exited with status 3"
depart abort "exited with signal 6 (Aborted)" \
  "From worker 2: exited with signal 6 (Aborted)"
# SIGKILL leaves the worker no word: the call says "exited", the launcher
# has the signal.
depart kill "process exited" "From worker 2: exited with signal 9 (Killed)"

# Nothing is reported when workers end with the run.
timeout 60 "$LAUNCH" -p 2 "$PROG" long-line >"$tmp/out" 2>"$tmp/err"
check "a clean run: no departure reported" '! grep -q "From worker" "$tmp/err"'

# A descriptor the launcher inherited (here 7, and one without
# close-on-exec at 9) reaches no process of the run.
echo marker >"$tmp/marker"
timeout 60 "$LAUNCH" -p 2 "$PROG" fds "$tmp/marker" >"$tmp/out" 2>"$tmp/err" \
  7<"$tmp/marker" 9<"$tmp/marker"
check "inherited descriptors reach neither the master nor the workers" \
  'grep -q "^[1-9][0-9]* passed, 0 failed" "$tmp/out"'
[ $fail -eq 0 ] || cat "$tmp/out" "$tmp/err"

finish

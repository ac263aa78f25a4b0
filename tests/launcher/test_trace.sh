#!/usr/bin/env bash
# test_trace.sh DISTC_LAUNCH TEST_LIB SRCDIR — distc-launch --trace FILE and
# DISTC_TRACE=FILE write one Chrome/Perfetto trace of the whole run
# (checked by check_trace.py); nothing is written without them.
set -u
launch=${1:?usage: test_trace.sh DISTC_LAUNCH TEST_LIB SRCDIR} test_lib=$2 src=$3
. "$src/tests/lib.sh"
cd "$tmp" || exit 1
unset DISTC_TRACE DISTC_STATS

timeout 60 "$launch" -p 2 --trace t.json "$test_lib" trace-work >out 2>&1
check "distc-launch --trace runs the program" 'grep -q " 0 failed" out'
check "the trace is written" '[ -s t.json ]'
check "the launcher's part was merged and removed" '[ ! -e t.json.launcher ]'
if python3 "$src/tests/launcher/check_trace.py" t.json launch >py 2>&1; then
  ok "the trace has the run's tracks and spans"
else
  bad "the trace has the run's tracks and spans"; grep -v '^ok' py
fi

# The same over TCP: the 4 MiB result is a frame the worker sends.
DISTC_NO_CMA=1 timeout 60 "$launch" -p 2 --trace tcp.json "$test_lib" trace-work >out 2>&1
if python3 "$src/tests/launcher/check_trace.py" tcp.json launch >py 2>&1; then
  ok "the trace over TCP (DISTC_NO_CMA=1)"
else
  bad "the trace over TCP (DISTC_NO_CMA=1)"; grep -v '^ok' py
fi

# A program run without the launcher, adding its own workers.
DISTC_TRACE=$tmp/a.json timeout 60 "$test_lib" trace-addprocs >out 2>&1
check "DISTC_TRACE: the program runs" 'grep -q " 0 failed" out'
if python3 "$src/tests/launcher/check_trace.py" a.json addprocs >py 2>&1; then
  ok "DISTC_TRACE with distc_addprocs: the trace has every process"
else
  bad "DISTC_TRACE with distc_addprocs: the trace has every process"; grep -v '^ok' py
fi

# Off by default: no file of any kind appears.
mkdir off && cd off || exit 1
timeout 60 "$launch" -p 2 "$test_lib" trace-work >out 2>&1
check "without --trace nothing is written" '[ "$(ls | grep -vx out)" = "" ]'
finish

#!/usr/bin/env bash
# test_transport.sh DISTC_LAUNCH TEST_API SRCDIR — DISTC_TRANSPORT forces the
# path local workers take to their master (the run's trace says which each
# took), and a value that names no transport stops the run with an error
# that lists the valid ones.
set -u
launch=${1:?usage: test_transport.sh DISTC_LAUNCH TEST_API SRCDIR} test_api=$2 src=$3
. "$src/tests/lib.sh"
cd "$tmp" || exit 1
unset DISTC_TRACE DISTC_STATS DISTC_NO_CMA

# run NAME TRANSPORT — the calls case on 2 workers, traced.
run() {
  DISTC_TRANSPORT=$2 timeout 60 "$launch" -p 2 --trace "$1.json" \
    "$test_api" calls >"$1.out" 2>&1
}

run auto ""
check "unset: the calls pass" 'grep -q " 0 failed" auto.out'
check "unset: both workers take the Unix socket" \
  '[ "$(grep -o "\"same_host_socket\":true" auto.json | wc -l)" -eq 2 ]'

run tcp tcp
check "tcp: the calls pass" 'grep -q " 0 failed" tcp.out'
check "tcp: both workers dial TCP" \
  '[ "$(grep -o "\"same_host_socket\":false" tcp.json | wc -l)" -eq 2 ]'
check "tcp: no single-copy reads" \
  '[ "$(grep -o "\"cma\":false" tcp.json | wc -l)" -eq 2 ]'

run unix unix
check "unix: the calls pass" 'grep -q " 0 failed" unix.out'
check "unix: both workers take the Unix socket" \
  '[ "$(grep -o "\"same_host_socket\":true" unix.json | wc -l)" -eq 2 ]'

run shm shm
check "shm: the calls pass" 'grep -q " 0 failed" shm.out'
check "shm: both workers take the Unix socket" \
  '[ "$(grep -o "\"same_host_socket\":true" shm.json | wc -l)" -eq 2 ]'

run bogus bogus
rc=$?
check "bogus: the run fails" '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]'
check "bogus: the error names the variable and the valid values" \
  'grep -q "DISTC_TRANSPORT=bogus names no transport: use tcp, unix or shm" bogus.out'
finish

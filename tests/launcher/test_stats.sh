#!/usr/bin/env bash
# test_stats.sh DISTC_LAUNCH TEST_LIB SRCDIR — distc-launch --stats prints
# a row per worker and a total at exit, with the calls the program made
# (test_lib stats: 11 calls to worker 2, 1 to worker 3, a 4 MiB result from
# worker 3); without --stats nothing is printed.
set -u
launch=${1:?usage: test_stats.sh DISTC_LAUNCH TEST_LIB SRCDIR} test_lib=$2 src=$3
. "$src/tests/lib.sh"
cd "$tmp" || exit 1
unset DISTC_TRACE DISTC_STATS

timeout 60 "$launch" -p 2 --stats "$test_lib" stats >out 2>err
check "the program passes under --stats" 'grep -q " 0 failed" out'
check "the table has a header" 'grep -q "^distc: statistics" err && grep -q "worker  host" err'
row() { awk -v w="$1" '$1 == w' err; }
check "worker 2: 11 calls" '[ "$(row 2 | awk "{print \$3}")" = 11 ]'
check "worker 3: 1 call" '[ "$(row 3 | awk "{print \$3}")" = 1 ]'
check "worker 3: the 4 MiB result (copied or received)" \
  'row 3 | grep -q "4\.0 MiB"'
check "a total row with 12 calls" '[ "$(row total | awk "{print \$2}")" = 12 ]'
[ "$fail" -eq 0 ] || cat err

timeout 60 "$launch" -p 2 "$test_lib" stats >out 2>err
check "without --stats no table" '! grep -q "statistics" err'
finish

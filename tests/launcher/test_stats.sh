#!/usr/bin/env bash
# test_stats.sh DISTC_LAUNCH TEST_LIB SRCDIR [DATAMOVE] — distc-launch
# --stats prints a row per worker and a total at exit, with the calls the
# program made (test_lib stats: 11 calls to worker 2, 1 to worker 3, a 4 MiB
# result from worker 3); without --stats nothing is printed.  The seed's
# datamove example reports the bytes each method moved from the counters.
set -u
launch=${1:?usage: test_stats.sh DISTC_LAUNCH TEST_LIB SRCDIR [DATAMOVE]}
test_lib=$2 src=$3 datamove=${4:-}
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

# datamove: method 1 ships A and B (2 x 80,000 bytes) and gets C back;
# method 2 sends a seed and gets C back.
if [ -n "$datamove" ]; then
  timeout 120 "$launch" -p 2 "$datamove" 20 >out 2>&1
  field() { awk -v m="method $1" -v f="$2" 'index($0, m) == 1 { gsub(/,/, "")
    for (i = 1; i <= NF; i++) if ($i == f) print $(i - 1) }' out; }
  check "datamove: method 1 sent A and B" \
    '[ "$(field 1 bytes)" -ge 160000 ] && [ "$(field 1 bytes)" -lt 161000 ]'
  check "datamove: method 2 sent only a seed" '[ "$(field 2 bytes)" -lt 200 ]'
  check "datamove: both received C" \
    '[ "$(field 1 received)" -ge 80000 ] && [ "$(field 2 received)" -ge 80000 ] && [ "$(field 2 received)" -lt 81000 ]'
  [ "$fail" -eq 0 ] || cat out
fi
finish

#!/usr/bin/env bash
# test_peers.sh — the topology option: lazy links under all_to_all (after a
# run where only workers 2 and 3 talked, 8 workers hold 8 links to the
# master and one sideways link, counted with ss), and master_worker, which
# refuses a sideways call with a message that names the topology.  Every
# wait is bounded.
#   test_peers.sh DISTC_LAUNCH TEST_PEERS
set -u
LAUNCH=$1 PROG=$2
. "$(dirname "$0")/../lib.sh"

# 1. Lazy links: count the established links of this run's processes.
PEERS_LAZY_WAIT=5 "$LAUNCH" -p 8 "$PROG" lazy >"$tmp/out" 2>"$tmp/err" &
LPID=$!
if wait_for '^READY' 300 "$tmp/out"; then
  pids=$(cat /proc/"$LPID"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . | paste -sd'|')
  ours() { grep -E "pid=($pids),"; }
  # A Unix link shows its listener's name at the accepting end only.
  unix=$(ss -xHp state established 2>/dev/null | ours | awk '$4 ~ /^@distc-/' | wc -l)
  # A TCP link between two of ours shows at both ends.
  tcp=$(ss -tHp state established 2>/dev/null | ours | wc -l)
  links=$((unix + (tcp + 1) / 2))
  check "9 workers' processes found" '[ $(echo "$pids" | tr "|" "\n" | wc -l) -eq 9 ]'
  check "8 master links + 1 sideways link, not 8*9/2 (got $unix unix, $tcp tcp ends)" \
    '[ "$links" -eq 9 ]'
else
  bad "the lazy run reached its count"; cat "$tmp/out" "$tmp/err"
fi
for _ in $(seq 200); do alive "$LPID" || break; sleep 0.1; done
wait "$LPID"
check "the lazy run passed" 'grep -q " 0 failed" "$tmp/out"'

# 2. master_worker: the sideways call is refused, saying why.
timeout 60 "$LAUNCH" --topology master_worker -p 3 "$PROG" refuse >"$tmp/out" 2>&1
check "master_worker refuses sideways calls clearly" \
  'grep -q "^6 passed, 0 failed" "$tmp/out" || { cat "$tmp/out"; false; }'

# 3. A bad topology is the launcher's error, naming the valid ones.
timeout 20 "$LAUNCH" --topology star -p 1 "$PROG" refuse >"$tmp/out" 2>&1
check "--topology star is refused (status $?)" \
  'grep -q "all_to_all.*master_worker" "$tmp/out"'
finish

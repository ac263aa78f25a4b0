#!/usr/bin/env bash
# test_submit.sh — distc-launch --submit sbatch|qsub against the real SLURM
# testbed (tests/slurm/testbed.sh: slurmctld and two slurmd nodes in network
# namespaces, slurm-wlm-torque's qsub).  Runs only when the testbed is up;
# it never starts or stops it.  Every wait is bounded.
#   test_submit.sh DISTC_LAUNCH TEST_ELASTIC TESTBED_SH
set -u
LAUNCH=$1 EL=$2 TESTBED=$3
. "$(dirname "$0")/../lib.sh"
T=120

if ! "$TESTBED" status >/dev/null 2>&1; then
  echo "the SLURM testbed is not running (tests/slurm/testbed.sh start): skipping"
  exit 77
fi
eval "$("$TESTBED" env)"
if [ "$TESTBED_SLURM_MODE" != netns ]; then
  echo "the SLURM testbed runs one local node (no namespaces): skipping"
  exit 77
fi
# The nodes read the key and the program where this test writes them.
chmod 755 "$tmp"
kd=$tmp/keys

# Jobs of ours (by id) still known to the scheduler as pending or running.
ours_left() {
  local ids
  ids=$(sed -n 's/.*submitted [0-9]* jobs\{0,1\} with [a-z]*: \([0-9 ]*\) (output.*/\1/p' "$1" | tr ' ' ',')
  [ -z "$ids" ] && { echo "no-job-ids"; return; }
  squeue -h -j "${ids%,}" -t PENDING,RUNNING,COMPLETING,CONFIGURING 2>/dev/null | wc -l
}

# 1. --dry-run prints the job script (dask-jobqueue's job_script()) and
#    submits nothing.
"$LAUNCH" --submit sbatch --jobs 2 --workers-per-job 4 --walltime 10 \
  --job-extra '#SBATCH --exclusive' --key-dir "$kd" --dry-run "$EL" hosts 8 \
  >"$tmp/dry" 2>&1; st=$?
check "--dry-run exits 0" '[ $st -eq 0 ]'
check "--dry-run prints the job script" \
  'grep -q "^#SBATCH --cpus-per-task=4" "$tmp/dry" && grep -q "^#SBATCH --time=10" "$tmp/dry" && grep -q "^#SBATCH --exclusive" "$tmp/dry" && grep -q -- "--join .* --join-key .* -p 4 .*test_elastic hosts 8" "$tmp/dry"'
check "--dry-run submits nothing" '! grep -q "submitted" "$tmp/dry"'

# 2. sbatch, 2 jobs x 4 workers on separate nodes: 8 workers join, both
#    nodes answer, nothing is left queued, the key is removed.
timeout $T "$LAUNCH" --submit sbatch --jobs 2 --workers-per-job 4 \
  --walltime 10 --job-extra '#SBATCH --exclusive' --key-dir "$kd" \
  "$EL" hosts 8 >"$tmp/out2" 2>"$tmp/err2"; st=$?
check "sbatch run exits 0" '[ $st -eq 0 ]'
check "sbatch: 8 workers joined" 'grep -q "^workers 8" "$tmp/out2"'
check "sbatch: workers on both nodes" \
  'grep -q " on node1$" "$tmp/out2" && grep -q " on node2$" "$tmp/out2"'
check "sbatch: the nodes dial this host on the route to the controller" \
  'grep -q "workers join at $TESTBED_SLURM_LOGIN_ADDR:" "$tmp/err2"'
check "sbatch: the jobs' state was shown" 'grep -q "jobs: .*running" "$tmp/err2"'
check "sbatch: no job of ours left in squeue" '[ "$(ours_left "$tmp/err2")" -eq 0 ]'
check "sbatch: key file and job script removed" \
  '[ -z "$(ls "$kd"/*.key "$kd"/*.sh 2>/dev/null)" ]'
[ $st -ne 0 ] && cat "$tmp/out2" "$tmp/err2"

# 3. qsub through slurm-wlm-torque: the same door.
if command -v qsub >/dev/null; then
  timeout $T "$LAUNCH" --submit qsub --jobs 2 --workers-per-job 2 \
    --walltime 00:10:00 --key-dir "$kd" "$EL" hosts 4 \
    >"$tmp/out3" 2>"$tmp/err3"; st=$?
  check "qsub run exits 0 with 4 workers" \
    '[ $st -eq 0 ] && grep -q "^workers 4" "$tmp/out3"'
  check "qsub: no job of ours left" '[ "$(ours_left "$tmp/err3")" -eq 0 ]'
  [ $st -ne 0 ] && cat "$tmp/out3" "$tmp/err3"
fi

# 4. Ctrl-C while the jobs are pending cancels them.
timeout $T "$LAUNCH" --submit sbatch --jobs 2 --key-dir "$kd" \
  --job-extra '#SBATCH --begin=now+1hour' "$EL" hosts 2 \
  >"$tmp/out4" 2>"$tmp/err4" &
LPID=$!
if wait_for "pending" 300 "$tmp/err4"; then
  check "pending jobs are shown with their reason" \
    'grep -q "jobs: 0 running, 2 pending (BeginTime)" "$tmp/err4"'
  kill -INT $LPID
  for _ in $(seq 200); do alive $LPID || break; sleep 0.1; done
  wait $LPID; st=$?
  check "Ctrl-C: distc-launch ends" '[ $st -ne 0 ] && ! alive $LPID'
  check "Ctrl-C: the pending jobs are cancelled" \
    '[ "$(ours_left "$tmp/err4")" -eq 0 ]'
else
  bad "jobs submitted and pending"; cat "$tmp/err4"; kill -9 $LPID
fi

# 5. A job that ends while its worker is idle (scancel, as its walltime
#    would) is a departure: the run goes on.
timeout $T "$LAUNCH" --submit sbatch --jobs 2 --key-dir "$kd" \
  "$EL" members 2 >"$tmp/out5" 2>"$tmp/err5" &
LPID=$!
if wait_for "^present 2" 600 "$tmp/out5"; then
  id=$(sed -n 's/.*submitted 2 jobs with sbatch: \([0-9]*\) .*/\1/p' "$tmp/err5")
  scancel "$id"
  for _ in $(seq 600); do alive $LPID || break; sleep 0.1; done
  wait $LPID; st=$?
  check "a job ended: departure, the run goes on" \
    '[ $st -eq 0 ] && grep -q "^left" "$tmp/out5" && grep -q "after departure ok" "$tmp/out5"'
  check "a job ended: nothing of ours left" '[ "$(ours_left "$tmp/err5")" -eq 0 ]'
  [ $st -ne 0 ] && cat "$tmp/out5" "$tmp/err5"
else
  bad "2 workers joined from 2 jobs"; cat "$tmp/out5" "$tmp/err5"
  kill -INT $LPID; wait $LPID
fi

# 6. Jobs whose workers never join (the program fails on the node): the run
#    fails saying so, instead of waiting for ever.
timeout $T "$LAUNCH" --submit sbatch --jobs 1 --key-dir "$kd" \
  --exename /bin/false "$EL" hosts 1 >"$tmp/out6" 2>"$tmp/err6"; st=$?
check "jobs that end before joining fail the run, saying so" \
  '[ $st -eq 1 ] && grep -q "every job ended before enough workers joined" "$tmp/err6"'
check "and nothing of ours is left" '[ "$(ours_left "$tmp/err6")" -eq 0 ]'
[ $st -ne 1 ] && cat "$tmp/out6" "$tmp/err6"

finish

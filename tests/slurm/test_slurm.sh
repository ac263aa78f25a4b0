#!/usr/bin/env bash
# test_slurm.sh — the slurm manager against a real SLURM 22.05 (testbed.sh:
# slurmctld and two slurmd nodes in network namespaces, each with its own
# hostname).  Ends with "N passed, M failed".
#
#   test_slurm.sh DISTC_LAUNCH SLURM_PROG TESTBED_SH JOB_SBATCH
set -u
launch=$1 prog=$2 testbed=$3 job_sbatch=$4
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

# Takes turns with the other users of the cluster (the conformance suite,
# the benchmark, other checkouts' tests): they count processes on the nodes
# and fill them.
exec 9>"${DISTC_SLURM_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-slurm-testbed}.lock"
flock -w 900 9 || { echo "the SLURM testbed stayed busy for 15 min"; exit 1; }
started_here=0
if ! "$testbed" status; then
  if ! "$testbed" start 9>&-; then
    echo "the SLURM testbed does not start here (needs root and SLURM); skipping"
    exit 77
  fi
  started_here=1
fi
cleanup() {
  [ -n "${hidden:-}" ] && nsenter --mount --target "$hidden" umount "$tmp/bin" 2>/dev/null
  [ "$started_here" = 1 ] && "$testbed" stop
  rm -rf "$tmp"
}
trap cleanup EXIT
eval "$("$testbed" env)"
if [ "$TESTBED_SLURM_MODE" != netns ]; then
  echo "the SLURM testbed runs one local node (no namespaces): skipping"
  exit 77
fi
PATH="$(dirname "$launch"):$PATH"
export PATH
login=$(hostname)
chmod 755 "$tmp"
cd "$tmp" || exit 1

# Processes running the test program on the nodes (in their namespaces).
on_nodes() {
  local ns p n=0
  for ns in $TESTBED_SLURM_NODES; do
    for p in $(ip netns pids "$TESTBED_SLURM_NS_PREFIX$ns" 2>/dev/null); do
      { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q slurm_prog && n=$((n + 1))
    done
  done
  echo "$n"
}
# Waits up to $1 tenths of a second for no test program on any node.
nodes_clear() {
  for _ in $(seq "$1"); do [ "$(on_nodes)" = 0 ] && return 0; sleep 0.1; done
  return 1
}
# Whether no step of job name $1 is known to the controller within 5 s
# (a step of a job that just ended stays listed while it completes).
no_steps() {
  for _ in $(seq 50); do
    [ "$(squeue -h -s -n "$1" 2>/dev/null | wc -l)" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}
count() { grep -c "$1" "$2"; }

# 1. The contrib template, as is, with sbatch: 2 nodes x 4 tasks.
timeout 120 sbatch --wait -Q -J distc-tpl -o "$tmp/tpl.out" "$job_sbatch" "$prog" where
rc=$?
check "sbatch job.sbatch: exit 0 (got $rc)" '[ "$rc" = 0 ]'
check "sbatch: master on node1" 'grep -qx "master on node1" tpl.out'
check "sbatch: 4 workers on node1" '[ "$(count "^worker [0-9]* on node1$" tpl.out)" = 4 ]'
check "sbatch: 4 workers on node2" '[ "$(count "^worker [0-9]* on node2$" tpl.out)" = 4 ]'
check "sbatch: nothing left on the nodes" 'nodes_clear 20'
[ "$fail" = 0 ] || cat tpl.out

# 2. salloc + distc-launch: the master on the login side, -v says why.
timeout 60 salloc -Q -N2 --ntasks-per-node=2 -J distc-salloc \
  "$launch" -v "$prog" where >sa.out 2>sa.err
rc=$?
check "salloc: exit 0 (got $rc)" '[ "$rc" = 0 ]'
check "salloc: master on the login side" 'grep -qx "master on $login" sa.out'
check "salloc: 2 workers on node1" '[ "$(count "^worker [0-9]* on node1$" sa.out)" = 2 ]'
check "salloc: 2 workers on node2" '[ "$(count "^worker [0-9]* on node2$" sa.out)" = 2 ]'
check "-v: slurm chosen by detection" 'grep -q "cluster manager slurm (detected" sa.err'
check "-v: one srun line with the layout" \
  '[ "$(grep -c "distc-launch: srun --jobid=[0-9]* --nodes=2 --ntasks=2 --ntasks-per-node=1 --nodelist=node1,node2 --kill-on-bad-exit=1 --overlap --input=all" sa.err)" = 1 ]'
check "-v: the nodes dial the bridge address" 'grep -q "workers dial $TESTBED_SLURM_LOGIN_ADDR:" sa.err'
check "-v: no secret on the srun line" '! grep -q "secret" sa.err'
check "salloc: step gone within 2 s of the end" 'nodes_clear 20'
[ "$fail" = 0 ] || cat sa.out sa.err

# 3. --dry-run prints the srun line and starts nothing.
timeout 60 salloc -Q -N2 -J distc-dry "$launch" --dry-run "$prog" where >dry.out 2>&1
check "--dry-run: the srun line" 'grep -q "srun --jobid=.*--nodelist=node1,node2" dry.out'
check "--dry-run: nothing ran" '! grep -q "^worker" dry.out'

#    --master-addr overrides the route.
timeout 60 salloc -Q -N2 -J distc-maddr "$launch" --dry-run --master-addr 192.0.2.77 "$prog" where >maddr.out 2>&1
check "--master-addr: the workers dial it" 'grep -q "workers dial 192.0.2.77:[^ ]* (--master-addr)" maddr.out'

# 4. -p: spread over the allocation; more than it holds is an error.
timeout 60 salloc -Q -N2 --ntasks-per-node=2 -J distc-p3 "$launch" -p 3 "$prog" where >p3.out 2>&1
check "-p 3: 2 workers on node1" '[ "$(count "^worker [0-9]* on node1$" p3.out)" = 2 ]'
check "-p 3: 1 worker on node2" '[ "$(count "^worker [0-9]* on node2$" p3.out)" = 1 ]'
timeout 60 salloc -Q -N2 --ntasks-per-node=2 -J distc-p5 "$launch" -p 5 "$prog" where >p5.out 2>&1
rc=$?
check "-p 5 of 4: non-zero (got $rc)" '[ "$rc" != 0 ]'
check "-p 5 of 4: says what it holds" 'grep -q "holds: 4 slot(s) on 2 node(s); ask for at most -p 4" p5.out'
check "-p 5 of 4: nothing started" '! grep -q "^worker" p5.out && nodes_clear 10'
[ "$fail" = 0 ] || cat p3.out p5.out

# 5. The program missing on one node: hidden on node2 only, by an empty
#    tmpfs over its directory in node2's mount namespace.
mkdir -p "$tmp/bin" && cp "$prog" "$tmp/bin/slurm_prog"
hidden=$(cat "$TESTBED_SLURM_DIR/node2/slurmd.pid")
nsenter --mount --target "$hidden" mount -t tmpfs tmpfs "$tmp/bin"
timeout 60 salloc -Q -N2 -J distc-noexe "$launch" --timeout 20 "$tmp/bin/slurm_prog" where >noexe.out 2>&1
rc=$?
nsenter --mount --target "$hidden" umount "$tmp/bin" && hidden=
check "exename missing on node2: non-zero (got $rc)" '[ "$rc" != 0 ]'
check "exename missing on node2: the error names node2" \
  'grep -q "distc-launch: node2: the program .*slurm_prog is not there" noexe.out'
check "exename missing on node2: nothing left running" 'nodes_clear 50'
check "exename missing on node2: no step left" 'no_steps distc-noexe'
[ "$fail" = 0 ] || cat noexe.out

# 6. The master's exit status is distc-launch's.
timeout 60 salloc -Q -N2 -J distc-exit "$launch" "$prog" exit 7 >exit.out 2>&1
rc=$?
check "master exit 7: distc-launch exits 7 (got $rc)" '[ "$rc" = 7 ]'

#    A worker that exits by itself with 5, the master with 0: srun's rule,
#    the highest status; the worker is named with its node.
timeout 60 salloc -Q -N2 -J distc-wexit "$launch" "$prog" worker-exit 5 >wexit.out 2>&1
rc=$?
check "worker exits 5, master 0: distc-launch exits 5 (got $rc)" '[ "$rc" = 5 ]'
check "worker exits 5: reported with its node" \
  'grep -q "distc-launch: worker 1 (pid [0-9]* on node2) exited with status 5" wexit.out'
[ "$fail" = 0 ] || cat wexit.out

# 7. scancel mid-run, from salloc: the step ends, the launcher stops the
#    master and exits non-zero.
timeout 60 salloc -Q -N2 --ntasks-per-node=1 -J distc-cancel "$launch" "$prog" hang \
  >cancel.out 2>&1 &
sa=$!
wait_for '^ready' 300 cancel.out
check "scancel (salloc): the run was up" 'grep -q "^ready" cancel.out'
# The secret (64 hex digits on srun's stdin) is in no command line or
# environment of srun, the proxies or the workers.
no_secret() {
  local p pids
  pids="$(pgrep -x srun) $(pgrep -f slurm_prog)"
  for p in $pids; do
    { tr '\0' '\n' <"/proc/$p/cmdline"; tr '\0' '\n' <"/proc/$p/environ"; } \
      2>/dev/null | grep -qE '[0-9a-f]{64}' && return 1
  done
  [ -n "${pids// /}" ]
}
check "no secret in srun's, the proxies' or the workers' argv and environment" 'no_secret'
scancel -n distc-cancel
check "scancel (salloc): no process on the nodes after 5 s" 'nodes_clear 50'
for _ in $(seq 50); do alive "$sa" || break; sleep 0.1; done
check "scancel (salloc): distc-launch has ended" '! alive "$sa"'
alive "$sa" && kill "$sa"
wait "$sa"
rc=$?
check "scancel (salloc): non-zero (got $rc)" '[ "$rc" != 0 ]'
[ "$fail" = 0 ] || cat cancel.out

#    ... and from a batch script: everything of the job ends.
jid=$(sbatch --parsable -J distc-bcancel -N2 --ntasks-per-node=1 \
  -o "$tmp/bcancel.out" "$job_sbatch" "$prog" hang)
wait_for '^ready' 300 bcancel.out
check "scancel (sbatch): the run was up" 'grep -q "^ready" bcancel.out'
scancel "$jid"
check "scancel (sbatch): no process on the nodes after 5 s" 'nodes_clear 50'

# 8. distc_addprocs with the slurm manager: a second step beside the first.
timeout 60 salloc -Q -N2 --ntasks-per-node=2 -J distc-add "$launch" -p 1 "$prog" addprocs 2 \
  >add.out 2>&1
rc=$?
check "addprocs: exit 0 (got $rc)" '[ "$rc" = 0 ]'
check "addprocs: 2 added" 'grep -qx "added 2" add.out'
check "addprocs: 3 workers on the nodes" \
  '[ "$(sed -n "/^added/,\$p" add.out | grep -c "^worker [0-9]* on node[12]$")" = 3 ]'
check "addprocs: nothing left" 'nodes_clear 30'
[ "$fail" = 0 ] || cat add.out

# 9. --manager local inside an allocation still runs here.
timeout 60 salloc -Q -N1 -J distc-local "$launch" --manager local -p 2 "$prog" where >local.out 2>&1
check "--manager local: workers on the login side" \
  '[ "$(count "^worker [0-9]* on $login$" local.out)" = 2 ]'

# 10. From the login side: distc-launch allocates, runs, releases.
running_job() { squeue -h -j "$1" -t PD,R,S 2>/dev/null | wc -l; }
timeout 60 "$launch" -v --nodes 2 --ntasks-per-node 2 --time 5 "$prog" where >alloc.out 2>alloc.err
rc=$?
job=$(sed -n 's/.*job \([0-9]*\) allocated.*/\1/p' alloc.err | head -1)
check "--nodes 2: exit 0 (got $rc)" '[ "$rc" = 0 ]'
check "--nodes 2: 2 workers on node1" '[ "$(count "^worker [0-9]* on node1$" alloc.out)" = 2 ]'
check "--nodes 2: 2 workers on node2" '[ "$(count "^worker [0-9]* on node2$" alloc.out)" = 2 ]'
check "--nodes 2: the job is released" '[ -n "$job" ] && [ "$(running_job "$job")" = 0 ]'
[ "$fail" = 0 ] || cat alloc.out alloc.err

#     ... and Ctrl-C while the request waits (the nodes are taken).
hold=$(sbatch --parsable -J distc-hold -N2 --exclusive -o /dev/null --wrap 'sleep 60')
for _ in $(seq 100); do [ "$(squeue -h -j "$hold" -t R | wc -l)" = 1 ] && break; sleep 0.1; done
timeout 60 "$launch" --nodes 2 "$prog" where >pend.out 2>pend.err &
lp=$!
wait_for 'waiting for allocation: job [0-9]* pending (Resources)' 100 pend.err
check "pending: says why it waits" 'grep -q "waiting for allocation: job [0-9]* pending (Resources)" pend.err'
job=$(sed -n 's/.*job \([0-9]*\) pending.*/\1/p' pend.err | head -1)
kill -INT "$lp"
for _ in $(seq 50); do alive "$lp" || break; sleep 0.1; done
check "pending: Ctrl-C ends distc-launch" '! alive "$lp"'
alive "$lp" && kill "$lp"
wait "$lp"
rc=$?
check "pending: exits 130 (got $rc)" '[ "$rc" = 130 ]'
check "pending: the job is cancelled, nothing left in squeue" \
  '[ -n "$job" ] && [ "$(running_job "$job")" = 0 ]'
scancel "$hold"
[ "$fail" = 0 ] || cat pend.out pend.err

finish

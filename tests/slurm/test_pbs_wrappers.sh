#!/usr/bin/env bash
# test_pbs_wrappers.sh — contrib/pbs/job.pbs through slurm-wlm-torque's PBS
# wrappers on the SLURM testbed (testbed.sh): qsub runs sbatch, which reads
# the #PBS lines itself; the job has SLURM's variables and no PBS_NODEFILE,
# so distc-launch chooses the slurm manager (priority 20 > pbs 10: the
# wrapper case).  qdel mid-run must leave nothing on the nodes.  Runs only
# when the testbed is up; it never starts or stops it.  Every wait is
# bounded.  Ends with "N passed, M failed".
#
#   test_pbs_wrappers.sh DISTC_LAUNCH SLURM_PROG TESTBED_SH JOB_PBS
set -u
launch=$1 prog=$2 testbed=$3 job_pbs=$4
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

if ! command -v qsub >/dev/null || ! command -v qdel >/dev/null; then
  echo "qsub/qdel are missing (Debian: slurm-wlm-torque): skipping"
  exit 77
fi
# Takes turns with the other users of the cluster (they count processes on
# the nodes and fill them).
exec 9>"${DISTC_SLURM_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-slurm-testbed}.lock"
flock -w 900 9 || { echo "the SLURM testbed stayed busy for 15 min"; exit 1; }
if ! "$testbed" status >/dev/null 2>&1; then
  echo "the SLURM testbed is not running (tests/slurm/testbed.sh start): skipping"
  exit 77
fi
eval "$("$testbed" env)"
if [ "$TESTBED_SLURM_MODE" != netns ]; then
  echo "the SLURM testbed runs one local node (no namespaces): skipping"
  exit 77
fi

# The job runs as this user on the nodes, which share this machine's files:
# the submit directory must be readable there.
chmod 755 "$tmp"
sub=$tmp/submit
mkdir -p "$sub" "$tmp/bin"
cp "$job_pbs" "$sub/job.pbs"
# The template's `distc-launch` is found in PATH (qsub passes the submit
# environment on): this wrapper adds -v, so the job's output says which
# manager was chosen and why.  Its `./prog` is a link to the test program
# (a link: the build tree's relative rpath follows the real file).
printf '#!/bin/sh\nexec "%s" -v "$@"\n' "$launch" >"$tmp/bin/distc-launch"
chmod +x "$tmp/bin/distc-launch"
ln -s "$prog" "$sub/prog"
export PATH="$tmp/bin:$PATH"
cd "$sub" || exit 1

# Whether job $1 is still queued, running or completing.
queued() { [ -n "$(squeue -h -j "$1" -t PD,CF,R,S,CG 2>/dev/null)" ]; }
# Waits up to $2 tenths of a second for job $1 to leave the queue.
gone() {
  for _ in $(seq "$2"); do queued "$1" || return 0; sleep 0.1; done
  return 1
}
# Processes of job $1 on the nodes (in their namespaces): its slurmstepds,
# and whatever runs with its SLURM_JOB_ID or this test's directory in its
# command line (the batch script, distc-launch, srun, proxies, workers).
of_job() {
  local ns p n=0 cmd
  for ns in $TESTBED_SLURM_NODES; do
    for p in $(ip netns pids "$TESTBED_SLURM_NS_PREFIX$ns" 2>/dev/null); do
      cmd=$({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
      if [[ $cmd == *"slurmstepd: [$1."* || $cmd == *"$tmp"* ]] ||
        { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "SLURM_JOB_ID=$1"; then
        n=$((n + 1))
      fi
    done
  done
  echo "$n"
}
# Processes of job $1 on node $2 in distc role $3 (master, proxy, worker).
role_on() {
  local p n=0 env
  for p in $(ip netns pids "$TESTBED_SLURM_NS_PREFIX$2" 2>/dev/null); do
    env=$({ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null) || continue
    grep -qx "SLURM_JOB_ID=$1" <<<"$env" && grep -qx "DISTC_ROLE=$3" <<<"$env" &&
      n=$((n + 1))
  done
  echo "$n"
}
# Waits up to $2 tenths of a second for no process of job $1 on any node.
nodes_clear() {
  for _ in $(seq "$2"); do [ "$(of_job "$1")" = 0 ] && return 0; sleep 0.1; done
  return 1
}
count() { grep -c "$1" "$2"; }

# 1. The template as it is: `qsub job.pbs`.  Its "select=2:ncpus=4:
#    mpiprocs=4" is 2 nodes x 4 tasks (the testbed has 2 x 8 CPUs).
id=$(timeout 30 qsub job.pbs 2>"$tmp/qsub.err")
check "qsub job.pbs prints the job id (got '$id')" '[[ $id =~ ^[0-9]+$ ]]'
[[ $id =~ ^[0-9]+$ ]] || { cat "$tmp/qsub.err"; id=0; }
gone "$id" 1200
check "the job ends within 120 s" '! queued "$id"'
state=$(scontrol show job -o "$id" 2>/dev/null | grep -o ' JobState=[A-Z_]* \| ExitCode=[0-9:]* ' | tr -d '\n')
check "the job completed with exit code 0 ($state)" \
  '[ "$state" = " JobState=COMPLETED  ExitCode=0:0 " ]'
check "qstat: state C, on node1/4+node2/4 as #PBS -l select asked" \
  'qstat -f "$id" >qstat.out 2>&1 && grep -q "job_state = C" qstat.out && grep -q "exec_host = node1/4+node2/4" qstat.out'
o=job.pbs.o$id e=job.pbs.e$id
check "output in job.pbs.o<id> in the submit directory" '[ -s "$o" ]'
check "the master on node1" 'grep -qx "master on node1" "$o"'
check "4 workers on node1" '[ "$(count "^worker [0-9]* on node1$" "$o")" = 4 ]'
check "4 workers on node2" '[ "$(count "^worker [0-9]* on node2$" "$o")" = 4 ]'
check "-v: slurm chosen by detection (the wrapper case)" \
  'grep -q "^distc-launch: cluster manager slurm (detected: running inside its allocation" "$e"'
check "-v: the job's 8 slots, 4 per node" \
  'grep -q "SLURM job $id on node\[1-2\] .*: 8 slots .*node1:4/4 node2:4/4" "$e"'
check "-v: the workers start with one srun step" \
  '[ "$(grep -c "^distc-launch: srun --jobid=$id " "$e")" = 1 ]'
check "-v: no pbs manager (no PBS_NODEFILE under the wrappers)" \
  '! grep -q "cluster manager pbs" "$e"'
check "nothing of the job left on the nodes" 'nodes_clear "$id" 50'
[ "$fail" = 0 ] || { cat "$o" "$e" qstat.out 2>/dev/null; }

# 2. qdel mid-run: the template running a program that waits to be killed
#    (its master prints "ready" once every worker has answered).
sed 's|^distc-launch \./prog$|distc-launch ./prog hang|' job.pbs >hang.pbs
check "hang.pbs: the template with ./prog hang" \
  '[ "$(diff job.pbs hang.pbs | grep -c "^> distc-launch ./prog hang$")" = 1 ]'
id=$(timeout 30 qsub hang.pbs 2>"$tmp/qsub.err")
check "qsub hang.pbs prints the job id (got '$id')" '[[ $id =~ ^[0-9]+$ ]]'
[[ $id =~ ^[0-9]+$ ]] || { cat "$tmp/qsub.err"; id=0; }
o=hang.pbs.o$id e=hang.pbs.e$id
wait_for '^ready' 1200 "$o"
check "qdel: the run was up (master ready)" 'grep -qx ready "$o"'
m1=$(role_on "$id" node1 master) w1=$(role_on "$id" node1 worker)
w2=$(role_on "$id" node2 worker) all=$(of_job "$id")
check "qdel: the master and 4 workers on node1, 4 workers on node2 ($m1, $w1, $w2)" \
  '[ "$m1" = 1 ] && [ "$w1" = 4 ] && [ "$w2" = 4 ]'
# (so the count that must fall to 0 below sees the job's processes)
check "qdel: the job's processes are counted before ($all)" '[ "$all" -ge 13 ]'
check "qdel: exits 0" 'timeout 30 qdel "$id"'
check "qdel: no process of the job on any node within 5 s" 'nodes_clear "$id" 50'
check "qdel: the job has left squeue within 5 s" 'gone "$id" 50'
check "qdel: qstat shows it completed" 'qstat "$id" 2>/dev/null | grep -q "^$id .* C "'
[ "$fail" = 0 ] || { cat "$o" "$e" 2>/dev/null; of_job "$id"; }
queued "$id" && scancel "$id"

finish

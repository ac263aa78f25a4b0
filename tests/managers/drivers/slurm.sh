# shellcheck shell=bash
# The slurm manager on the SLURM testbed (tests/slurm/testbed.sh): an
# allocation of two nodes x 2 tasks made with `salloc --no-shell`, its
# variables exported as salloc exports them to its shell, so each launch
# below runs "inside" it; -p N spreads N workers over the two nodes.
# Takes turns with the other users of the testbed, and starts (and stops)
# it when nobody else did.
TB=$SRC/../slurm/testbed.sh
driver_started=0
driver_job=
driver_setup() {
  exec 9>"${DISTC_SLURM_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-slurm-testbed}.lock"
  flock -w 900 9 || return 1
  if ! "$TB" status >/dev/null 2>&1; then
    "$TB" start >&2 9>&- || return 1
    driver_started=1
  fi
  eval "$("$TB" env)"
  [ "$TESTBED_SLURM_MODE" = netns ] || return 1
  driver_job=$(salloc --no-shell -Q -N2 --ntasks-per-node=2 -J distc-conform \
    -t 10 2>&1 | sed -n 's/.*[Gg]ranted job allocation \([0-9]*\).*/\1/p')
  [ -n "$driver_job" ] ||
    driver_job=$(squeue -h -n distc-conform -o %i | head -1)
  [ -n "$driver_job" ] || return 1
  export SLURM_JOB_ID=$driver_job SLURM_JOBID=$driver_job
  SLURM_JOB_NODELIST=$(squeue -h -j "$driver_job" -o %N)
  export SLURM_JOB_NODELIST SLURM_NODELIST=$SLURM_JOB_NODELIST
  export SLURM_TASKS_PER_NODE='2(x2)' SLURM_JOB_CPUS_PER_NODE='2(x2)'
  export SLURM_NTASKS=4 SLURM_NNODES=2 SLURM_JOB_NUM_NODES=2
}
driver_teardown() {
  [ -n "$driver_job" ] && scancel "$driver_job"
  if [ "$driver_started" = 1 ]; then "$TB" stop; fi
}
driver_args() { DRIVER_ARGS=(-p "$1"); }
DRIVER_HOST="node[12]"
# The test program's processes on the nodes (slurmd and slurmstepd are
# the cluster's own).
driver_leftovers() {
  local n p
  for n in $TESTBED_SLURM_NODES; do
    for p in $(ip netns pids "$TESTBED_SLURM_NS_PREFIX$n" 2>/dev/null); do
      { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q conform_prog && echo "$p"
    done
  done
}

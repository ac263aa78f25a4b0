# shellcheck shell=bash
# slurm_launch — inside one allocation of 2 SLURM nodes x 4 tasks (the
# cluster of tests/slurm/testbed.sh: slurmctld and two slurmd in network
# namespaces, started here if it is not running and stopped again after),
# wall time of `distc-launch bench_launch` (the slurm manager detects the
# allocation: 8 workers, one srun step, one no-op call on each, exit) vs
# `mpirun -np 8` of MPI_Init/MPI_Finalize (Open MPI's own SLURM launch:
# its orteds started by srun; TCP transport, as in ssh_launch).  Also
# printed: `srun --overlap -n 8 true`, the scheduler's own floor, as the
# row slurm_launch_floor.  One untimed run of each, then SLURM_LAUNCH_RUNS
# (7) timed runs of each, interleaved, timed inside the allocation; medians
# in ms.

slurm_launch_die() {
  if ((SLURM_LAUNCH_STARTED)); then "$REPO_DIR/tests/slurm/testbed.sh" stop; fi
  bench_die "slurm_launch: $*"
}

row_slurm_launch() {
  local runs=${SLURM_LAUNCH_RUNS:-7} tb=$REPO_DIR/tests/slurm/testbed.sh out
  SLURM_LAUNCH_STARTED=0
  # The cluster is shared with the slurm tests; take turns with them.
  exec 7>"${DISTC_SLURM_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-slurm-testbed}.lock"
  flock -w 900 7 || bench_die "slurm_launch: the SLURM testbed stayed busy"
  if ! "$tb" status; then
    SLURM_LAUNCH_STARTED=1
    "$tb" start >&2 7>&- || slurm_launch_die "the SLURM testbed did not start"
  fi
  eval "$("$tb" env)"
  out=$(mktemp)
  # One allocation for all runs; each run bounded.  Prints "d|m|s MICROS".
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout -k 5 600 salloc -Q -N2 --ntasks-per-node=4 -J distc-bench bash -c '
    runs=$1 launch=$2 prog=$3 mpi_init=$4; shift 4
    us() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
    n=$("$launch" -v "$prog" 2>&1 | grep -c "all 8 workers connected")
    [ "$n" = 1 ] || { echo "distc-launch did not start 8 workers" >&2; exit 1; }
    for ((i = 0; i <= runs; i++)); do
      t0=$(us); timeout -k 5 120 "$launch" "$prog" >/dev/null || exit 1
      ((i)) && echo "d $(($(us) - t0))"
      for ((try = 0; ; try++)); do
        t0=$(us)
        timeout -k 5 120 "$@" -np 8 "$mpi_init" >/dev/null 2>&1 && break
        ((try < 3)) || { echo "mpirun failed 4 times" >&2; exit 1; }
      done
      ((i)) && echo "m $(($(us) - t0))"
      t0=$(us); timeout -k 5 60 srun --overlap -n 8 true || exit 1
      ((i)) && echo "s $(($(us) - t0))"
    done' bash "$runs" "$LAUNCH" "$OUT_DIR/bench_launch" "$OUT_DIR/mpi_init" \
    "${MPIRUN[@]}" --mca btl self,tcp >"$out" ||
    { rm -f "$out"; slurm_launch_die "a run failed"; }
  if ((SLURM_LAUNCH_STARTED)); then "$tb" stop; fi
  flock -u 7
  local d m s
  # shellcheck disable=SC2046 # one number per word
  d=$(median $(awk '$1 == "d" { print $2 }' "$out") | awk '{ print $1 / 1000 }')
  # shellcheck disable=SC2046
  m=$(median $(awk '$1 == "m" { print $2 }' "$out") | awk '{ print $1 / 1000 }')
  # shellcheck disable=SC2046
  s=$(median $(awk '$1 == "s" { print $2 }' "$out") | awk '{ print $1 / 1000 }')
  rm -f "$out"
  row_line slurm_launch "$d" mpirun "$m" ms 1
  row_line slurm_launch_floor "$d" srun "$s" ms 1
}

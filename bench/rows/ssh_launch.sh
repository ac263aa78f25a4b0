# shellcheck shell=bash
# ssh_launch — wall time of `distc-launch --hosts node1:4,node2:4
# bench_launch` (4 workers on each of 2 SSH test hosts, one no-op call on
# each, exit) vs `mpirun --host node1:4,node2:4` of MPI_Init/MPI_Finalize
# over the same hosts and sshd servers.  The hosts are the test hosts of
# tests/ssh/testbed.sh (sshd in network namespaces), started here if they
# are not running and stopped again after.  Open MPI reaches them with the
# ssh binary and the testbed's ssh_config; distc with libssh and the same
# file.  Open MPI uses its TCP transport (the "hosts" share one /dev/shm,
# which its shared-memory transport trips over).  Both pay the same login
# shell on each host (with the host's own HOME, see testbed.sh).  One
# untimed run of each,
# then SSH_LAUNCH_RUNS (9) timed runs of each, interleaved; medians in ms.

# Stops the test hosts if this row started them, then fails.
ssh_launch_die() {
  if ((SSH_LAUNCH_STARTED)); then "$REPO_DIR/tests/ssh/testbed.sh" stop; fi
  bench_die "ssh_launch: $*"
}

row_ssh_launch() {
  local runs=${SSH_LAUNCH_RUNS:-9} d=() m=() i t0 try
  local tb=$REPO_DIR/tests/ssh/testbed.sh
  SSH_LAUNCH_STARTED=0
  # The test hosts are shared with the ssh tests; take turns with them.
  exec 8>"${DISTC_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-testbed}.lock"
  flock -w 900 8 || bench_die "ssh_launch: the test hosts stayed busy"
  if ! "$tb" status; then
    SSH_LAUNCH_STARTED=1
    "$tb" start >&2 || ssh_launch_die "the SSH test hosts did not start"
  fi
  eval "$("$tb" env)"
  local cfg=$TESTBED_SSH_CONFIG h1 h2
  h1=$(awk '$1 == "Host" { h = $2 } h == "node1" && $1 == "HostName" { print $2 }' "$cfg")
  h2=$(awk '$1 == "Host" { h = $2 } h == "node2" && $1 == "HostName" { print $2 }' "$cfg")
  # Every run is bounded: nothing here may hang the bench.
  local mpi=(timeout -k 5 120 "${MPIRUN[@]}" --host "$h1:4,$h2:4"
    --mca plm_rsh_agent "ssh -F $cfg" --mca btl self,tcp)
  for ((i = 0; i <= runs; i++)); do
    t0=$(now_us)
    timeout -k 5 120 "$LAUNCH" --ssh-config "$cfg" --hosts node1:4,node2:4 \
      "$OUT_DIR/bench_launch" >/dev/null || ssh_launch_die "distc-launch failed"
    ((i)) && d+=("$(($(now_us) - t0))")
    # Open MPI's PMIx now and then trips over the "hosts" sharing one
    # hostname and /dev/shm; a failed run is run again, not counted.
    for ((try = 0; ; try++)); do
      t0=$(now_us)
      "${mpi[@]}" "$OUT_DIR/mpi_init" >/dev/null 2>&1 && break
      ((try < 3)) || ssh_launch_die "mpirun failed 4 times"
    done
    ((i)) && m+=("$(($(now_us) - t0))")
  done
  if ((SSH_LAUNCH_STARTED)); then "$tb" stop; fi
  flock -u 8
  row_line ssh_launch "$(median "${d[@]}" | awk '{ print $1 / 1000 }')" \
    mpirun "$(median "${m[@]}" | awk '{ print $1 / 1000 }')" ms 1
}

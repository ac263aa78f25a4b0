# shellcheck shell=bash
# The pbs manager inside a "job" on the sshd testbed: PBS_JOBID,
# PBS_O_WORKDIR and a PBS_NODEFILE listing node1 x2 and node2 x2, as qsub
# would set them; the workers start over SSH (the testbed's ssh_config,
# which keeps the pbs manager), -p N spreads N over the job's nodes.
# shellcheck source=tests/managers/drivers/ssh.sh
source "$SRC/drivers/ssh.sh"
eval "ssh_$(declare -f driver_setup)"
driver_setup() {
  ssh_driver_setup || return 1
  mkdir -p "$tmp/pbs"
  printf 'node1\nnode1\nnode2\nnode2\n' >"$tmp/pbs/nodefile"
  export PBS_JOBID=4242.testbed PBS_ENVIRONMENT=PBS_BATCH
  export PBS_NODEFILE=$tmp/pbs/nodefile PBS_O_WORKDIR=$tmp
}
driver_args() { DRIVER_ARGS=(--ssh-config "$TESTBED_SSH_CONFIG" -p "$1"); }

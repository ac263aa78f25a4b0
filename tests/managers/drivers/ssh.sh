# shellcheck shell=bash
# The ssh manager on the sshd testbed (tests/ssh/testbed.sh): two hosts,
# workers split over them.  Takes turns with the other users of the test
# hosts, and starts (and stops) the testbed when nobody else did.
TB=$SRC/../ssh/testbed.sh
driver_started=0
driver_setup() {
  exec 9>"${DISTC_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-testbed}.lock"
  flock -w 900 9 || return 1
  if ! "$TB" status >/dev/null 2>&1; then
    "$TB" start >&2 || return 1
    driver_started=1
  fi
  eval "$("$TB" env)"
  unset SSH_CONNECTION SSH_CLIENT SSH_AUTH_SOCK DISPLAY
}
driver_teardown() { if [ "$driver_started" = 1 ]; then "$TB" stop; fi; }
driver_args() {
  local a=$(($1 / 2)) b=$(($1 - $1 / 2))
  if [ "$a" -gt 0 ]; then
    DRIVER_ARGS=(--ssh-config "$TESTBED_SSH_CONFIG" --hosts "node1:$a,node2:$b")
  else
    DRIVER_ARGS=(--ssh-config "$TESTBED_SSH_CONFIG" --hosts "node2:$b")
  fi
}
DRIVER_HOST="node[12]"
# Pids in a test host's namespace other than its sshd listener.
driver_leftovers() {
  [ "$TESTBED_MODE" = netns ] || return 0
  local n sshd p
  for n in node1 node2; do
    sshd=$(cat "$TESTBED_DIR/$n/sshd.pid")
    for p in $(ip netns pids "$TESTBED_NS_PREFIX$n"); do
      [ "$p" = "$sshd" ] || echo "$p"
    done
  done
}

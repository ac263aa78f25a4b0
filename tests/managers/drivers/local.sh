# shellcheck shell=bash
# The local manager: every worker a child of distc-launch on this host.
driver_setup() { :; }
driver_teardown() { :; }
# driver_args N: the options that give N workers.
driver_args() { DRIVER_ARGS=(-p "$1"); }
# What errors about this manager's hosts call the host.
DRIVER_HOST="this host"
# Processes on its hosts that are not accounted for (none beyond the pids
# the suite checks itself).
driver_leftovers() { :; }

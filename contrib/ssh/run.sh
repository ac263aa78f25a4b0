#!/bin/sh
# run.sh — start a distc program on the hosts of ./hostfile over SSH, the
# way a job script would, from the directory holding both:
#
#   sh run.sh ./prog [ARGS...]
#
# Each worker runs in the same directory as the master (it must exist on
# every host, e.g. a shared home); --dir DIR sets another.  Add -p N for N
# workers on this host too, --tunnel when the hosts cannot connect back to
# this one, --master-addr A to name the address they should dial.
# See distc-launch(1).
set -e
cd "$(dirname "$0")"
exec distc-launch --hostfile hostfile --dir "$PWD" "$@"

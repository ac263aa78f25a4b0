#!/usr/bin/env bash
# test_pbs_job.sh DISTC_LAUNCH SSH_PROG JOB_PBS — a "job" on the sshd
# testbed hosts as qsub would set it up (PBS_JOBID, PBS_ENVIRONMENT,
# PBS_O_WORKDIR, a PBS_NODEFILE of node1 x2 and node2 x2): distc-launch
# with no manager option chooses pbs and runs 4 workers there, 2 on each
# node, in PBS_O_WORKDIR, with tagged output; contrib/pbs/job.pbs runs as
# it is.  The testbed's hosts exist only in its ssh_config, so
# --ssh-config is given: an option of the ssh launch half, which keeps the
# pbs manager.
set -u
L=${1:?usage: test_pbs_job.sh DISTC_LAUNCH SSH_PROG JOB_PBS}
PROG=$2
JOB=$3
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib.sh
source "$SRC/../lib.sh"
# shellcheck source=tests/managers/drivers/pbs.sh
source "$SRC/drivers/pbs.sh"
chmod 755 "$tmp"
if ! driver_setup; then
  bad "the test hosts are available"
  finish
  exit 1
fi
trap 'driver_teardown; rm -rf "$tmp"' EXIT
CFG=$TESTBED_SSH_CONFIG

mkdir -p "$tmp/job"
export PBS_O_WORKDIR=$tmp/job
cd /
timeout -k 5 120 "$L" --ssh-config "$CFG" -v "$PROG" where >"$tmp/out" 2>"$tmp/err"
rc=$?
check "inside a job: exit status 0" '[ "$rc" -eq 0 ] || { head -5 "$tmp/err"; false; }'
check "inside a job: -v says pbs was detected" \
  'grep -q "cluster manager pbs (detected: running inside its allocation" "$tmp/err"'
check "inside a job: 4 workers, one per node file line" \
  '[ "$(grep -c "^worker " "$tmp/out")" -eq 4 ]'
# "worker ID HOST NETNS CWD ...": two hosts, two each
check "inside a job: 2 workers on each node" \
  '[ "$(awk "\$1 == \"worker\" { print \$3 }" "$tmp/out" | sort | uniq -c | awk "{ print \$1 }" | tr "\n" " ")" = "2 2 " ]'
check "inside a job: every worker in PBS_O_WORKDIR" \
  '[ "$(awk -v d="$tmp/job" "\$1 == \"worker\" && \$5 == d" "$tmp/out" | wc -l)" -eq 4 ]'

timeout -k 5 120 "$L" --ssh-config "$CFG" "$PROG" output >"$tmp/out" 2>&1
check "inside a job: tagged output from the 4 workers" \
  '[ "$(grep -cP "From worker [2-5]:\t" "$tmp/out")" -ge 4 ] || { head -5 "$tmp/out"; false; }'

timeout -k 5 120 "$L" --ssh-config "$CFG" -p 6 "$PROG" where >"$tmp/out" 2>"$tmp/err"
check "inside a job: -p 6 is more than the 4 slots, refused saying so" \
  'grep -q "the job holds: .* lists 4 slots on 2 nodes" "$tmp/err"'

# contrib/pbs/job.pbs as it is: its distc-launch is found in PATH (a wrapper
# that adds the testbed's ssh_config), its ./prog in PBS_O_WORKDIR.
mkdir -p "$tmp/bin"
printf '#!/bin/sh\nexec "%s" --ssh-config "%s" "$@"\n' "$L" "$CFG" >"$tmp/bin/distc-launch"
chmod +x "$tmp/bin/distc-launch"
# (a link: the build tree's relative rpath follows the real file)
ln -s "$PROG" "$tmp/job/prog"
PATH=$tmp/bin:$PATH timeout -k 5 120 bash "$JOB" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "contrib/pbs/job.pbs runs: 4 workers" \
  '[ "$rc" -eq 0 ] && [ "$(grep -c "^worker " "$tmp/out")" -eq 4 ] || { head -5 "$tmp/err"; false; }'
# The proxies end when their sessions close: give them 5 s.
left() { for _ in $(seq 50); do [ -z "$(driver_leftovers)" ] && return 0; sleep 0.1; done; return 1; }
check "nothing left on the job's nodes within 5 s" left
finish

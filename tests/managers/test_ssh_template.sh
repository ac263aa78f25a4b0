#!/usr/bin/env bash
# test_ssh_template.sh DISTC_LAUNCH SSH_PROG CONTRIB_SSH — contrib/ssh's
# hostfile and run.sh as they are, on the sshd testbed hosts node1 and
# node2 (their names exist only in the testbed's ssh_config, so the
# distc-launch that run.sh finds in PATH adds --ssh-config): 2 workers on
# each host, all in the directory of run.sh, nothing left behind.
set -u
L=${1:?usage: test_ssh_template.sh DISTC_LAUNCH SSH_PROG CONTRIB_SSH}
PROG=$2
TPL=$3
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib.sh
source "$SRC/../lib.sh"
# shellcheck source=tests/managers/drivers/ssh.sh
source "$SRC/drivers/ssh.sh"
chmod 755 "$tmp"
if ! driver_setup; then
  bad "the test hosts are available"
  finish
  exit 1
fi
trap 'driver_teardown; rm -rf "$tmp"' EXIT

mkdir -p "$tmp/run" "$tmp/bin"
cp "$TPL/hostfile" "$TPL/run.sh" "$tmp/run/"
# (a link: the build tree's relative rpath follows the real file)
ln -s "$PROG" "$tmp/run/prog"
printf '#!/bin/sh\nexec "%s" --ssh-config "%s" "$@"\n' "$L" "$TESTBED_SSH_CONFIG" >"$tmp/bin/distc-launch"
chmod +x "$tmp/bin/distc-launch"
cd /
PATH=$tmp/bin:$PATH timeout -k 5 120 sh "$tmp/run/run.sh" ./prog where >"$tmp/out" 2>"$tmp/err"
rc=$?
check "run.sh with the hostfile: exit status 0" '[ "$rc" -eq 0 ] || { head -5 "$tmp/err"; false; }'
check "4 workers, as the hostfile's slots say" '[ "$(grep -c "^worker " "$tmp/out")" -eq 4 ]'
# "worker ID HOST NETNS CWD ...": two hosts, two each
check "2 workers on each host" \
  '[ "$(awk "\$1 == \"worker\" { print \$3 }" "$tmp/out" | sort | uniq -c | awk "{ print \$1 }" | tr "\n" " ")" = "2 2 " ]'
check "every worker in the directory of run.sh" \
  '[ "$(awk -v d="$tmp/run" "\$1 == \"worker\" && \$5 == d" "$tmp/out" | wc -l)" -eq 4 ]'
PATH=$tmp/bin:$PATH timeout -k 5 120 sh "$tmp/run/run.sh" ./prog output >"$tmp/out" 2>&1
check "tagged output from the 4 workers" \
  '[ "$(grep -cP "From worker [2-5]:\t" "$tmp/out")" -ge 4 ] || { head -5 "$tmp/out"; false; }'
check "nothing left on the hosts" '[ -z "$(driver_leftovers)" ]'
finish

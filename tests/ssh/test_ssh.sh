#!/usr/bin/env bash
# test_ssh.sh DISTC_LAUNCH SSH_PROG TESTBED — the SSH manager against real
# OpenSSH servers (testbed.sh): launching, remote calls, per-host dir and
# exename, the environment allow list, host keys, authentication, every
# failure it must name, --tunnel through a firewall, distc_addprocs over SSH,
# and that killing the master or the launcher leaves nothing running on any
# test host.  Every wait is bounded; every process is checked by pid.
#
# Prints "ok"/"not ok" per check, then "N passed, M failed".
set -u
L=${1:?usage: test_ssh.sh DISTC_LAUNCH SSH_PROG TESTBED}
PROG=$2
TB=$3
case $L in /*) ;; *) L=$PWD/$L ;; esac
case $PROG in /*) ;; *) PROG=$PWD/$PROG ;; esac

passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $1"
  [ -n "${2:-}" ] && echo "#   $2"
  if [ -s "$T/err" ]; then sed 's/^/#   stderr: /' "$T/err" | head -15; fi
  if [ -s "$T/out" ]; then sed 's/^/#   stdout: /' "$T/out" | head -15; fi
}
skip() { skipped=$((skipped + 1)); echo "ok - $1 # SKIP $2"; }
check() { # name, then a command that must succeed
  local name=$1
  shift
  if "$@"; then ok "$name"; else not_ok "$name" "failed: $*"; fi
}

T=$(mktemp -d "${TMPDIR:-/tmp}/distc-ssh-test.XXXXXX")
started_testbed=0
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null
  if [ "$started_testbed" = 1 ]; then "$TB" stop; fi
  rm -rf "$T"
}
trap cleanup EXIT

# The test hosts are shared by every run on this machine, and this test
# checks that nothing but its own processes runs there: runs take turns.
exec 9>"${DISTC_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-testbed}.lock"
if ! flock -w 900 9; then
  echo "not ok - another run held the test hosts for 900 s"
  echo "0 passed, 1 failed"
  exit 1
fi

# The testbed: CI starts it once for every run; alone, this test starts and
# stops its own.
if ! "$TB" status; then
  "$TB" start || { echo "not ok - the testbed starts"; echo "0 passed, 1 failed"; exit 1; }
  started_testbed=1
fi
eval "$("$TB" env)"
CFG=$TESTBED_SSH_CONFIG
echo "# testbed: $TESTBED_MODE mode under $TESTBED_DIR"
if [ "$TESTBED_MODE" != netns ]; then
  echo "# NOTE: no network namespaces here: the test hosts are sshd instances"
  echo "#       on 127.0.0.x ports, and the firewall (--tunnel) case is skipped"
fi
unset SSH_CONNECTION SSH_CLIENT SSH_AUTH_SOCK DISPLAY
export -n SSH_AGENT_PID 2>/dev/null

addr_of() { awk -v h="$1" '$1 == "Host" { cur = $2 } cur == h && $1 == "HostName" { print $2; exit }' "$CFG"; }
N1=$(addr_of node1)
N2=$(addr_of node2)
N3=$(addr_of node3)

# Runs the launcher with the test's ssh_config and a safety timeout; sets
# rc, elapsed (ms), out and err.
launch() {
  local t0
  t0=$(date +%s%N)
  timeout -k 5 120 "$L" --ssh-config "$CFG" "$@" >"$T/out" 2>"$T/err"
  rc=$?
  elapsed=$((($(date +%s%N) - t0) / 1000000))
  collect
}

# Runs a command with a safety timeout; sets rc, out and err.
run() {
  timeout -k 5 120 "$@" >"$T/out" 2>"$T/err"
  rc=$?
  collect
  return "$rc"
}

# Keeps every run's stderr, for the sanitizer check at the end (remote
# processes' reports arrive there too, tagged with their host).
collect() { cat "$T/err" >>"$T/all_err"; }

# Workers per host in $T/out ("worker ID HOST NETNS CWD EXE PID env=[..]").
on_host() { awk -v h="$1" '$1 == "worker" && $3 == h' "$T/out" | wc -l; }

# A failure: exit status 1, the message names the host and says `text`.
fails_with() { # name, host, text
  if [ "$rc" -ne 1 ]; then
    not_ok "$1" "exit status $rc, wanted 1"
  elif ! grep -q "^distc-launch: $2: .*$3" "$T/err"; then
    not_ok "$1" "stderr lacks 'distc-launch: $2: ...$3'"
  else
    ok "$1"
  fi
}

# Pids in a test host's namespace other than its sshd listener.
strays() { # node
  [ "$TESTBED_MODE" = netns ] || return 0
  local sshd p
  sshd=$(cat "$TESTBED_DIR/$1/sshd.pid")
  for p in $(ip netns pids "$TESTBED_NS_PREFIX$1"); do
    [ "$p" = "$sshd" ] || echo "$p"
  done
}

# Waits up to $1 seconds until no test host runs anything but its sshd and
# none of the pids in $2 lives; says what is left otherwise.
nothing_left() {
  local limit=$1 pids=$2 i n left
  for ((i = 0; i < limit * 10; i++)); do
    left=""
    for n in node1 node2 node3; do left="$left $(strays "$n" | tr '\n' ' ')"; done
    for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
    [ -z "${left// /}" ] && return 0
    sleep 0.1
  done
  for p in $left; do
    echo "#   still running: $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
  done
  return 1
}

check "no stray process on the test hosts before the tests" nothing_left 5 ""

# ---- launching ------------------------------------------------------------

launch -p 2 --hosts node1:2,node2:2 "$PROG" where
if [ "$rc" -eq 0 ]; then ok "-p 2 --hosts node1:2,node2:2 runs"; else not_ok "-p 2 --hosts node1:2,node2:2 runs" "rc=$rc"; fi
check "2 workers on this host" [ "$(on_host local)" -eq 2 ]
check "2 workers on node1" [ "$(on_host "$N1")" -eq 2 ]
check "2 workers on node2" [ "$(on_host "$N2")" -eq 2 ]
check "local workers are ids 2 and 3, then node1's, then node2's" \
  bash -c "awk '\$1 == \"worker\" {print \$2, \$3}' '$T/out' | tr '\n' ' ' | grep -qx '2 local 3 local 4 $N1 5 $N1 6 $N2 7 $N2 '"
if [ "$TESTBED_MODE" = netns ]; then
  ns1=$(ip netns exec "${TESTBED_NS_PREFIX}node1" readlink /proc/self/ns/net)
  check "node1's workers run in node1's network namespace" \
    bash -c "[ \$(awk '\$1 == \"worker\" && \$4 == \"$ns1\"' '$T/out' | wc -l) -eq 2 ]"
fi
check "remote workers run in the master's directory" \
  bash -c "awk '\$1 == \"worker\" && \$3 != \"local\" {print \$5}' '$T/out' | grep -qvx '$PWD' && exit 1 || exit 0"

launch --hosts node1:2,node2:2 "$PROG" calls
check "remote calls, spawnat(ANY) and 4 MiB arrays on 2 hosts x 2 workers" \
  grep -qx "calls ok on 4 workers" "$T/out"

launch --hosts node1:1,node2:2 "$PROG" w2w
check "worker-to-worker calls between node1 and node2 (a direct link over TCP)" \
  grep -qx "w2w ok" "$T/out"
check "... from node1's worker to node2's, answered on node2" \
  bash -c "grep -Eq '^w2w [0-9]+ on $N1 .* -> [0-9]+ on $N2 ' '$T/out'"

launch -p 1 --hosts node1:2,node2:2 "$PROG" pmap
check "pmap over a local worker and 2 hosts x 2 workers gives every result, in order" \
  grep -qx "pmap ok" "$T/out"
check "... with items run on this host, on node1 and on node2" \
  bash -c "grep -Eq '^pmap host local [1-9]' '$T/out' && grep -Eq '^pmap host $N1 [1-9]' '$T/out' && grep -Eq '^pmap host $N2 [1-9]' '$T/out'"

launch --hosts node1:2,node2:2 "$PROG" darray
check "a distributed array over 2 hosts: chunk sums, reduce and gather are right" \
  grep -qx "darray ok over 4 owners" "$T/out"
check "... with its chunks on node1 and on node2" \
  bash -c "[ \$(grep -c '^chunk [0-9]* on $N1 ' '$T/out') -eq 2 ] && [ \$(grep -c '^chunk [0-9]* on $N2 ' '$T/out') -eq 2 ]"

launch --hosts node1:1,node2:1 "$PROG" output
check "remote worker output is tagged as for local workers" \
  bash -c "grep -qxF '      From worker 2:	hello from worker 2' '$T/out' && grep -qxF '      From worker 3:	hello from worker 3' '$T/out'"

launch -v --hosts node1:1,node2:1 "$PROG" where
check "workers on node1 dial the address this host has on node1's link" \
  grep -q "^distc-launch: \[node1\] .*its workers dial the master at ${TESTBED_MASTER_ADDR//./\\.}:" "$T/err"
if [ "$TESTBED_MODE" = netns ]; then
  check "workers on node2 dial this host's other address (multi-homed)" \
    grep -q "^distc-launch: \[node2\] .*its workers dial the master at 10\.231\.2\.1:" "$T/err"
fi
check "-v shows the remote command, with no secret in it" \
  bash -c "grep -q 'DISTC_ROLE=proxy' '$T/err' && ! grep -Eq '[0-9a-f]{64}' '$T/err'"
check "-v says --hosts chose the ssh manager" grep -q "cluster manager ssh (implied by --hosts)" "$T/err"

# ---- host specifications ---------------------------------------------------

launch --hosts root@node2:2222:2 "$PROG" where
check "user@host:port:N reaches node2's second sshd port with 2 workers" \
  bash -c "[ $rc -eq 0 ] && [ \$(awk '\$1 == \"worker\"' '$T/out' | wc -l) -eq 2 ]"
[ "$(id -un)" = root ] || echo "# (running as $(id -un); root@ above only works as root)"

cores_sh='p=$(cat /sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list 2>/dev/null | sort -u | wc -l); o=$(getconf _NPROCESSORS_ONLN); a=$(nproc 2>/dev/null || echo "$o"); [ "$p" -gt 0 ] 2>/dev/null || p=$o; c=$((p * a / o)); [ "$c" -ge 1 ] || c=1; echo "$c"'
want_cores=$(sh -c "$cores_sh")
launch --hosts node1:auto "$PROG" where
check "host:auto starts one worker per physical core of the host ($want_cores)" \
  bash -c "[ $rc -eq 0 ] && [ \$(awk '\$1 == \"worker\"' '$T/out' | wc -l) -eq $want_cores ]"

cat >"$T/hosts" <<EOF
# comment, blank line, Open MPI's and Julia's forms
node1 slots=2

2*node2   # trailing comment
EOF
launch --hostfile "$T/hosts" "$PROG" where
check "--hostfile with 'host slots=N' and 'N*host'" \
  bash -c "[ $rc -eq 0 ] && [ $(on_host "$N1") -eq 2 ] && [ $(on_host "$N2") -eq 2 ]"

for bad in 'node1:0' 'node1:x' 'node1:2:3:4' 'a@b@node1' 'node1,,node2' '[::1' 'no de'; do
  launch --hosts "$bad" "$PROG" where
  if [ "$rc" -eq 2 ] && grep -qF "'$bad'" "$T/err"; then
    ok "--hosts '$bad' is a usage error quoting it"
  else
    not_ok "--hosts '$bad' is a usage error quoting it" "rc=$rc"
  fi
done
printf 'node1 slots=2\nnode2 max_slots=4\n' >"$T/badhosts"
launch --hostfile "$T/badhosts" "$PROG" where
check "a bad host file line is a usage error naming FILE:LINE" \
  bash -c "[ $rc -eq 2 ] && grep -qF '$T/badhosts:2:' '$T/err'"
run "$L" -p 1 --manager local --tunnel "$PROG" where
rc=$?
check "an ssh option with another manager is a usage error" \
  bash -c "[ $rc -eq 2 ] && grep -q 'tunnel is an option of the ssh manager' '$T/err'"
launch --hosts node1 --max-connecting 0 "$PROG" where
check "--max-connecting 0 is a usage error" [ "$rc" -eq 2 ]
launch --hosts node1:1,node2:1 --max-connecting 1 "$PROG" where
check "--max-connecting 1 connects one host at a time and works" [ "$rc" -eq 0 ]

launch --dry-run --hosts node1:2,node2:auto "$PROG" where
check "--dry-run prints the remote commands and starts nothing" \
  bash -c "[ $rc -eq 0 ] && grep -q '^distc-launch: \[node1\] ssh node1 ' '$T/err' && grep -q 'auto' '$T/err' && [ ! -s '$T/out' ]"

# ---- per-host dir and exename ----------------------------------------------

mkdir -p "$T/d1" "$T/d2" "$T/alt"
cp "$PROG" "$T/alt/ssh_prog_copy"
cat >"$T/hosts2" <<EOF
node1:1 dir=$T/d1
node2:1 dir=$T/d2 exename=$T/alt/ssh_prog_copy
EOF
# The copy has no run path to libdistc: --env must reach the program's own
# start on the host, not only its workers.
libdir=$(dirname "$(dirname "$L")")
launch --hostfile "$T/hosts2" --env LD_LIBRARY_PATH="$libdir" "$PROG" where
check "dir= per host" \
  bash -c "[ $rc -eq 0 ] && awk '\$1 == \"worker\" && \$3 == \"$N1\" {print \$5}' '$T/out' | grep -qx '$T/d1'"
check "dir= and exename= per host" \
  bash -c "awk '\$1 == \"worker\" && \$3 == \"$N2\" {print \$5, \$6}' '$T/out' | grep -qx '$T/d2 $T/alt/ssh_prog_copy'"

# ---- environment ------------------------------------------------------------

XTEST_NOT=leaked DISPLAY=:9 SSH_AUTH_SOCK=/tmp/not-a-socket OPENBLAS_NUM_THREADS=3 \
  launch --hosts node1:1 --env XTEST_FWD=yes --env DISPLAY=:7 "$PROG" where
envline=$(awk '$1 == "worker" {print}' "$T/out")
check "--env reaches remote workers" grep -q "XTEST_FWD=yes" <<<"$envline"
check "the rest of the environment does not" bash -c "! grep -q XTEST_NOT <<<'$envline'"
check "DISPLAY is never forwarded, not even with --env" bash -c "! grep -q DISPLAY= <<<'$envline'"
check "SSH_AUTH_SOCK is not forwarded" bash -c "! grep -q 'SSH_AUTH_SOCK=/tmp/not-a-socket' <<<'$envline'"
check "the BLAS thread count of this environment is" grep -q "OPENBLAS_NUM_THREADS=3" <<<"$envline"
launch --hosts node1:1 "$PROG" where
check "remote workers get an automatic BLAS thread count" \
  grep -q "OPENBLAS_NUM_THREADS=[0-9]" <(awk '$1 == "worker"' "$T/out")

# ---- lifetime: nothing is left running -------------------------------------

# Starts `ssh_prog hang` on node1:2,node2:2 (+ 1 local); sets LPID, MPID and
# WPIDS (remote worker pids), or returns 1.
start_hang() {
  : >"$T/out"
  "$L" --ssh-config "$CFG" -p 1 --hosts node1:2,node2:2 "$PROG" hang >"$T/out" 2>"$T/err" &
  LPID=$!
  local i
  for ((i = 0; i < 200; i++)); do grep -q '^ready' "$T/out" && break; sleep 0.1; done
  grep -q '^ready' "$T/out" || return 1
  WPIDS=$(awk '$1 == "worker" {print $7}' "$T/out" | tr '\n' ' ')
  MPID=""
  for c in $(cat /proc/"$LPID"/task/*/children 2>/dev/null); do
    grep -q "$PROG" /proc/"$c"/cmdline 2>/dev/null || continue
    case " $WPIDS " in *" $c "*) ;; *) MPID=$c ;; esac
  done
  [ -n "$MPID" ] && [ "$(wc -w <<<"$WPIDS")" -eq 5 ]
}

secret_on_cmdline() { # any 64-hex-digit word on a command line or in an environment
  local p
  for p in $(for n in node1 node2; do strays "$n"; done) $WPIDS; do
    tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -Eq '^[0-9a-f]{64}$' && return 0
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -Eq '[0-9a-f]{64}' && return 0
  done
  return 1
}

if start_hang; then
  ok "hang program runs with 5 workers"
  if secret_on_cmdline; then
    not_ok "no secret on any remote command line or in any environment"
  else
    ok "no secret on any remote command line or in any environment"
  fi
  others=$(for n in node1 node2; do
    for p in $(strays "$n"); do
      c=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)
      case $c in "sshd: "* | "$PROG hang ") ;; *) echo "$p: $c" ;; esac
    done
  done)
  check "the remote processes are sshd's and the program's only" [ -z "$others" ]
  [ -z "$others" ] || echo "#   others: $others"
  kill -9 "$MPID"
  check "kill -9 of the master: nothing left on any host within 5 s" nothing_left 5 "$WPIDS $MPID"
  for ((i = 0; i < 50; i++)); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
  wait "$LPID"
  check "the launcher exits 137 after the master's SIGKILL" [ $? -eq 137 ]
else
  not_ok "hang program runs with 5 workers"
  kill -9 "$LPID" 2>/dev/null
fi

if start_hang; then
  kill -9 "$LPID"
  check "kill -9 of distc-launch: nothing left on any host within 5 s" nothing_left 5 "$WPIDS $MPID"
  wait "$LPID" 2>/dev/null
else
  not_ok "hang program runs (for kill -9 of the launcher)"
  kill -9 "$LPID" 2>/dev/null
fi

if start_hang; then
  kill -INT "$LPID"
  sleep 0.3
  kill -INT "$LPID" 2>/dev/null
  check "two interrupts: nothing left on any host within 5 s" nothing_left 5 "$WPIDS $MPID"
  wait "$LPID" 2>/dev/null
else
  not_ok "hang program runs (for interrupts)"
  kill -9 "$LPID" 2>/dev/null
fi

# ---- departures name their host ----------------------------------------------

# (Under ASan the worker must die of the signal, not of ASan's report.)
launch -p 1 --hosts node1:1,node2:1 --env ASAN_OPTIONS=handle_segv=0 "$PROG" segv
check "a remote worker's segfault fails its call naming the signal" grep -q "^segv ok" "$T/out"
check "... and the launcher reports it with its host" \
  grep -qE "^From worker 4: exited with signal 11 \(Segmentation fault\) on node2(, core dumped)?$" "$T/err"

# A stopped remote worker (SIGSTOP from the master: the test hosts share our
# pids) is lost after 2 silent 0.5 s intervals, and killed on its host by
# its proxy, told by the launcher (or, without one, by distc_addprocs'
# manager in the master).  The pids of a network namespace are not the
# master's to kill, although the host names match.
stop_killed_fast() { # the program saw the pid gone within 5 s
  local ms
  ms=$(awk '$1 == "stop" && $2 == "worker" {print $9}' "$T/out")
  [ -n "$ms" ] && [ "$ms" -lt 5000 ] && grep -q "^stop worker .* state [-Z] " "$T/out"
}
if [ "$TESTBED_MODE" = netns ]; then
  DISTC_HEARTBEAT_S=0.5 DISTC_HEARTBEAT_MISSES=2 \
    launch -v -p 1 --hosts node1:1,node2:1 "$PROG" stop
  check "a stopped remote worker's call fails as unresponsive" \
    bash -c "grep -qx 'stop ok' '$T/out' && grep -q '^stop call: rc=-94 .*unresponsive for .*killed on its host' '$T/out'"
  check "... the launcher has its manager kill it on its host" \
    grep -qx "distc-launch: worker 4 (index 2) is unresponsive; killing it on node2" "$T/err"
  check "... and it is gone within 5 s" stop_killed_fast
  DISTC_HEARTBEAT_S=0.5 DISTC_HEARTBEAT_MISSES=2 \
    run "$PROG" addprocs-stop node1:1,node2:1 "$CFG"
  check "distc_addprocs: a stopped remote worker is killed on its host too" \
    bash -c "grep -qx 'stop ok' '$T/out' && grep -q 'killed on its host' '$T/out'"
  check "... within 5 s" stop_killed_fast
  check "... leaving nothing running" nothing_left 5 ""
else
  skip "a stopped remote worker is killed on its host" "needs network namespaces (shared pids)"
fi

# ---- failures name the host and never hang ---------------------------------

launch --hosts node1:1,ghost:1 --timeout 2 "$PROG" where
if [ "$TESTBED_MODE" = netns ]; then
  fails_with "an unreachable host is named" ghost "unreachable"
else # nothing listens on ghost's port on loopback: refused, not silent
  fails_with "an unreachable host is named" ghost "cannot connect"
fi
check "... and fails within the timeout (2 s), not later (took ${elapsed} ms)" [ "$elapsed" -lt 4500 ]
check "... and leaves nothing running on the others" nothing_left 5 ""

launch --hosts nosuch.invalid --timeout 5 "$PROG" where
fails_with "an unknown host name is named" nosuch.invalid "cannot connect"

launch --hosts node1 --ssh-identity "$TESTBED_DIR/wrong_key" "$PROG" where
fails_with "a refused key is named" node1 "authentication refused"

# Host key mismatch: node1's entry holds another key of the same type.
sed "s|$TESTBED_DIR/known_hosts|$T/kh_bad|" "$CFG" >"$T/cfg_bad"
awk -v k="$(cut -d' ' -f1,2 "$TESTBED_DIR/wrong_key.pub")" \
  '$1 ~ /^\[?node1[],]/ { print $1, k; next } { print }' "$TESTBED_DIR/known_hosts" >"$T/kh_bad"
run "$L" --ssh-config "$T/cfg_bad" --hosts node1 "$PROG" where
rc=$?
fails_with "a host key mismatch is named" node1 "HOST KEY MISMATCH"
run "$L" --ssh-config "$T/cfg_bad" --accept-new-hostkeys --hosts node1 "$PROG" where
rc=$?
fails_with "--accept-new-hostkeys does not accept a changed key" node1 "HOST KEY MISMATCH"

# Unknown host: empty known_hosts, then --accept-new-hostkeys.
sed "s|$TESTBED_DIR/known_hosts|$T/kh_new|" "$CFG" >"$T/cfg_new"
: >"$T/kh_new"
run "$L" --ssh-config "$T/cfg_new" --hosts node1 "$PROG" where
rc=$?
fails_with "an unknown host key is refused by default" node1 "unknown host"
check "... with a hint at --accept-new-hostkeys" grep -q -- "--accept-new-hostkeys" "$T/err"
run "$L" --ssh-config "$T/cfg_new" --accept-new-hostkeys --hosts node1 "$PROG" where
rc=$?
check "--accept-new-hostkeys accepts it and runs" [ "$rc" -eq 0 ]
check "... and records it in known_hosts" grep -q "ssh-ed25519" "$T/kh_new"
run "$L" --ssh-config "$T/cfg_new" --hosts node1 "$PROG" where
check "... so the next run needs no option" [ $? -eq 0 ]

launch --hosts node1 --exename /nonexistent/ssh_prog "$PROG" where
fails_with "a missing exename is named" node1 "is not there"
cp "$PROG" "$T/noexec"
chmod 644 "$T/noexec"
printf 'node1 exename=%s\n' "$T/noexec" >"$T/hosts3"
launch --hostfile "$T/hosts3" "$PROG" where
fails_with "an exename that is not executable is named" node1 "not executable"
printf 'node2 dir=/nonexistent/dir\n' >"$T/hosts4"
launch --hostfile "$T/hosts4" "$PROG" where
fails_with "a missing dir is named" node2 "does not exist"
launch --hosts node1 /bin/true
fails_with "a program that is not a libdistc program is named" node1 "before it answered"
printf '#!/bin/sh\necho "a line on stderr" >&2\nexit 3\n' >"$T/noisy"
chmod +x "$T/noisy"
launch --hosts node1 --exename "$T/noisy" "$PROG" where
fails_with "its exit status is given" node1 "exited with status 3 before it answered"
check "what a remote program writes to stderr is shown, tagged with its host" \
  grep -qxF "      From node1:	a line on stderr" "$T/err"

# A failure on one host leaves nothing on the others.
printf 'node1:2\nnode2:2 exename=/nonexistent/prog\n' >"$T/hosts5"
launch --hostfile "$T/hosts5" "$PROG" where
fails_with "one failing host fails the start" node2 "is not there"
check "... and nothing is left running on node1" nothing_left 5 ""

launch --hosts node1:2,ghost:2 --allow-partial --timeout 2 "$PROG" where
check "--allow-partial starts the hosts that work" \
  bash -c "[ $rc -eq 0 ] && [ $(on_host "$N1") -eq 2 ] && [ \$(awk '\$1 == \"worker\"' '$T/out' | wc -l) -eq 2 ]"
check "... and says which it left out" grep -q "leaving out ghost" "$T/err"

if [ "$TESTBED_MODE" = netns ]; then
  launch --hosts node3:1 --timeout 4 "$PROG" where
  fails_with "a host that cannot reach the master is named" node3 "cannot reach the master"
  check "... with the hint at --master-addr and --tunnel" \
    bash -c "grep -q -- '--master-addr' '$T/err' && grep -q -- '--tunnel' '$T/err'"
  check "... within the timeout (took ${elapsed} ms)" [ "$elapsed" -lt 4500 ]
  launch --hosts node1:1 --master-addr 10.231.2.1 --timeout 4 "$PROG" where
  fails_with "--master-addr that node1 cannot reach is named" node1 "cannot reach the master at 10.231.2.1"
  launch --hosts node1:1,node2:1 --master-addr "$TESTBED_MASTER_ADDR" "$PROG" where
  check "--master-addr reachable from every host works" [ "$rc" -eq 0 ]

  # ---- --tunnel through node3's firewall -------------------------------------
  launch --hosts node3:2 --tunnel "$PROG" calls
  check "--tunnel: remote calls and 4 MiB arrays from a host that cannot reach us" \
    grep -qx "calls ok on 2 workers" "$T/out"
  launch --hosts node1:1,node3:1 --tunnel "$PROG" pmap
  check "--tunnel: pmap over node1 and the firewalled node3" \
    bash -c "grep -qx 'pmap ok' '$T/out' && grep -Eq '^pmap host $N3 [1-9]' '$T/out'"
  launch -p 1 --hosts node1:1,node3:1 --tunnel "$PROG" where
  check "--tunnel with a local worker and two hosts" \
    bash -c "[ $rc -eq 0 ] && [ $(on_host local) -eq 1 ] && [ $(on_host "$N1") -eq 1 ] && [ $(on_host "$N3") -eq 1 ]"
  check "--tunnel leaves nothing running" nothing_left 5 ""
  launch --hosts node1:2223:1 --tunnel "$PROG" where
  fails_with "--tunnel to a server that refuses forwarding is named" node1:2223 "refused to forward a port back"
else
  skip "a host that cannot reach the master" "needs network namespaces (firewall)"
  skip "--tunnel through a firewall" "needs network namespaces (firewall)"
fi

# ---- authentication through ssh-agent ---------------------------------------

if command -v ssh-agent >/dev/null && command -v ssh-add >/dev/null; then
  grep -v IdentityFile "$CFG" >"$T/cfg_agent"
  eval "$(ssh-agent -s -a "$T/agent.sock")" >/dev/null
  agent_pid=$SSH_AGENT_PID
  ssh-add -q "$TESTBED_DIR/id_ed25519" 2>/dev/null
  run "$L" --ssh-config "$T/cfg_agent" --hosts node1:1 "$PROG" where
  check "authentication through ssh-agent" [ $? -eq 0 ]
  kill "$agent_pid"
  agent_pid=""
  unset SSH_AUTH_SOCK SSH_AGENT_PID
  run "$L" --ssh-config "$T/cfg_agent" --hosts node1:1 "$PROG" where
  rc=$?
  fails_with "without the agent (and no identity file) authentication is refused" node1 "authentication refused"
  run "$L" --ssh-config "$T/cfg_agent" --ssh-identity "$TESTBED_DIR/id_ed25519" --hosts node1:1 "$PROG" where
  check "--ssh-identity authenticates" [ $? -eq 0 ]
else
  skip "authentication through ssh-agent" "ssh-agent is not installed"
fi

# ---- distc_addprocs over SSH, without distc-launch ----------------------------

run "$PROG" addprocs node1:2,node2:1 "$CFG"
rc=$?
check "distc_addprocs(hosts=node1:2,node2:1) adds 3 workers" \
  bash -c "[ $rc -eq 0 ] && grep -qx 'added 3' '$T/out'"
check "... on the right hosts" bash -c "[ $(on_host "$N1") -eq 2 ] && [ $(on_host "$N2") -eq 1 ]"
check "... which answer remote calls" grep -qx "calls ok on 3 workers" "$T/out"
check "... and distc_rmprocs removes them" grep -qx "after rmprocs 0 workers" "$T/out"
check "... leaving nothing running" nothing_left 5 ""
if [ "$TESTBED_MODE" = netns ]; then
  run "$PROG" addprocs node3:1 "$CFG" tunnel
  rc=$?
  check "distc_addprocs with the 'tunnel' option through node3's firewall" \
    bash -c "[ $rc -eq 0 ] && grep -qx 'calls ok on 1 workers' '$T/out'"
fi
run "$PROG" addprocs node1:1 "$CFG" bogus-option
rc=$?
check "distc_addprocs refuses an option the manager does not take" \
  bash -c "[ $rc -eq 3 ] && grep -q \"no option 'bogus-option'\" '$T/err'"

check "no stray process on the test hosts after the tests" nothing_left 5 ""
cat "$T/err" >>"$T/all_err"
check "no sanitizer report from any process on any host" \
  bash -c "! grep -E 'Sanitizer|runtime error:' '$T/all_err'"

echo "$passed passed, $failed failed${skipped:+, $skipped skipped}"
[ "$failed" -eq 0 ]

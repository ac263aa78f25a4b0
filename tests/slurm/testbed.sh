#!/usr/bin/env bash
# testbed.sh — a real SLURM 22.05 cluster (slurmctld, slurmd, munged)
# on this one machine, for the tests of the slurm manager (tests/slurm).
# .ci/run starts it once and stops it on exit; the tests start it when it
# is not running (and stop it again).  It runs beside tests/ssh/testbed.sh
# (10.231.0.0/16); this one takes 10.232.0.0/24.
#
#   testbed.sh start    # idempotent: starts what is not running yet,
#                             # waits until every node is idle and has run a
#                             # job step (job "testbed-probe")
#   testbed.sh stop     # stops every process by pid, removes namespaces,
#                             # links and the state directory
#   testbed.sh status   # exit 0 when the controller answers and every
#                             # node is up (idle, mixed or allocated)
#   testbed.sh env      # prints shell assignments for the tests
#
# Everything lives under one directory, $DISTC_SLURM_TESTBED_DIR (default
# ${TMPDIR:-/tmp}/distc-slurm-testbed).  With root and network namespaces
# (the normal case, and CI's) the hosts are:
#
#   login  the root namespace, 10.232.0.1 on bridge distc-sl-br.  Clients
#          (srun, sbatch, salloc, scancel, qsub, programs linked with
#          libslurm) run here; nothing of the testbed listens here.
#   ctl    netns distc-sl-ctl, 10.232.0.2, hostname "ctl": munged and
#          slurmctld (port 6817).
#   node1  netns distc-sl-node1, 10.232.0.11, hostname "node1": slurmd
#          (port 6818), CPUs=8.
#   node2  netns distc-sl-node2, 10.232.0.12, hostname "node2": the same.
#
# Each host has its own network and UTS namespace, so `srun hostname` prints
# node1/node2 and a node reaches the login side at 10.232.0.1 and the other
# nodes at their addresses.  Inside ctl and the nodes, /etc/hosts is replaced
# (by a bind mount private to their mount namespace) with one naming login,
# ctl and the nodes; the root namespace's /etc/hosts is not touched, so the
# login side cannot resolve "node1" (use the addresses from `env`).
#
# Partition "debug" (default) holds all nodes; no accounting, no cgroups
# (proctrack/linuxproc, task/none), select/cons_tres with CR_CPU.  Nodes
# declare more CPUs than the machine has (SlurmdParameters=config_overrides).
# Jobs run as the submitting user (root in CI).  munged uses a key generated
# into the state directory and a socket there (slurm.conf AuthInfo=socket=...).
#
# Settings read at the first start (stop to change them):
#   DISTC_SLURM_TESTBED_NODES      number of compute nodes, 1..9 (default 2)
#   DISTC_SLURM_TESTBED_CPUS       CPUs each node declares (default 8)
#   DISTC_SLURM_TESTBED_SPANK_PBS  1: load the spank_pbs plugin, which gives
#                                  jobs PBS_JOBID, PBS_O_WORKDIR, ... (default 0)
#   DISTC_SLURM_TESTBED_MODE       "local" forces the fallback below
#
# Without namespaces (not root, or `ip netns` fails) the fallback is one node
# "node1" in the root namespace at 127.0.0.1 (slurmctld port 16817, slurmd
# 16818), named after this machine's hostname; mode=local is recorded so
# tests can say what they could not check (several nodes, own hostnames).
# slurmd itself needs root; without it start fails.
#
# Clients find the cluster through SLURM_CONF, which `env` exports.  Nothing
# outside the state directory is changed except the namespaces and links
# named above.
set -u
umask 022

DIR=${DISTC_SLURM_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-slurm-testbed}
SBIN=/usr/sbin
NS_PREFIX=distc-sl-
BR=distc-sl-br
SUBNET=10.232.0
PARTITION=debug
CTL_START_TIMEOUT_S=15
NODES_START_TIMEOUT_S=30
# Daemons get a clean environment: jobs inherit the submitter's, not theirs.
DAEMON_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C)

log() { echo "slurm-testbed: $*" >&2; }
die() { log "$*"; exit 1; }

# --- settings ---------------------------------------------------------------

load_settings() {
  MODE=netns NODE_COUNT=2 CPUS=8 SPANK_PBS=0
  # shellcheck disable=SC1091
  [ -f "$DIR/settings" ] && . "$DIR/settings"
  NODES=()
  local i
  for i in $(seq "$NODE_COUNT"); do NODES+=("node$i"); done
}

have_netns() {
  [ "$(id -u)" -eq 0 ] || return 1
  [ "${DISTC_SLURM_TESTBED_MODE:-}" != local ] || return 1
  command -v ip >/dev/null && command -v unshare >/dev/null || return 1
  ip netns add "${NS_PREFIX}probe" 2>/dev/null || return 1
  ip netns del "${NS_PREFIX}probe"
}

write_settings() {
  local mode=local n=${DISTC_SLURM_TESTBED_NODES:-2} c=${DISTC_SLURM_TESTBED_CPUS:-8}
  case $n in [1-9]) ;; *) die "DISTC_SLURM_TESTBED_NODES must be 1..9, not '$n'" ;; esac
  case $c in '' | *[!0-9]*) die "DISTC_SLURM_TESTBED_CPUS must be a number, not '$c'" ;; esac
  if have_netns; then mode=netns; else n=1; fi
  {
    echo "MODE=$mode"
    echo "NODE_COUNT=$n"
    echo "CPUS=$c"
    echo "SPANK_PBS=${DISTC_SLURM_TESTBED_SPANK_PBS:-0}"
  } >"$DIR/settings"
}

node_index() { echo "${1#node}"; }

node_addr() {
  if [ "$MODE" = netns ]; then echo "$SUBNET.1$(node_index "$1")"; else echo 127.0.0.1; fi
}

ctl_addr() { if [ "$MODE" = netns ]; then echo "$SUBNET.2"; else echo 127.0.0.1; fi; }
login_addr() { if [ "$MODE" = netns ]; then echo "$SUBNET.1"; else echo 127.0.0.1; fi; }
ctl_port() { if [ "$MODE" = netns ]; then echo 6817; else echo 16817; fi; }
slurmd_port() { if [ "$MODE" = netns ]; then echo 6818; else echo 16818; fi; }

# Runs a command on host $1 (ctl or a node): in its namespaces, with its
# hostname and its /etc/hosts.  `ip netns exec` gives the command a mount
# namespace of its own, so the bind mount stays there.
on_host() {
  local h=$1
  shift
  if [ "$MODE" = netns ]; then
    # shellcheck disable=SC2016 # expanded by the inner sh
    "${DAEMON_ENV[@]}" ip netns exec "$NS_PREFIX$h" unshare --uts sh -c \
      'mount --bind "$1" /etc/hosts || exit 1; hostname "$2" || exit 1; shift 2; exec "$@"' \
      sh "$DIR/hosts" "$h" "$@"
  else
    "${DAEMON_ENV[@]}" "$@"
  fi
}

# --- network ----------------------------------------------------------------

# Refuses to touch a machine whose own networks overlap ours.
check_subnet_free() {
  local r
  r=$(ip -o addr show 2>/dev/null | grep -F " $SUBNET." | grep -Ev "^[0-9]+: ($BR|dsl-[a-z0-9]+)[ @]" || true)
  [ -z "$r" ] || die "$SUBNET.0/24 is already in use on this machine ($r); not starting"
  r=$(ip route show 2>/dev/null | grep -E "^${SUBNET//./\\.}\.0/24" | grep -v "dev $BR " || true)
  [ -z "$r" ] || die "a route for $SUBNET.0/24 already exists ($r); not starting"
}

# ns_up NAME ADDR: namespace NAME with eth0 at ADDR on the bridge.
ns_up() {
  local h=$1 addr=$2
  if ! ip netns list | grep -qw "$NS_PREFIX$h"; then
    ip netns add "$NS_PREFIX$h" || die "cannot create namespace $NS_PREFIX$h"
  fi
  ip -n "$NS_PREFIX$h" link set lo up
  if ! ip link show "dsl-$h" >/dev/null 2>&1; then
    ip link add "dsl-$h" type veth peer name eth0 netns "$NS_PREFIX$h" ||
      die "cannot create the veth pair of $h"
    ip link set "dsl-$h" master "$BR"
    ip link set "dsl-$h" up
    ip -n "$NS_PREFIX$h" addr add "$addr/24" dev eth0
    ip -n "$NS_PREFIX$h" link set eth0 up
  fi
}

net_up() {
  local n
  check_subnet_free
  if ! ip link show "$BR" >/dev/null 2>&1; then
    ip link add "$BR" type bridge || die "cannot create bridge $BR"
    ip addr add "$SUBNET.1/24" dev "$BR"
    ip link set "$BR" up
  fi
  ns_up ctl "$(ctl_addr)"
  for n in "${NODES[@]}"; do ns_up "$n" "$(node_addr "$n")"; done
}

# --- configuration ----------------------------------------------------------

write_config() {
  local n short
  short=$(hostname -s)
  mkdir -p "$DIR/munge" "$DIR/ctl/state"
  for n in "${NODES[@]}"; do mkdir -p "$DIR/$n/spool"; done
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    echo "$(login_addr) login $short"
    echo "$(ctl_addr) ctl"
    for n in "${NODES[@]}"; do echo "$(node_addr "$n") $n"; done
  } >"$DIR/hosts"
  # slurmd 22.05 always loads a cgroup plugin, even with proctrack/linuxproc
  # and task/none, and its autodetection fails where /sys/fs/cgroup is not
  # mounted (as under `ip netns exec`, which remounts /sys).  Naming v1
  # explicitly only loads the plugin: nothing here uses it, and no cgroup
  # is created on any machine, whatever its cgroup version.
  echo "CgroupPlugin=cgroup/v1" >"$DIR/cgroup.conf"
  if [ "$SPANK_PBS" = 1 ]; then
    echo "optional spank_pbs.so" >"$DIR/plugstack.conf"
  else
    : >"$DIR/plugstack.conf"
  fi
  {
    echo "# Written by testbed.sh; see its header."
    echo "ClusterName=distc"
    if [ "$MODE" = netns ]; then
      echo "SlurmctldHost=ctl($(ctl_addr))"
    else
      echo "SlurmctldHost=$short($(ctl_addr))"
    fi
    echo "SlurmctldPort=$(ctl_port)"
    echo "SlurmdPort=$(slurmd_port)"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$DIR/munge/munge.socket"
    echo "StateSaveLocation=$DIR/ctl/state"
    echo "SlurmctldPidFile=$DIR/ctl/slurmctld.pid"
    echo "SlurmctldLogFile=$DIR/ctl/slurmctld.log"
    echo "SlurmdSpoolDir=$DIR/%n/spool"
    echo "SlurmdPidFile=$DIR/%n/slurmd.pid"
    echo "SlurmdLogFile=$DIR/%n/slurmd.log"
    echo "PlugStackConfig=$DIR/plugstack.conf"
    echo "MailProg=/bin/true"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "MpiDefault=none"
    echo "SchedulerType=sched/builtin"
    # Start a batch job at once rather than up to 3 s later.
    echo "SchedulerParameters=batch_sched_delay=0"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU"
    echo "SlurmdParameters=config_overrides"
    echo "ReturnToService=2"
    echo "SlurmctldTimeout=10"
    echo "SlurmdTimeout=20"
    echo "KillWait=2"
    echo "InactiveLimit=0"
    echo "MinJobAge=300"
    echo "SlurmctldDebug=info"
    echo "SlurmdDebug=info"
    for n in "${NODES[@]}"; do
      if [ "$MODE" = netns ]; then
        echo "NodeName=$n NodeAddr=$(node_addr "$n") CPUs=$CPUS RealMemory=1024 State=UNKNOWN"
      else
        echo "NodeName=$n NodeHostname=$short NodeAddr=$(node_addr "$n") CPUs=$CPUS RealMemory=1024 State=UNKNOWN"
      fi
    done
    echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
  } >"$DIR/slurm.conf"
}

# munged wants every directory above its socket searchable by all.
check_path_searchable() {
  local p=$1 m
  while [ "$p" != / ] && [ -n "$p" ]; do
    m=$(stat -c %A "$p" 2>/dev/null) || return 0
    case ${m:9:1} in x | t) ;; *) die "munged needs o+x on $p (above the state directory $DIR); choose another DISTC_SLURM_TESTBED_DIR" ;; esac
    p=$(dirname "$p")
  done
}

# --- daemons ----------------------------------------------------------------

# True while process $1 runs.  A zombie counts as gone: a daemon's parent is
# PID 1, which may take its time to reap it.
proc_alive() {
  local st
  st=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ]
}

pid_alive() { # pid_alive PIDFILE
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && proc_alive "$pid"
}

wait_for() { # wait_for SECONDS COMMAND...: true once COMMAND succeeds
  local end=$((SECONDS + $1))
  shift
  while :; do
    "$@" && return 0
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

log_tail() { # the last lines of each file given that exists
  local f
  for f in "$@"; do [ -s "$f" ] && tail -n 5 "$f" | sed "s|^|  ${f##*/}: |" >&2; done
  return 0
}

# Credentials carry munged's "origin" address, which slurmctld turns into a
# job's AllocNode; all of them are made by clients on the login side.
start_munged() {
  local d=$DIR/munge
  pid_alive "$d/munged.pid" && return 0
  rm -f "$DIR/probed"
  [ -f "$d/munge.key" ] || /usr/sbin/mungekey --create --keyfile="$d/munge.key" ||
    die "mungekey failed"
  chmod 600 "$d/munge.key"
  rm -f "$d/munged.pid"
  if ! on_host ctl /usr/sbin/munged --socket="$d/munge.socket" --key-file="$d/munge.key" \
    --pid-file="$d/munged.pid" --log-file="$d/munged.log" --seed-file="$d/munged.seed" \
    --origin="$(login_addr)" </dev/null >>"$d/start.log" 2>&1; then
    log_tail "$d/start.log" "$d/munged.log"
    die "munged did not start; see $d/munged.log"
  fi
  wait_for 5 test -S "$d/munge.socket" || die "munged made no socket; see $d/munged.log"
}

start_slurmctld() {
  pid_alive "$DIR/ctl/slurmctld.pid" && return 0
  rm -f "$DIR/probed"
  rm -f "$DIR/ctl/slurmctld.pid"
  if ! on_host ctl "$SBIN/slurmctld" -f "$DIR/slurm.conf" </dev/null >>"$DIR/ctl/start.log" 2>&1; then
    log_tail "$DIR/ctl/start.log" "$DIR/ctl/slurmctld.log"
    die "slurmctld did not start; see $DIR/ctl/slurmctld.log"
  fi
}

start_slurmd() {
  local n=$1
  pid_alive "$DIR/$n/slurmd.pid" && return 0
  rm -f "$DIR/probed"
  rm -f "$DIR/$n/slurmd.pid"
  if ! on_host "$n" "$SBIN/slurmd" -f "$DIR/slurm.conf" -N "$n" </dev/null >>"$DIR/$n/start.log" 2>&1; then
    log_tail "$DIR/$n/start.log" "$DIR/$n/slurmd.log"
    die "slurmd of $n did not start; see $DIR/$n/slurmd.log"
  fi
}

ctl_answers() { SLURM_CONF=$DIR/slurm.conf scontrol ping >/dev/null 2>&1; }

# True when every node is up: idle, mixed or allocated, and responding.
nodes_up() {
  local out
  out=$(SLURM_CONF=$DIR/slurm.conf sinfo -h -N -p "$PARTITION" -o '%N %T' 2>/dev/null) || return 1
  [ "$(echo "$out" | grep -cE '^node[0-9]+ (idle|mixed|allocated|completing)$')" -eq "${#NODES[@]}" ]
}

no_jobs_running() {
  local out
  out=$(SLURM_CONF=$DIR/slurm.conf squeue -h -t running,completing,suspended 2>/dev/null) || return 1
  [ -z "$out" ]
}

# --- commands ---------------------------------------------------------------

cmd_start() {
  local n
  if [ ! -x "$SBIN/slurmctld" ] || [ ! -x "$SBIN/slurmd" ]; then
    die "slurmctld/slurmd are missing (Debian: slurmctld slurmd slurm-client)"
  fi
  [ -x /usr/sbin/munged ] || die "munged is missing (Debian: munge)"
  command -v sinfo >/dev/null || die "the SLURM clients are missing (Debian: slurm-client)"
  [ "$(id -u)" -eq 0 ] || die "slurmd runs jobs as their users and needs root"
  mkdir -p "$DIR" || die "cannot create $DIR"
  chmod 755 "$DIR" # munged: the socket's directories must be searchable
  check_path_searchable "$DIR"
  [ -f "$DIR/settings" ] || write_settings
  load_settings
  if [ "$MODE" = local ]; then
    log "mode local (no network namespaces, or DISTC_SLURM_TESTBED_MODE=local): one node on 127.0.0.1"
  fi
  [ "$MODE" = netns ] && net_up
  write_config
  start_munged
  start_slurmctld
  wait_for "$CTL_START_TIMEOUT_S" ctl_answers || {
    log_tail "$DIR/ctl/slurmctld.log"
    die "slurmctld does not answer after ${CTL_START_TIMEOUT_S}s; see $DIR/ctl/slurmctld.log"
  }
  for n in "${NODES[@]}"; do start_slurmd "$n"; done
  wait_for "$NODES_START_TIMEOUT_S" nodes_up || {
    SLURM_CONF=$DIR/slurm.conf sinfo -N >&2
    die "nodes not idle after ${NODES_START_TIMEOUT_S}s; see $DIR/node*/slurmd.log"
  }
  # Idle nodes do not yet prove that a job runs (munge, slurmstepd, the
  # connections back to the login side): run one step on every node.
  if [ ! -f "$DIR/probed" ]; then
    SLURM_CONF=$DIR/slurm.conf timeout 30 srun -Q -J testbed-probe -t 1 \
      -N "${#NODES[@]}" --ntasks-per-node=1 true </dev/null ||
      die "a job step on every node failed; see $DIR/ctl/slurmctld.log and $DIR/node*/slurmd.log"
    touch "$DIR/probed"
  fi
  log "up ($MODE): ctl ${NODES[*]} under $DIR"
}

# Kills the pids given, TERM then (after $1 tenths of a second) KILL.
kill_pids() {
  local tenths=$1 p alive
  shift
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null
  while [ "$tenths" -gt 0 ]; do
    tenths=$((tenths - 1))
    alive=0
    for p in "$@"; do proc_alive "$p" && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null
  return 0
}

pids_of_host() { # the pid files' pids, and in netns mode every process there
  local h=$1 f
  shift
  for f in "$@"; do [ -f "$f" ] && cat "$f"; done
  if ip netns list 2>/dev/null | grep -qw "$NS_PREFIX$h"; then
    ip netns pids "$NS_PREFIX$h" 2>/dev/null
  fi
}

# Our namespaces that exist, whatever the settings say (the state directory
# may be gone).
our_namespaces() {
  ip netns list 2>/dev/null | awk -v p="$NS_PREFIX" 'index($1, p) == 1 { print substr($1, length(p) + 1) }'
}

cmd_stop() {
  local n hosts
  load_settings
  if [ "$MODE" = local ] && pid_alive "$DIR/ctl/slurmctld.pid"; then
    # No namespace to empty: let SLURM end the jobs' processes first.
    SLURM_CONF=$DIR/slurm.conf scancel --full --user="$(id -un)" 2>/dev/null
    wait_for 10 no_jobs_running
  fi
  hosts=$({ printf '%s\n' "${NODES[@]}"; our_namespaces; } | grep -v '^ctl$' | sort -u)
  # Compute nodes first (slurmd, slurmstepd, job processes), then ctl.
  for n in $hosts; do
    # shellcheck disable=SC2046
    kill_pids 30 $(pids_of_host "$n" "$DIR/$n/slurmd.pid")
  done
  # slurmctld saves its state on TERM: give it longer.
  # shellcheck disable=SC2046
  kill_pids 60 $(pids_of_host ctl "$DIR/ctl/slurmctld.pid")
  # shellcheck disable=SC2046
  kill_pids 30 $(pids_of_host ctl "$DIR/munge/munged.pid")
  for n in ctl $hosts; do
    if ip netns list 2>/dev/null | grep -qw "$NS_PREFIX$n"; then
      ip netns del "$NS_PREFIX$n" 2>/dev/null || log "could not delete namespace $NS_PREFIX$n"
    fi
    # The veth pair goes with the namespace; the root end may linger a moment.
    ip link del "dsl-$n" 2>/dev/null
  done
  ip link del "$BR" 2>/dev/null
  rm -rf "$DIR"
  return 0
}

cmd_status() {
  [ -f "$DIR/settings" ] || return 1
  load_settings
  local n
  pid_alive "$DIR/munge/munged.pid" || return 1
  pid_alive "$DIR/ctl/slurmctld.pid" || return 1
  for n in "${NODES[@]}"; do pid_alive "$DIR/$n/slurmd.pid" || return 1; done
  ctl_answers && nodes_up
}

cmd_env() {
  [ -f "$DIR/settings" ] || die "not started"
  load_settings
  local n addrs=""
  for n in "${NODES[@]}"; do addrs="$addrs $(node_addr "$n")"; done
  echo "export SLURM_CONF=$DIR/slurm.conf"
  echo "TESTBED_SLURM_DIR=$DIR"
  echo "TESTBED_SLURM_MODE=$MODE"
  echo "TESTBED_SLURM_NODES='${NODES[*]}'"
  echo "TESTBED_SLURM_NODE_ADDRS='${addrs# }'"
  echo "TESTBED_SLURM_CPUS_PER_NODE=$CPUS"
  echo "TESTBED_SLURM_PARTITION=$PARTITION"
  echo "TESTBED_SLURM_LOGIN_ADDR=$(login_addr)"
  echo "TESTBED_SLURM_CTL_ADDR=$(ctl_addr)"
  echo "TESTBED_SLURM_NS_PREFIX=$NS_PREFIX"
  echo "TESTBED_SLURM_SPANK_PBS=$SPANK_PBS"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: testbed.sh start|stop|status|env" >&2; exit 2 ;;
esac

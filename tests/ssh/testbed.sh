#!/usr/bin/env bash
# testbed.sh — real OpenSSH servers as test hosts on this one machine.
#
#   testbed.sh start    # idempotent: starts what is not running yet
#   testbed.sh stop     # stops every process by pid, removes namespaces,
#                       # links and the state directory
#   testbed.sh status   # exit 0 when every sshd answers
#   testbed.sh env      # prints shell assignments for the tests (see below)
#
# Everything lives under one directory, $DISTC_TESTBED_DIR (default
# ${TMPDIR:-/tmp}/distc-testbed).  With root and network namespaces
# (the normal case, and CI's) the hosts are:
#
#   node1  netns distc-tb-node1  10.231.0.11 on bridge distc-tb-br
#   node2  netns distc-tb-node2  10.231.0.12 on the bridge, and 10.231.2.2
#          on its own veth pair (root side 10.231.2.1); ssh_config sends
#          "node2" to 10.231.2.2, so node1's and node2's connections have
#          different local addresses here, as on a multi-homed master.
#          Its sshd also listens on port 2222.
#          (node1's also listens on port 2223, where it refuses port
#          forwarding.)
#   node3  netns distc-tb-node3  10.231.0.13 on the bridge; its firewall
#          drops every TCP connection it opens except over loopback, so it
#          can answer ssh but cannot reach the master (the --tunnel case).
#   ghost  10.231.0.99: nothing there (an unreachable host).
#
# The root namespace holds 10.231.0.1 on the bridge.  All traffic stays
# between the root namespace and these namespaces; nothing is routed or
# forwarded anywhere else.
#
# Without namespaces (not root, or `ip netns` fails) the fallback is one
# sshd per host on 127.0.0.{11,12,13} ports 22011..22013 (node2 also 2222 on
# 127.0.0.12), with mode=loopback recorded so tests can say what they could
# not check (the firewall case).
#
# Each host's login sessions get HOME=<state dir>/nodeN/home (sshd SetEnv),
# so the machine's own ~/.bashrc does not run on the "remote" hosts.
#
# Files for the tests: ssh_config (Host node1..3, ghost, all User root or
# the current user, IdentityFile id_ed25519, UserKnownHostsFile known_hosts),
# id_ed25519 (authorized), wrong_key (not authorized), known_hosts
# (every host key).  Nothing outside the state directory is changed except
# the namespaces and links named above and, for sshd's privilege
# separation, /run/sshd if it was missing (removed again by stop).
set -u
umask 022

DIR=${DISTC_TESTBED_DIR:-${TMPDIR:-/tmp}/distc-testbed}
SSHD=${DISTC_SSHD:-/usr/sbin/sshd}
NODES=(node1 node2 node3)
NS_PREFIX=distc-tb-
BR=distc-tb-br
SUBNET=10.231.0
NODE2_NET=10.231.2
START_TIMEOUT_S=10

log() { echo "testbed: $*" >&2; }
die() { log "$*"; exit 1; }

have_netns() {
  [ "$(id -u)" -eq 0 ] || return 1
  [ "${DISTC_TESTBED_MODE:-}" != loopback ] || return 1
  command -v ip >/dev/null || return 1
  ip netns add "${NS_PREFIX}probe" 2>/dev/null || return 1
  ip netns del "${NS_PREFIX}probe"
}

mode() { cat "$DIR/mode" 2>/dev/null; }

node_index() { case $1 in node1) echo 1 ;; node2) echo 2 ;; node3) echo 3 ;; esac; }

node_addr() { # the address ssh_config gives the node
  local i
  i=$(node_index "$1")
  if [ "$(mode)" = netns ]; then
    if [ "$1" = node2 ]; then echo "$NODE2_NET.2"; else echo "$SUBNET.1$i"; fi
  else
    echo "127.0.0.1$i"
  fi
}

node_port() {
  if [ "$(mode)" = netns ]; then echo 22; else echo "2201$(node_index "$1")"; fi
}

in_node() { # runs a command inside the node's namespace (netns mode)
  local n=$1
  shift
  if [ "$(mode)" = netns ]; then ip netns exec "$NS_PREFIX$n" "$@"; else "$@"; fi
}

sshd_alive() {
  local pid
  pid=$(cat "$DIR/$1/sshd.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# True when a TCP connect to addr:port from inside the node succeeds.
port_open() {
  in_node "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}

# Refuses to touch a machine whose own networks overlap ours.
check_subnet_free() {
  local r
  # Ours (from an earlier start) are the bridge and the dtb-* links.
  r=$(ip -o addr show 2>/dev/null | grep -E " 10\.231\.(0|2)\." | grep -Ev "^[0-9]+: ($BR|dtb-[a-z0-9-]+) " || true)
  [ -z "$r" ] || die "10.231.0.0/24 or 10.231.2.0/24 is already in use on this machine ($r); not starting"
  r=$(ip route show 2>/dev/null | grep -E "^10\.231\.(0|2)\.0/24" | grep -Ev "dev ($BR|dtb-[a-z0-9-]+) " || true)
  [ -z "$r" ] || die "a route for 10.231.x.0/24 already exists ($r); not starting"
}

make_keys() {
  [ -f "$DIR/id_ed25519" ] && return 0
  ssh-keygen -q -t ed25519 -N '' -C distc-testbed -f "$DIR/id_ed25519" || die "ssh-keygen failed"
  ssh-keygen -q -t ed25519 -N '' -C distc-testbed-wrong -f "$DIR/wrong_key" || die "ssh-keygen failed"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  chmod 600 "$DIR/authorized_keys"
}

make_node() {
  local n=$1 d=$DIR/$1 user
  mkdir -p "$d/home"
  [ -f "$d/ssh_host_ed25519_key" ] ||
    ssh-keygen -q -t ed25519 -N '' -C "$n" -f "$d/ssh_host_ed25519_key" || die "ssh-keygen failed"
  user=$(id -un)
  {
    echo "ListenAddress $(node_addr "$n"):$(node_port "$n")"
    if [ "$n" = node2 ]; then echo "ListenAddress $(node_addr "$n"):2222"; fi
    if [ "$n" = node1 ]; then echo "ListenAddress $(node_addr "$n"):2223"; fi
    echo "HostKey $d/ssh_host_ed25519_key"
    echo "PidFile $d/sshd.pid"
    echo "AuthorizedKeysFile $DIR/authorized_keys"
    echo "PermitRootLogin prohibit-password"
    echo "PubkeyAuthentication yes"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "UsePAM no"
    echo "StrictModes no"
    echo "AllowTcpForwarding yes"
    echo "X11Forwarding no"
    echo "PrintMotd no"
    echo "LogLevel VERBOSE"
    echo "AllowUsers $user"
    # A host of its own has a home of its own: the login shell must not
    # run this machine's ~/.bashrc (whatever it holds) as if it were theirs.
    echo "SetEnv HOME=$d/home"
    if [ "$n" = node1 ]; then
      # node1:2223 refuses port forwarding (what --tunnel needs).
      echo "Match LocalPort 2223"
      echo "  AllowTcpForwarding no"
    fi
  } >"$d/sshd_config"
}

# The known_hosts line(s) of a node: its name, its address, and the
# bracketed form for the non-default ports.
known_hosts_lines() {
  local n=$1 key addr port
  key=$(cut -d' ' -f1,2 "$DIR/$n/ssh_host_ed25519_key.pub")
  addr=$(node_addr "$n")
  port=$(node_port "$n")
  if [ "$port" = 22 ]; then echo "$n,$addr $key"; else echo "[$n]:$port,[$addr]:$port $key"; fi
  if [ "$n" = node2 ]; then echo "[$n]:2222,[$addr]:2222 $key"; fi
  if [ "$n" = node1 ]; then echo "[$n]:2223,[$addr]:2223 $key"; fi
  if [ "$(mode)" = netns ] && [ "$n" = node2 ]; then echo "$SUBNET.12 $key"; fi
}

make_client_files() {
  local n user
  user=$(id -un)
  : >"$DIR/known_hosts"
  for n in "${NODES[@]}"; do known_hosts_lines "$n" >>"$DIR/known_hosts"; done
  {
    for n in "${NODES[@]}"; do
      echo "Host $n"
      echo "  HostName $(node_addr "$n")"
      echo "  Port $(node_port "$n")"
    done
    echo "Host ghost"
    if [ "$(mode)" = netns ]; then echo "  HostName $SUBNET.99"; else echo "  HostName 127.0.0.99"; echo "  Port 1"; fi
    echo "Host *"
    echo "  User $user"
    echo "  IdentityFile $DIR/id_ed25519"
    echo "  UserKnownHostsFile $DIR/known_hosts"
    echo "  GlobalKnownHostsFile /dev/null"
    echo "  StrictHostKeyChecking yes"
  } >"$DIR/ssh_config"
}

net_up() {
  local n i
  check_subnet_free
  if ! ip link show "$BR" >/dev/null 2>&1; then
    ip link add "$BR" type bridge || die "cannot create bridge $BR"
    ip addr add "$SUBNET.1/24" dev "$BR"
    ip link set "$BR" up
  fi
  for n in "${NODES[@]}"; do
    i=$(node_index "$n")
    if ! ip netns list | grep -qw "$NS_PREFIX$n"; then
      ip netns add "$NS_PREFIX$n" || die "cannot create namespace $NS_PREFIX$n"
    fi
    ip -n "$NS_PREFIX$n" link set lo up
    if ! ip link show "dtb-$n-br" >/dev/null 2>&1; then
      ip link add "dtb-$n-br" type veth peer name eth0 netns "$NS_PREFIX$n" ||
        die "cannot create the veth pair of $n"
      ip link set "dtb-$n-br" master "$BR"
      ip link set "dtb-$n-br" up
      ip -n "$NS_PREFIX$n" addr add "$SUBNET.1$i/24" dev eth0
      ip -n "$NS_PREFIX$n" link set eth0 up
    fi
  done
  if ! ip link show dtb-node2-p2p >/dev/null 2>&1; then
    ip link add dtb-node2-p2p type veth peer name eth1 netns "${NS_PREFIX}node2" ||
      die "cannot create node2's second veth pair"
    ip addr add "$NODE2_NET.1/24" dev dtb-node2-p2p
    ip link set dtb-node2-p2p up
    ip -n "${NS_PREFIX}node2" addr add "$NODE2_NET.2/24" dev eth1
    ip -n "${NS_PREFIX}node2" link set eth1 up
  fi
  # node3: answers ssh (replies are not SYNs) but opens no TCP connection
  # except over its own loopback.
  if ! ip netns exec "${NS_PREFIX}node3" nft list table inet distc_tb >/dev/null 2>&1; then
    ip netns exec "${NS_PREFIX}node3" nft -f - <<'EOF' || die "cannot set node3's firewall (nft)"
table inet distc_tb {
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "lo" accept
    tcp flags & (syn | ack) == syn drop
  }
}
EOF
  fi
}

start_sshd() {
  local n=$1
  sshd_alive "$n" && return 0
  rm -f "$DIR/$n/sshd.pid"
  in_node "$n" "$SSHD" -f "$DIR/$n/sshd_config" -E "$DIR/$n/sshd.log" ||
    die "sshd of $n did not start; see $DIR/$n/sshd.log"
}

wait_ready() {
  local n=$1 t
  for t in $(seq $((START_TIMEOUT_S * 10))); do
    if sshd_alive "$n" && port_open "$n" "$(node_addr "$n")" "$(node_port "$n")"; then
      return 0
    fi
    sleep 0.1
  done
  die "sshd of $n is not answering on $(node_addr "$n"):$(node_port "$n") after ${START_TIMEOUT_S}s; see $DIR/$n/sshd.log"
}

cmd_start() {
  command -v ssh-keygen >/dev/null || die "ssh-keygen is missing (Debian: openssh-client)"
  [ -x "$SSHD" ] || die "$SSHD is missing (Debian: openssh-server)"
  mkdir -p "$DIR" || die "cannot create $DIR"
  chmod 700 "$DIR"
  if [ ! -f "$DIR/mode" ]; then
    if have_netns; then echo netns >"$DIR/mode"; else echo loopback >"$DIR/mode"; fi
  fi
  if [ "$(mode)" = loopback ]; then
    log "network namespaces unavailable; falling back to sshd on 127.0.0.x ports (no firewall case)"
  fi
  # sshd insists on its privilege separation directory.
  if [ ! -d /run/sshd ] && [ "$(id -u)" -eq 0 ]; then
    mkdir -p /run/sshd && chmod 755 /run/sshd && touch "$DIR/created-run-sshd"
  fi
  [ "$(mode)" = netns ] && net_up
  make_keys
  local n
  for n in "${NODES[@]}"; do make_node "$n"; done
  make_client_files
  for n in "${NODES[@]}"; do start_sshd "$n"; done
  for n in "${NODES[@]}"; do wait_ready "$n"; done
  log "up ($(mode)): ${NODES[*]} under $DIR"
}

# Kills the pids given, TERM then KILL, bounded.
kill_pids() {
  local p t alive
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null
  for t in $(seq 30); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null
  return 0
}

cmd_stop() {
  local n pids
  for n in "${NODES[@]}"; do
    pids=""
    if [ -f "$DIR/$n/sshd.pid" ]; then pids=$(cat "$DIR/$n/sshd.pid"); fi
    # Every process left in the namespace (sessions, anything they started).
    if ip netns list 2>/dev/null | grep -qw "$NS_PREFIX$n"; then
      pids="$pids $(ip netns pids "$NS_PREFIX$n" 2>/dev/null | tr '\n' ' ')"
    fi
    # shellcheck disable=SC2086
    kill_pids $pids
  done
  for n in "${NODES[@]}"; do
    if ip netns list 2>/dev/null | grep -qw "$NS_PREFIX$n"; then
      ip netns del "$NS_PREFIX$n" 2>/dev/null || log "could not delete namespace $NS_PREFIX$n"
    fi
    # The veth pair goes with the namespace; the root end may linger a moment.
    ip link del "dtb-$n-br" 2>/dev/null
  done
  ip link del dtb-node2-p2p 2>/dev/null
  ip link del "$BR" 2>/dev/null
  if [ -f "$DIR/created-run-sshd" ]; then rmdir /run/sshd 2>/dev/null; fi
  rm -rf "$DIR"
  return 0
}

cmd_status() {
  [ -f "$DIR/mode" ] || return 1
  local n
  for n in "${NODES[@]}"; do
    sshd_alive "$n" || return 1
    port_open "$n" "$(node_addr "$n")" "$(node_port "$n")" || return 1
  done
  return 0
}

cmd_env() {
  [ -f "$DIR/mode" ] || die "not started"
  echo "TESTBED_DIR=$DIR"
  echo "TESTBED_MODE=$(mode)"
  echo "TESTBED_SSH_CONFIG=$DIR/ssh_config"
  echo "TESTBED_NS_PREFIX=$NS_PREFIX"
  if [ "$(mode)" = netns ]; then
    echo "TESTBED_MASTER_ADDR=$SUBNET.1"
  else
    echo "TESTBED_MASTER_ADDR=127.0.0.1"
  fi
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: testbed.sh start|stop|status|env" >&2; exit 2 ;;
esac

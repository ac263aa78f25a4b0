#!/usr/bin/env bash
# conformance.sh MANAGER DISTC_LAUNCH CONFORM_PROG — what every cluster
# manager must do, run against one (drivers/MANAGER.sh says how to reach
# its hosts; a new manager joins with its driver and one line in
# meson.build):
#   N workers with the given --dir, --exename and --env; tagged output from
#   each; a worker killed with SIGKILL is reported; the master killed →
#   nothing left on any host; a signal to distc-launch reaches the master
#   and ends everything; --dry-run prints and starts nothing; an option the
#   manager does not take is refused naming it; a missing executable is an
#   error naming the host.  Every wait is bounded.
set -u
M=${1:?usage: conformance.sh MANAGER DISTC_LAUNCH CONFORM_PROG}
L=$2
PROG=$3
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib.sh
source "$SRC/../lib.sh"
# shellcheck source=/dev/null
source "$SRC/drivers/$M.sh"
chmod 755 "$tmp"
N=3

if ! driver_setup; then
  bad "$M: its hosts are available"
  finish
  exit 1
fi
trap 'driver_teardown; rm -rf "$tmp"' EXIT
driver_args "$N"

# Runs the launcher bounded; sets rc; output in $tmp/out, $tmp/err.
launch() {
  timeout -k 5 120 "$L" "${DRIVER_ARGS[@]}" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
}
say_why() { sed 's/^/#   /' "$tmp/err" | head -8; }

# Waits up to $1 tenths of a second until none of the pids in $2 lives and
# the driver sees nothing left on its hosts.
nothing_left() {
  local p left
  for _ in $(seq "$1"); do
    left="$(driver_leftovers | tr '\n' ' ')"
    for p in $2; do alive "$p" && left="$left $p"; done
    [ -z "${left// /}" ] && return 0
    sleep 0.1
  done
  echo "#   still running: $left"
  return 1
}

# ---- N workers, with the given dir, exename and environment ---------------
mkdir -p "$tmp/work"
cp "$PROG" "$tmp/prog-copy"
# The copy has lost the build tree's relative rpath: name the library's
# directory for the workers, wherever they run.
libdir=$(dirname "$(ldd "$PROG" | awk '$1 ~ /^libdistc/ { print $3 }')")
launch --dir "$tmp/work" --exename "$tmp/prog-copy" --env XTEST_CONFORM=yes \
  --env LD_LIBRARY_PATH="$libdir" "$PROG" where
check "$M: exit status 0" '[ "$rc" -eq 0 ] || { say_why; false; }'
check "$M: $N workers" '[ "$(grep -c "^worker " "$tmp/out")" -eq "$N" ]'
check "$M: every worker in --dir" \
  '[ "$(awk -v d="$tmp/work" "\$1 == \"worker\" && \$4 == d" "$tmp/out" | wc -l)" -eq "$N" ]'
check "$M: every worker runs --exename" \
  '[ "$(awk -v e="$tmp/prog-copy" "\$1 == \"worker\" && \$5 == e" "$tmp/out" | wc -l)" -eq "$N" ]'
check "$M: every worker has the --env entry" \
  '[ "$(awk "\$1 == \"worker\" && \$6 == \"yes\"" "$tmp/out" | wc -l)" -eq "$N" ]'

# ---- output, tagged with the worker ----------------------------------------
launch "$PROG" output
all=$(cat "$tmp/out" "$tmp/err")
tagged=0
for id in $(seq 2 $((N + 1))); do
  grep -qP "From worker $id:\tconform-output $id\$" <<<"$all" && tagged=$((tagged + 1))
done
check "$M: output of all $N workers, each tagged" '[ "$rc" -eq 0 ] && [ "$tagged" -eq "$N" ]'

# ---- a worker killed with SIGKILL is reported -------------------------------
# (to the master as a failed call; by distc-launch -v with its signal)
launch -v "$PROG" kill
victim=$(awk '$1 == "conform-killed" { print $2 }' "$tmp/out")
vpid=$(awk -v id="$victim" '$1 == "worker" && $2 == id { print $3 }' "$tmp/out")
check "$M: the master's call to the killed worker fails" \
  'grep -qE "^conform-killed [0-9]+ rc=-[0-9]+" "$tmp/out"'
check "$M: the killed worker is reported with its signal" \
  'grep -q "worker $((victim - 2)) (pid $vpid) was killed by signal 9" "$tmp/err" || { say_why; false; }'

# ---- the master killed: nothing left anywhere --------------------------------
hang() { # starts the hanging program; sets lpid, mpid, wpids
  timeout -k 5 120 "$L" "${DRIVER_ARGS[@]}" "$PROG" hang >"$tmp/out" 2>"$tmp/err" &
  lpid=$!
  wait_for "^conform-ready" 300 "$tmp/out"
  mpid=$(awk '$1 == "conform-ready" { print $2 }' "$tmp/out")
  wpids=$(awk '$1 == "worker" { print $3 }' "$tmp/out" | tr '\n' ' ')
}
hang
check "$M: hang: $N workers up" '[ -n "$mpid" ] && [ "$(echo $wpids | wc -w)" -eq "$N" ]'
[ -n "$mpid" ] && kill -KILL "$mpid"
check "$M: master killed: nothing left on any host within 15 s" \
  'nothing_left 150 "$lpid $mpid $wpids"'
wait "$lpid" 2>/dev/null

# ---- a signal to distc-launch reaches the master and ends everything -------
hang
kill -TERM "$lpid"
check "$M: SIGTERM to distc-launch: nothing left within 15 s" \
  'nothing_left 150 "$lpid $mpid $wpids"'
wait "$lpid"
rc=$?
check "$M: distc-launch exits 128+SIGTERM" '[ "$rc" -eq 143 ] || { echo "#   rc=$rc"; say_why; false; }'

# ---- --dry-run prints and starts nothing ------------------------------------
rm -f "$tmp/marker"
launch --dry-run --env CONFORM_MARKER="$tmp/marker" "$PROG" where
check "$M: --dry-run exits 0" '[ "$rc" -eq 0 ] || { say_why; false; }'
check "$M: --dry-run prints the master's command" 'grep -q "^distc-launch: \[master\] " "$tmp/err"'
sleep 0.3
check "$M: --dry-run starts nothing" '[ ! -e "$tmp/marker" ] && [ -z "$(driver_leftovers)" ]'

# ---- an option the manager does not take, refused naming it ---------------
timeout -k 5 60 env -u DISTC_ROLE "$PROG" bogus "$M" >"$tmp/out" 2>"$tmp/err"
check "$M: an option it does not take is refused naming the manager" \
  'grep -q "rc=-[0-9]* the $M manager takes no option .bogus-option." "$tmp/out" || { cat "$tmp/out"; false; }'

# ---- a missing executable: an error naming the host -------------------------
launch --exename /nonexistent/conform_prog "$PROG" where
check "$M: missing executable: exit status 1 or 2" '[ "$rc" -eq 1 ] || [ "$rc" -eq 2 ]'
check "$M: missing executable: the message names it and the host" \
  'grep -E "/nonexistent/conform_prog" "$tmp/err" | grep -qE "$DRIVER_HOST" || { say_why; false; }'
check "$M: missing executable: nothing left" 'nothing_left 100 ""'

finish

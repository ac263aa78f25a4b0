#!/bin/bash
# test_options.sh DISTC_LAUNCH — tests of distc-launch that need no libdistc
# program: the command line, dry runs, and supervision of programs that are
# not linked with libdistc or only pretend to be (a shell script that speaks
# the launcher's side of the contract in manager.h).
#
# Prints one "ok"/"not ok" line per check, then "N passed, M failed"; exits
# non-zero when anything failed.
set -u

L=${1:?usage: test_options.sh path/to/distc-launch}
case $L in /*) ;; *) L=$PWD/$L ;; esac

T=$(mktemp -d "${TMPDIR:-/tmp}/distc-launch-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok - $1"
}
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $1"
  shift
  local l
  for l in "$@"; do echo "#   $l"; done
  if [ -s "$T/err" ]; then sed 's/^/#   stderr: /' "$T/err" | head -20; fi
}
check() { # name, then a command that must succeed
  local name=$1
  shift
  if "$@"; then ok "$name"; else not_ok "$name" "failed: $*"; fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Runs the launcher with a safety timeout; sets rc, and out/err files.
launch() {
  timeout -k 5 30 "$L" "$@" >"$T/out" 2>"$T/err"
  rc=$?
}

# A usage error: exit status 2 and one "distc-launch: <problem>; <what to
# do>" line on stderr that contains the given text.
usage_error() {
  local name=$1 text=$2
  shift 2
  launch "$@"
  local first
  first=$(head -n 1 "$T/err")
  if [ "$rc" -ne 2 ]; then
    not_ok "$name" "exit status $rc, wanted 2"
  elif [[ $first != "distc-launch: "*"; "* ]]; then
    not_ok "$name" "message is not 'distc-launch: <problem>; <what to do>'"
  elif ! grep -qF -- "$text" "$T/err"; then
    not_ok "$name" "message lacks '$text'"
  elif [ -s "$T/out" ]; then
    not_ok "$name" "wrote to stdout"
  else
    ok "$name"
  fi
}

# Pids of the children of $1, now.
children_of() {
  cat /proc/"$1"/task/*/children 2>/dev/null || pgrep -P "$1"
}

# True when none of the given pids is alive (by pid, never by name).
all_gone() {
  local p
  for p in "$@"; do
    if kill -0 "$p" 2>/dev/null; then
      echo "# pid $p is still alive: $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"
      return 1
    fi
  done
  return 0
}

# Waits for the background launcher $1 with a limit; sets rc.
wait_launcher() {
  local lp=$1 i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$lp" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$lp" 2>/dev/null; then
    kill -KILL "$lp"
    echo "# launcher $lp hung; killed"
  fi
  wait "$lp"
  rc=$?
}

# ---- version and help ------------------------------------------------------

launch --version
check "--version prints 'distc-launch 0.1.0'" \
  test "$rc" -eq 0 -a "$(cat "$T/out")" = "distc-launch 0.1.0"
launch -V
check "-V is --version" test "$rc" -eq 0 -a "$(cat "$T/out")" = "distc-launch 0.1.0"
launch --help
check "--help prints usage on stdout, exit 0" \
  grep -q "^usage: distc-launch \[options\] PROGRAM" "$T/out"
for opt in --procs --dir --exename --env --timeout --heartbeat --manager --bind \
  --blas-threads --verbose --dry-run --help --version; do
  if ! grep -qF -- "$opt" "$T/out"; then
    not_ok "--help mentions $opt"
    continue
  fi
  ok "--help mentions $opt"
done
launch -h
check "-h is --help" test "$rc" -eq 0 -a -s "$T/out"

# ---- usage errors (exit 2) -------------------------------------------------

touch "$T/not-executable"
chmod 644 "$T/not-executable"
mkdir -p "$T/a-directory"

# Host files: only a regular file is read, and only so much of it; a
# directory, a device or a FIFO is the same usage error as a missing file,
# and none of them hangs.
usage_error "--hostfile missing" "--hostfile $T/no-such-file: No such file" \
  --dry-run --hostfile "$T/no-such-file" /bin/true
usage_error "--hostfile DIR" "is a directory" \
  --dry-run --hostfile "$T/a-directory" /bin/true
t0=$(now_ms)
usage_error "--hostfile /dev/zero" "is a device, not a regular file" \
  --dry-run --hostfile /dev/zero /bin/true
check "--hostfile /dev/zero: at once ($(($(now_ms) - t0)) ms)" \
  test $(($(now_ms) - t0)) -lt 3000
mkfifo "$T/a-fifo"
t0=$(now_ms)
usage_error "--hostfile FIFO" "is a FIFO, not a regular file" \
  --dry-run --hostfile "$T/a-fifo" /bin/true
check "--hostfile FIFO: at once ($(($(now_ms) - t0)) ms)" \
  test $(($(now_ms) - t0)) -lt 3000
head -c 2000000 /dev/zero | tr '\0' '#' >"$T/huge-hostfile"
usage_error "--hostfile of 2 MB" "too large for a host list" \
  --dry-run --hostfile "$T/huge-hostfile" /bin/true

usage_error "-p 0" "-p wants a positive number of workers or 'auto', got '0'" -p 0 /bin/true
usage_error "-p abc" "got 'abc'" -p abc /bin/true
usage_error "-p -3" "got '-3'" -p -3 /bin/true
usage_error "-p 1.5" "got '1.5'" -p 1.5 /bin/true
usage_error "-p without a value" "-p needs a value" -p
usage_error "--procs= empty" "got ''" --procs= /bin/true
usage_error "unknown long option" "unknown option '--frobnicate'; see distc-launch --help" --frobnicate /bin/true
usage_error "unknown short option" "unknown option '-x'" -x /bin/true
usage_error "flag given a value" "--bind takes no value" --bind=yes /bin/true
usage_error "no arguments" "no program to run" 
usage_error "options but no program" "no program to run" -p 2 -v
usage_error "program not in PATH" "not found in PATH" -p 1 distc-no-such-program-xyz
usage_error "program path does not exist" "No such file or directory" -p 1 ./distc-no-such-program
usage_error "program not executable" "is not executable" -p 1 "$T/not-executable"
usage_error "program is a directory" "is a directory" -p 1 "$T/a-directory"
usage_error "--env without '='" "--env wants K=V, got 'FOO'" --env FOO /bin/true
usage_error "--env with empty key" "--env wants K=V" --env =x /bin/true
usage_error "--timeout abc" "--timeout wants a number of seconds > 0, got 'abc'" --timeout abc /bin/true
usage_error "--timeout 0" "--timeout wants" --timeout 0 /bin/true
usage_error "--timeout -1" "--timeout wants" --timeout=-1 /bin/true
usage_error "--timeout without a value" "--timeout needs a value" --timeout
usage_error "--blas-threads 0" "--blas-threads wants" --blas-threads 0 /bin/true
usage_error "--heartbeat abc" "--heartbeat wants seconds between heartbeats" --heartbeat abc /bin/true
usage_error "--heartbeat -1" "--heartbeat wants" --heartbeat=-1 /bin/true
usage_error "--dir that does not exist" "--dir" --dir "$T/nowhere" /bin/true
usage_error "--exename not found" "--exename distc-no-such-program-xyz not found" \
  --exename distc-no-such-program-xyz /bin/true
usage_error "--manager unknown" "unknown cluster manager 'nosuch' (from --manager); use one of: local" \
  --manager nosuch /bin/true
DISTC_MANAGER=nosuch usage_error "\$DISTC_MANAGER unknown" \
  "unknown cluster manager 'nosuch' (from \$DISTC_MANAGER)" /bin/true
usage_error "--launcher unknown" "unknown launcher 'nosuch' (from --launcher); use one of: spawn, ssh" \
  --launcher nosuch /bin/true
usage_error "an option of another manager, named" \
  "--hosts is an option of the ssh manager, not of local; drop it, or use --manager ssh" \
  --manager local --hosts node1 /bin/true
launch --dry-run --manager ssh --launcher spawn --hosts node1:1 /bin/true
check "--launcher spawn refuses other hosts, naming one" \
  test "$rc" -eq 1 -a "$(grep -c 'the spawn launcher starts workers on this host only, not on node1' "$T/err")" -eq 1
launch --help
check "--help lists every manager option, from the halves' tables" \
  bash -c "grep -q -- '--hosts LIST' '$T/out' && grep -q -- '--tunnel ' '$T/out' && grep -q -- '--launcher NAME' '$T/out' && grep -q 'known: local, ssh' '$T/out'"

# ---- dry runs ---------------------------------------------------------------

if command -v hwloc-calc >/dev/null 2>&1; then
  cores=$(hwloc-calc --number-of core machine:0)
elif command -v lstopo-no-graphics >/dev/null 2>&1; then
  cores=$(lstopo-no-graphics --only core | wc -l)
else
  cores=
fi

# The program of a dry run must not start: it would leave this file.
cat >"$T/marker.sh" <<'EOF'
#!/bin/sh
touch "$MARKER"
EOF
chmod +x "$T/marker.sh"
export MARKER=$T/started

worker_lines() { grep -E '^distc-launch: \[worker [0-9]+\] ' "$T/err"; }

env -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS \
  "$L" --dry-run -v -p 3 --env FOO='a b' ./marker.sh x 'y z' >"$T/out" 2>"$T/err"
rc=$?
check "dry run exits 0" test "$rc" -eq 0
check "dry run starts nothing" test ! -e "$T/started"
check "dry run -v names the manager" grep -q '^distc-launch: cluster manager local (' "$T/err"
check "dry run -p 3 prints 3 worker commands" test "$(worker_lines | wc -l)" -eq 3
for i in 0 1 2; do
  line=$(grep -F "[worker $i] " "$T/err")
  check "worker $i has DISTC_WORKER_INDEX=$i" grep -q " DISTC_WORKER_INDEX=$i " <<<"$line"
  check "worker $i has DISTC_ROLE=worker" grep -q " DISTC_ROLE=worker " <<<"$line"
  check "worker $i has DISTC_SECRET_FD=3" grep -q " DISTC_SECRET_FD=3 " <<<"$line"
  check "worker $i has DISTC_MASTER and DISTC_PARENT_PID" \
    grep -qE " DISTC_MASTER=[^ ]+ .*DISTC_PARENT_PID=[0-9]+ " <<<"$line"
  check "worker $i has the --env entry, quoted" grep -qF " FOO='a b' " <<<"$line"
  check "worker $i command is cd DIR && ... PROGRAM ARGS" \
    grep -qE "\] cd $T && .* $T/marker.sh x 'y z'\$" <<<"$line"
  if [ -n "$cores" ]; then
    blas=$((cores / 3))
    [ "$blas" -lt 1 ] && blas=1
    check "worker $i has OPENBLAS_NUM_THREADS=$blas (cores $cores / 3)" \
      grep -q " OPENBLAS_NUM_THREADS=$blas OMP_NUM_THREADS=$blas " <<<"$line"
  fi
done
check "no secret on any command line" bash -c "! grep -qi secret= '$T/err'"
check "dry run prints the master command" \
  grep -qE '^distc-launch: \[master\] cd .* DISTC_ROLE=master .*DISTC_NWORKERS=3 .*DISTC_TIMEOUT=60 ' "$T/err"

launch --dry-run -p 2 --blas-threads 5 /bin/true
check "--blas-threads 5 sets both counts" \
  test "$(worker_lines | grep -c ' OPENBLAS_NUM_THREADS=5 OMP_NUM_THREADS=5 ')" -eq 2
OPENBLAS_NUM_THREADS=9 launch --dry-run -p 2 --env OMP_NUM_THREADS=4 /bin/true
check "a user's thread counts win over the automatic ones" \
  test "$(worker_lines | grep -c 'OPENBLAS_NUM_THREADS')" -eq 0 -a \
  "$(worker_lines | grep -o 'OMP_NUM_THREADS=[0-9]*' | sort -u)" = "OMP_NUM_THREADS=4"
launch --dry-run --procs=2 --timeout=2.5 --dir="$T/a-directory" --exename=/bin/echo /bin/true
check "--opt=VAL forms" test "$rc" -eq 0 -a "$(worker_lines | wc -l)" -eq 2
check "--exename runs on the workers, the program on the master" \
  test "$(worker_lines | grep -c ' /bin/echo$')" -eq 2
check "--dir is the working directory" test "$(grep -c "cd $T/a-directory &&" "$T/err")" -eq 3
check "--timeout reaches the master" grep -q ' DISTC_TIMEOUT=2.5 ' "$T/err"
launch --dry-run -p 1 --heartbeat 5 --heartbeat 0.25 /bin/true
check "--heartbeat reaches the master, the later one wins" \
  test "$(grep -c ' DISTC_HEARTBEAT_S=0.25 ' "$T/err")" -eq 2 -a "$(grep -c 'DISTC_HEARTBEAT_S=5' "$T/err")" -eq 0
launch --dry-run -p4 -- /bin/true -p 9
check "-p4 and -- work; the program's own options are its own" \
  test "$rc" -eq 0 -a "$(worker_lines | wc -l)" -eq 4 -a "$(worker_lines | grep -c ' /bin/true -p 9$')" -eq 4
launch --dry-run -p 2 --bind /bin/true
check "--bind names a CPU per worker" test "$(worker_lines | grep -c '# bound to CPU [0-9]')" -eq 2

if [ -n "$cores" ]; then
  launch --dry-run -p auto /bin/true
  check "-p auto starts one worker per core ($cores)" test "$(worker_lines | wc -l)" -eq "$cores"
  launch --dry-run /bin/true
  check "no -p is -p auto" test "$(worker_lines | wc -l)" -eq "$cores"
else
  echo "# skipped -p auto: neither hwloc-calc nor lstopo-no-graphics"
fi

# ---- programs that never connect -------------------------------------------

launch -p 2 /bin/true
check "/bin/true: exit 1" test "$rc" -eq 1
check "/bin/true: says the worker exited before connecting, with the hint" \
  grep -qE '^distc-launch: worker [0-9]+ \(pid [0-9]+\) exited with status 0 before connecting to the master; is /bin/true linked with libdistc and does it call distc_init\(\) first\?' "$T/err"

start=$(now_ms)
"$L" -p 2 --timeout 1 sleep 30 >"$T/out" 2>"$T/err" &
lp=$!
sleep 0.5
kids=$(children_of "$lp")
wait_launcher "$lp"
took=$(($(now_ms) - start))
check "sleep --timeout 1: exit 1" test "$rc" -eq 1
check "sleep --timeout 1: gives up within 3.5 s (took ${took} ms)" test "$took" -lt 3500
check "sleep --timeout 1: says so, with the hint" \
  grep -qE '^distc-launch: no worker connected within 1 s; is sleep linked with libdistc .*raise --timeout if the hosts are slow' "$T/err"
check "sleep --timeout 1: the launcher had master and 2 workers" test "$(echo $kids | wc -w)" -eq 3
check "sleep --timeout 1: no process left behind" all_gone $kids

# ---- a program that speaks the launcher's side of the contract -------------

# Worker: records its environment, secret and process group, then waits
# until the master says done (as a libdistc worker exits when the master's
# connection closes), or lingers if FAKE_LINGER is set.  Master: waits for
# the workers' records, then reports per FAKE_MODE.
cat >"$T/fake.sh" <<'EOF'
#!/bin/bash
d=$FAKE_DIR
read -r _ _ _ _ pgid _ </proc/$$/stat
case $DISTC_ROLE in
worker)
  {
    env | grep -E '^(DISTC_|OPENBLAS_|OMP_|FAKE_X=)' | sort
    echo "SECRET=$(od -An -tx1 <&3 | tr -d ' \n')"
    echo "PID=$$"
    echo "PGID=$pgid"
    echo "SOCKETS=$(for f in /proc/$$/fd/*; do readlink "$f"; done | grep -c '^socket:')"
    echo "CWD=$PWD"
  } >"$d/w.$DISTC_WORKER_INDEX.tmp"
  mv "$d/w.$DISTC_WORKER_INDEX.tmp" "$d/w.$DISTC_WORKER_INDEX"
  [ -n "${FAKE_LINGER:-}" ] && exec sleep 30
  for ((i = 0; i < 600; i++)); do
    [ -e "$d/done" ] && exit 0
    sleep 0.05
  done
  exit 0 ;;
master)
  {
    env | grep -E '^(DISTC_|FAKE_X=)' | sort
    echo "SECRET=$(od -An -tx1 <&"$DISTC_SECRET_FD" | tr -d ' \n')"
    echo "LISTEN=$(readlink /proc/$$/fd/"$DISTC_LISTEN_FD")"
    echo "PID=$$"
    echo "PGID=$pgid"
    echo "CWD=$PWD"
  } >"$d/m"
  for ((i = 0; i < 200; i++)); do
    n=$(ls "$d" | grep -c '^w\.[0-9]*$')
    [ "$n" -ge "$DISTC_NWORKERS" ] && break
    sleep 0.05
  done
  mode=${FAKE_MODE:-exit:0}
  case $mode in
  exit:*)
    echo ready >&"$DISTC_CONTROL_FD"
    touch "$d/done"
    exit "${mode#exit:}" ;;
  fail)
    echo "fail only 0 of $DISTC_NWORKERS workers connected" >&"$DISTC_CONTROL_FD"
    exec sleep 30 ;;
  trap)
    trap 'echo TERM >"$d/master.term"; touch "$d/done"; exit 0' TERM
    echo ready >&"$DISTC_CONTROL_FD"
    for ((i = 0; i < 600; i++)); do sleep 0.05; done ;;
  stubborn)
    trap '' INT TERM
    echo ready >&"$DISTC_CONTROL_FD"
    for ((i = 0; i < 600; i++)); do sleep 0.05; done ;;
  esac ;;
esac
EOF
chmod +x "$T/fake.sh"
export FAKE_DIR=$T/run

fresh() {
  rm -rf "$FAKE_DIR"
  mkdir -p "$FAKE_DIR"
}
field() { sed -n "s/^$2=//p" "$FAKE_DIR/$1"; }

fresh
start=$(now_ms)
FAKE_MODE=exit:3 DISTC_NWORKERS=99 DISTC_LOG=warn OPENBLAS_NUM_THREADS=6 \
  "$L" -p 3 --env FAKE_X=y ./fake.sh >"$T/out" 2>"$T/err" &
wait_launcher $!
took=$(($(now_ms) - start))
check "fake: exit status is the master's (3)" test "$rc" -eq 3
check "fake: quick when workers exit with the master (${took} ms)" test "$took" -lt 2500
msecret=$(field m SECRET)
check "fake master: got a 32-byte secret on DISTC_SECRET_FD" test "${#msecret}" -eq 64
check "fake master: DISTC_LISTEN_FD is a socket" grep -q '^LISTEN=socket:' "$FAKE_DIR/m"
check "fake master: DISTC_NWORKERS=3" grep -qx 'DISTC_NWORKERS=3' "$FAKE_DIR/m"
check "fake master: --env reaches it" grep -qx 'FAKE_X=y' "$FAKE_DIR/m"
read -r _ _ _ _ mypgid _ </proc/$$/stat
check "fake master: stays in the launcher's process group" test "$(field m PGID)" = "$mypgid"
lpid=$(field m DISTC_PARENT_PID)
for i in 0 1 2; do
  w=w.$i
  if [ ! -e "$FAKE_DIR/$w" ]; then
    not_ok "fake worker $i ran"
    continue
  fi
  check "fake worker $i: DISTC_WORKER_INDEX=$i" grep -qx "DISTC_WORKER_INDEX=$i" "$FAKE_DIR/$w"
  check "fake worker $i: DISTC_ROLE=worker" grep -qx 'DISTC_ROLE=worker' "$FAKE_DIR/$w"
  check "fake worker $i: DISTC_MASTER is 127.0.0.1:port" grep -qxE 'DISTC_MASTER=127\.0\.0\.1:[0-9]+' "$FAKE_DIR/$w"
  check "fake worker $i: DISTC_PARENT_PID is the launcher" grep -qx "DISTC_PARENT_PID=$lpid" "$FAKE_DIR/$w"
  check "fake worker $i: the master's secret on fd 3" test "$(field $w SECRET)" = "$msecret"
  check "fake worker $i: no stale DISTC_NWORKERS from the environment" bash -c "! grep -q '^DISTC_NWORKERS=' '$FAKE_DIR/$w'"
  check "fake worker $i: DISTC_LOG passes" grep -qx 'DISTC_LOG=warn' "$FAKE_DIR/$w"
  check "fake worker $i: the user's OPENBLAS_NUM_THREADS wins" grep -qx 'OPENBLAS_NUM_THREADS=6' "$FAKE_DIR/$w"
  check "fake worker $i: --env reaches it" grep -qx 'FAKE_X=y' "$FAKE_DIR/$w"
  check "fake worker $i: leads its own process group" test "$(field $w PGID)" = "$(field $w PID)"
  check "fake worker $i: holds no socket (the listener is not leaked)" test "$(field $w SOCKETS)" = 0
done

fresh
FAKE_LINGER=1 launch -p 2 --dir "$T/a-directory" "$T/fake.sh"
check "fake, lingering workers: exit status 0" test "$rc" -eq 0
check "fake: --dir is the workers' and the master's cwd" \
  test "$(field m CWD)" = "$T/a-directory" -a "$(field w.0 CWD)" = "$T/a-directory"
pids="$(field w.0 PID) $(field w.1 PID)"
check "fake, lingering workers: stopped and gone" all_gone $pids

fresh
FAKE_MODE=fail launch -p 2 ./fake.sh
check "fake, master says fail: exit 1" test "$rc" -eq 1
check "fake, master says fail: its message is shown" \
  grep -qx 'distc-launch: only 0 of 2 workers connected' "$T/err"
check "fake, master says fail: nothing left" all_gone $(field m PID) $(field w.0 PID) $(field w.1 PID)

# A worker that dies before the master says ready.
cat >"$T/early.sh" <<'EOF'
#!/bin/bash
[ "$DISTC_ROLE" = worker ] && [ "$DISTC_WORKER_INDEX" = 1 ] && exit 7
exec sleep 30
EOF
chmod +x "$T/early.sh"
launch -p 3 "$T/early.sh"
check "a worker exits before connecting: exit 1" test "$rc" -eq 1
check "a worker exits before connecting: names it and its status" \
  grep -qE '^distc-launch: worker 1 \(pid [0-9]+\) exited with status 7 before connecting' "$T/err"

# kill -TERM on the launcher reaches the master.
fresh
FAKE_MODE=trap "$L" -p 2 ./fake.sh >"$T/out" 2>"$T/err" &
lp=$!
for ((i = 0; i < 100; i++)); do [ -e "$FAKE_DIR/m" ] && [ -e "$FAKE_DIR/w.1" ] && break; sleep 0.05; done
sleep 0.3
kill -TERM "$lp"
wait_launcher "$lp"
check "kill -TERM launcher: forwarded to the master" test -e "$FAKE_DIR/master.term"
check "kill -TERM launcher: exit status is the master's (0)" test "$rc" -eq 0
check "kill -TERM launcher: nothing left" all_gone $(field m PID) $(field w.0 PID) $(field w.1 PID)

# Two SIGINTs tear everything down at once, even a master that ignores them.
fresh
FAKE_MODE=stubborn FAKE_LINGER=1 "$L" -p 2 ./fake.sh >"$T/out" 2>"$T/err" &
lp=$!
for ((i = 0; i < 100; i++)); do [ -e "$FAKE_DIR/m" ] && [ -e "$FAKE_DIR/w.1" ] && break; sleep 0.05; done
sleep 0.3
kill -INT "$lp"
sleep 0.3
start=$(now_ms)
kill -INT "$lp"
wait_launcher "$lp"
took=$(($(now_ms) - start))
check "second SIGINT: exit 130" test "$rc" -eq 130
check "second SIGINT: at once (${took} ms)" test "$took" -lt 1000
check "second SIGINT: nothing left" all_gone $(field m PID) $(field w.0 PID) $(field w.1 PID)

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

# shellcheck shell=bash
# lib.sh — what the shell tests share: counters that end in
# `N passed, M failed`, a temp dir removed on exit, and bounded waits.
# Sourced, not run.
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# A process that exists and is not a zombie.
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# Waits (up to $2 tenths of a second) for a line matching $1 in $3.
wait_for() {
  for _ in $(seq "$2"); do grep -q "$1" "$3" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# Prints the summary line and gives the script's exit status.
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}

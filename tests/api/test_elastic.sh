#!/usr/bin/env bash
# test_elastic.sh — elastic join: workers started by hand (a shell loop, the
# --join wrapper) join a running master through the door distc-launch
# --listen or distc_listen opened.  Every process is started with a
# timeout and every wait is bounded.
#   test_elastic.sh DISTC_LAUNCH TEST_ELASTIC HELLO
set -u
LAUNCH=$1 EL=$2 HELLO=$3
. "$(dirname "$0")/../lib.sh"
T=60 # no process of this test may outlive this

# The address distc-launch printed in $1.
door_addr() { sed -n 's/.*workers join at \([^ ]*\) with.*/\1/p' "$1" | head -1; }

# Starts one joiner of binary $1 with key $2; output to $3.  Sets JPID.
join_one() {
  DISTC_JOIN=$addr DISTC_JOIN_KEY=$2 timeout $T "$1" >"$3" 2>&1 &
  JPID=$!
}

# Waits up to $2 tenths of a second for pid $1 to end; sets STATUS.
wait_pid() {
  for _ in $(seq "$2"); do alive "$1" || break; sleep 0.1; done
  if alive "$1"; then kill -9 "$1" 2>/dev/null; fi
  wait "$1"; STATUS=$?
}

# 1. A pmap of 40 items of 100 ms on 1 launched worker; 3 joiners started
#    by a shell loop once it runs: all items done, and they took part.
key=$tmp/key1
timeout $T "$LAUNCH" -p 1 --listen 127.0.0.1:0 --join-key "$key" \
  "$EL" pmap 40 100 >"$tmp/out1" 2>"$tmp/err1" &
LPID=$!
if wait_for 'pmap begins' 200 "$tmp/out1"; then
  addr=$(door_addr "$tmp/err1")
  check "the door's address is printed" '[ -n "$addr" ]'
  check "the key file is 0600" '[ "$(stat -c %a "$key")" = 600 ]'
  secret=$(sed -n 2p "$key")
  jp=""
  for i in 1 2 3; do join_one "$EL" "$key" "$tmp/j1.$i"; jp="$jp $JPID"; done
  sleep 0.5
  leak=0
  for p in $LPID $jp $(cat /proc/$LPID/task/*/children 2>/dev/null); do
    for f in environ cmdline; do
      grep -qaF "$secret" /proc/$p/$f 2>/dev/null && leak=1
    done
  done
  check "the key is in no environment or command line" '[ $leak -eq 0 ]'
  wait_pid $LPID 600
  check "pmap run exits 0" '[ $STATUS -eq 0 ]'
  check "all 40 items done" 'grep -qx "done 40 of 40" "$tmp/out1"'
  check "3 workers joined" '[ "$(grep -c "^joined" "$tmp/out1")" -eq 3 ]'
  check "newcomers ran items" \
    'grep "^ran:" "$tmp/out1" | grep -qE " ([3-9]|[1-9][0-9])="'
  check "the key file is removed at the end" '[ ! -e "$key" ]'
  for p in $jp; do wait_pid $p 100; done
  check "joiners exit with the master" '[ $STATUS -eq 0 ]'
else
  bad "pmap master started"; cat "$tmp/out1" "$tmp/err1"
  kill $LPID 2>/dev/null
fi
grep -q FAIL "$tmp/out1" && cat "$tmp/out1" "$tmp/err1"

# 2. Refusals and a departure: a joiner with the wrong key is dropped
#    before any message, one running another binary is refused with the
#    fingerprint message, the master serves on; a joiner killed while idle
#    is a departure and the run goes on.
key=$tmp/key2
timeout $T "$LAUNCH" -p 1 --listen 127.0.0.1:0 --join-key "$key" \
  "$EL" members 3 >"$tmp/out2" 2>"$tmp/err2" &
LPID=$!
if wait_for '^started' 200 "$tmp/out2"; then
  addr=$(door_addr "$tmp/err2")
  printf 'distc-join-key 1\n%s\n' \
    "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/bad"
  chmod 600 "$tmp/bad"
  join_one "$EL" "$tmp/bad" "$tmp/jbad"
  wait_pid $JPID 200
  check "a wrong key: the joiner fails" '[ $STATUS -ne 0 ]'
  check "a wrong key: the joiner says authentication failed" \
    'grep -q "authentication" "$tmp/jbad"'
  check "a wrong key: the master drops it" \
    'wait_for "failed authentication" 50 "$tmp/err2"'
  join_one "$HELLO" "$key" "$tmp/jhello"
  wait_pid $JPID 200
  check "another binary: the joiner fails" '[ $STATUS -ne 0 ]'
  check "another binary: the joiner is told" \
    'grep -q "different binary" "$tmp/jhello"'
  check "another binary: the master says so" \
    'wait_for "different binary" 50 "$tmp/err2"'
  cp "$key" "$tmp/loose"; chmod 644 "$tmp/loose"
  join_one "$EL" "$tmp/loose" "$tmp/jloose"
  wait_pid $JPID 100
  check "a key others can read is refused" \
    '[ $STATUS -ne 0 ] && grep -q "chmod 600" "$tmp/jloose"'
  join_one "$EL" "$key" "$tmp/ja"; A=$JPID
  join_one "$EL" "$key" "$tmp/jb"; B=$JPID
  check "the master kept serving: 3 workers present" \
    'wait_for "^present 3" 200 "$tmp/out2"'
  kill $A
  wait_pid $LPID 600
  check "members run exits 0 after a departure" '[ $STATUS -eq 0 ]'
  check "the departure is announced" 'grep -q "^left" "$tmp/out2"'
  check "pmap and the default pool after the departure" \
    'grep -q "after departure ok" "$tmp/out2"'
  check "the refused ones never joined: 2 workers after the departure" \
    'grep -q "^departure seen, 2 workers" "$tmp/out2"'
  wait_pid $B 100
else
  bad "members master started"; cat "$tmp/out2" "$tmp/err2"
  kill $LPID 2>/dev/null
fi
grep -q FAIL "$tmp/out2" && cat "$tmp/out2" "$tmp/err2"

# 3. --min-workers 2 with no worker started here: the program starts once
#    2 joined (through the --join wrapper), and a third still joins.
key=$tmp/key3
timeout $T "$LAUNCH" --listen 127.0.0.1:0 --join-key "$key" --min-workers 2 \
  "$EL" count 3 >"$tmp/out3" 2>"$tmp/err3" &
LPID=$!
if wait_for 'workers join at' 200 "$tmp/err3"; then
  addr=$(door_addr "$tmp/err3")
  sleep 1
  check "--min-workers: the program waits for the workers" \
    '! grep -q "^started" "$tmp/out3"'
  timeout $T "$LAUNCH" --join "$addr" --join-key "$key" -p 2 "$EL" \
    >"$tmp/jw" 2>&1 &
  W=$!
  check "--min-workers: starts once 2 joined" \
    'wait_for "^started 2: 2 3" 200 "$tmp/out3"'
  join_one "$EL" "$key" "$tmp/jc"
  wait_pid $LPID 300
  check "--min-workers: a third joins later" 'grep -q "^present 3" "$tmp/out3"'
  check "--min-workers run exits 0" '[ $STATUS -eq 0 ]'
  wait_pid $W 100
  check "the --join wrapper exits 0 with its workers" '[ $STATUS -eq 0 ]'
else
  bad "--min-workers master listened"; cat "$tmp/out3" "$tmp/err3"
  kill $LPID 2>/dev/null
fi

# 4. Without the launcher: distc_listen opens the door itself.
timeout $T "$EL" api >"$tmp/out4" 2>"$tmp/err4" &
LPID=$!
if wait_for '^door ' 200 "$tmp/out4"; then
  read -r _ addr k <<<"$(grep '^door ' "$tmp/out4")"
  join_one "$EL" "$k" "$tmp/jd1"
  join_one "$EL" "$k" "$tmp/jd2"
  wait_pid $LPID 300
  check "distc_listen: 2 joined, answered, key removed" \
    '[ $STATUS -eq 0 ] && grep -q "^present 2" "$tmp/out4"'
else
  bad "distc_listen printed its door"; cat "$tmp/out4" "$tmp/err4"
  kill $LPID 2>/dev/null
fi
grep -q FAIL "$tmp/out4" && cat "$tmp/out4" "$tmp/err4"

# 5. Options: what is missing is said, nothing is started.
"$LAUNCH" --join 127.0.0.1:1 "$EL" >/dev/null 2>"$tmp/e"; st=$?
check "--join without --join-key is a usage error" \
  '[ $st -eq 2 ] && grep -q "needs --join-key" "$tmp/e"'
"$LAUNCH" --min-workers 2 -p 1 "$EL" >/dev/null 2>"$tmp/e"; st=$?
check "--min-workers without --listen is a usage error" \
  '[ $st -eq 2 ] && grep -q "give --listen" "$tmp/e"'
"$LAUNCH" --listen 70000 "$EL" >/dev/null 2>"$tmp/e"; st=$?
check "a bad --listen port is a usage error" \
  '[ $st -eq 2 ] && grep -q "65535" "$tmp/e"'
"$LAUNCH" --join 127.0.0.1:1 --join-key "$tmp/none" "$EL" >/dev/null \
  2>"$tmp/e"; st=$?
check "--join with a missing key file fails before starting" \
  '[ $st -eq 1 ] && grep -q "cannot read the join key" "$tmp/e"'
"$LAUNCH" --dry-run --listen 127.0.0.1:0 --join-key "$tmp/dry" -p 1 "$EL" \
  >"$tmp/o" 2>&1; st=$?
check "--dry-run --listen writes no key and shows the door" \
  '[ $st -eq 0 ] && [ ! -e "$tmp/dry" ] && grep -q "DISTC_JOIN_FD" "$tmp/o"'

finish

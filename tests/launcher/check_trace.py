#!/usr/bin/env python3
"""check_trace.py TRACE.json MODE — the trace distc wrote is a JSON array of
Chrome/Perfetto trace events with one track per process and the spans the
run made (tests/api/test_lib.c trace-work: a call of echo_bytes with 1000
bytes each way on worker 2, a pmap of 100 items in batches of 10, a 4 MiB
result from the last worker).  MODE: "launch" (distc-launch --trace, 2
workers) or "addprocs" (DISTC_TRACE, 2 workers added by the program).
Prints one line per check and `N passed, M failed`."""
import json
import sys

path, mode = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(cond, what, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok  ', what)
    else:
        failed += 1
        print('FAIL', what, detail)


with open(path) as f:
    events = json.load(f)
check(isinstance(events, list) and events, 'a non-empty JSON array')
check(all(isinstance(e, dict) and 'ph' in e and 'pid' in e and 'name' in e
          for e in events), 'every event has ph, pid and name')
check(all('ts' in e for e in events if e['ph'] != 'M'),
      'every non-metadata event has ts')
check(all(isinstance(e.get('dur'), int) and e['dur'] >= 0
          for e in events if e['ph'] == 'X'), "every 'X' span has a dur")

names = {e['pid']: e['args']['name'] for e in events
         if e['ph'] == 'M' and e['name'] == 'process_name'}
want = {1, 2, 3} | ({0} if mode == 'launch' else set())
check(set(names) == want, f'one track per process {sorted(want)}', names)
check(names.get(1, '').startswith('master') and
      names.get(2, '').startswith('worker 2') and
      names.get(3, '').startswith('worker 3'), 'tracks are named', names)

X = [e for e in events if e['ph'] == 'X']


def spans(pid, name=None, cat=None):
    return [e for e in X if e['pid'] == pid and (name is None or e['name'] == name)
            and (cat is None or e.get('cat') == cat)]


# Launch phases: spawn (by the launcher, or by the master for addprocs),
# then each worker's connect and handshake, in that order.
spawner = 0 if mode == 'launch' else 1
sp = spans(spawner, 'spawn', 'launch')
check(sorted(e['args']['worker'] for e in sp) == [2, 3],
      f'a spawn span per worker on track {spawner}', sp)
for w in (2, 3):
    c, h = spans(w, 'connect', 'launch'), spans(w, 'handshake', 'launch')
    check(len(c) == 1 and len(h) == 1, f'worker {w}: connect and handshake')
    s = [e for e in sp if e['args']['worker'] == w]
    if c and h and s:
        check(s[0]['ts'] <= c[0]['ts'] + c[0]['dur'] <= h[0]['ts'] + 1,
              f'worker {w}: spawn, then connect, then handshake')
if mode == 'launch':
    check(len(spans(0, 'start workers', 'launch')) == 1,
          "the launcher's start workers span")
    check(len(spans(1, 'await workers', 'launch')) == 1,
          "the master's await workers span")

# The call: run on worker 2 with its bytes, and the master's async span.
run = spans(2, 'echo_bytes', 'call')
check(len(run) == 1 and run[0]['args']['bytes_in'] > 1000 and
      run[0]['args']['bytes_out'] > 1000 and run[0]['args']['from'] == 1,
      'worker 2 ran echo_bytes, 1000+ bytes in and out', run)
b = [e for e in events if e['ph'] == 'b' and e['name'] == 'echo_bytes']
e_ = [e for e in events if e['ph'] == 'e' and e['name'] == 'echo_bytes']
check(len(b) == 1 and len(e_) == 1 and b[0]['pid'] == 1 and
      b[0]['id'] == e_[0]['id'] and b[0]['args']['to'] == 2 and
      b[0]['args']['bytes_out'] > 1000 and b[0]['args']['bytes_in'] > 1000 and
      e_[0]['ts'] >= b[0]['ts'], "the master's span of the call", (b, e_))
if run and b and e_:
    check(b[0]['ts'] <= run[0]['ts'] + 1000 and
          run[0]['ts'] + run[0]['dur'] <= e_[0]['ts'] + 1000,
          "the worker's run lies within the master's call (1 ms clock slack)")

# pmap: 10 batches of 10, run on the workers, sent by the master.
pm = [e for e in X if e.get('cat') == 'pmap' and e['pid'] in (2, 3)]
check(len(pm) >= 10, 'pmap batches ran on the workers', len(pm))
pmb = [e for e in events if e['ph'] == 'b' and e.get('cat') == 'pmap']
check(len(pmb) >= 10 and all(e['pid'] == 1 for e in pmb),
      "the master's pmap batch spans", len(pmb))

# The 4 MiB result moved: copied out of the worker, or sent by it.
big = 4 << 20
tr = [e for e in X if e.get('cat') == 'transfer' and e['args']['bytes'] >= big]
check(len(tr) >= 1, 'a transfer span of the 4 MiB result', tr)

# Every span of a process lies within the run.
t0 = min(e['ts'] for e in events if 'ts' in e)
t1 = max(e['ts'] + e.get('dur', 0) for e in events if 'ts' in e)
check(t1 - t0 < 120e6, 'the spans cover under two minutes', (t0, t1))
print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)

/* test_peers.c — worker-to-worker calls (every process a peer): a chain
 * 2 -> 3 -> 4 -> 2 that calls back into a waiting worker; a future made on
 * 2 passed to 3 and fetched there; a worker killed during a call from
 * another worker; lazy links (only the pairs that talk are linked); the
 * master_worker topology refusing a sideways call; strangers on a worker's
 * port holding up nothing.  One case per run
 * (argv[1]) under distc-launch; every wait is bounded.  Prints
 * `N passed, M failed`. */
#include <arpa/inet.h>
#include <distc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"

#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())
#define WAIT_S 30.0 /* any answer that takes this long is a failure */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* [pids...]: calls the first with the rest, then adds its own id in front
 * of the answer; the last one answers [its id]. */
DISTC_FUNCTION(hop) {
  size_t n = distc_list_len(args);
  if (n == 0)
    return distc_listv(1, distc_int(distc_myid()));
  int next = (int)distc_value_int(distc_list_at(args, 0));
  distc_value *rest = distc_list(0);
  for (size_t i = 1; i < n; i++)
    distc_list_push(rest, distc_value_ref((distc_value *)distc_list_at(args, i)));
  distc_future *f = NULL;
  distc_value *r = NULL;
  int rc = distc_remotecall(next, "hop", rest, &f);
  distc_value_free(rest);
  if (rc == 0)
    rc = distc_fetch_timeout(f, WAIT_S, &r);
  distc_future_free(f);
  if (rc < 0)
    return distc_fail(ctx, "hop %d -> %d: %s", distc_myid(), next,
                      distc_errmsg());
  distc_value *out = distc_listv(1, distc_int(distc_myid()));
  for (size_t i = 0; i < distc_list_len(r); i++)
    distc_list_push(out, distc_value_ref((distc_value *)distc_list_at(r, i)));
  distc_value_free(r);
  return out;
}

DISTC_FUNCTION(noop) {
  (void)args;
  (void)ctx;
  return distc_nil();
}

DISTC_FUNCTION(sleepy) {
  (void)ctx;
  usleep((useconds_t)(distc_value_double(distc_list_at(args, 0)) * 1e6));
  return distc_int(distc_myid());
}

/* [pid, fn]: calls fn on pid (no arguments), answers [code, message]. */
DISTC_FUNCTION(call_other) {
  (void)ctx;
  int pid = (int)distc_value_int(distc_list_at(args, 0));
  const char *fn = distc_value_str(distc_list_at(args, 1), NULL);
  distc_value *r = NULL;
  distc_future *f = NULL;
  int rc = distc_remotecall(pid, fn, distc_list_at(args, 2), &f);
  if (rc == 0)
    rc = distc_fetch_timeout(f, WAIT_S, &r);
  distc_future_free(f);
  distc_value *out = distc_listv(2, distc_int(rc),
                                 distc_string(rc ? distc_errmsg() : ""));
  distc_value_free(r);
  return out;
}

DISTC_FUNCTION(die) {
  (void)args;
  (void)ctx;
  kill(getpid(), SIGKILL);
  return distc_nil();
}

/* Futures worker 2 made and keeps (the pair is good while they live). */
static distc_future *kept[8];
static int nkept;

/* [pid, seconds]: starts sleepy on pid, keeps the future, answers its
 * pair. */
DISTC_FUNCTION(make_future) {
  int pid = (int)distc_value_int(distc_list_at(args, 0));
  distc_value *a = distc_listv(1, distc_value_ref((distc_value *)distc_list_at(args, 1)));
  distc_future *f = NULL;
  distc_value *v = NULL;
  int rc = distc_remotecall(pid, "sleepy", a, &f);
  distc_value_free(a);
  if (rc == 0)
    rc = distc_future_value(f, &v);
  if (rc < 0 || nkept == 8)
    return distc_fail(ctx, "make_future: %s", distc_errmsg());
  kept[nkept++] = f;
  return v;
}

DISTC_FUNCTION(drop_futures) {
  (void)args;
  (void)ctx;
  while (nkept > 0)
    distc_future_free(kept[--nkept]);
  return distc_nil();
}

/* [pair]: fetches the future the pair names; answers [code, value]. */
DISTC_FUNCTION(fetch_pair) {
  (void)ctx;
  distc_future *f = NULL;
  distc_value *v = NULL;
  int rc = distc_future_from_value(distc_list_at(args, 0), &f);
  if (rc == 0)
    rc = distc_fetch_timeout(f, WAIT_S, &v);
  distc_future_free(f);
  distc_value *out = distc_listv(2, distc_int(rc), v ? v : distc_nil());
  return out;
}

/* ids this process ran everywhere_mark on (the master collects them). */
DISTC_FUNCTION(everywhere_mark) {
  (void)args;
  (void)ctx;
  printf("marked on %d\n", distc_myid());
  fflush(stdout);
  return distc_nil();
}

DISTC_FUNCTION(everywhere_from_worker) {
  (void)args;
  int rc = distc_everywhere("everywhere_mark", NULL);
  if (rc < 0)
    return distc_fail(ctx, "everywhere: %s", distc_errmsg());
  return distc_int(rc);
}

/* A future made on 2 (running on 4), passed to 3, fetched there, and by
 * the master too; then 2 frees it and a late fetch fails clearly. */
static void case_future(void) {
  distc_value *a = distc_listv(2, distc_int(4), distc_double(0.3)), *pair = NULL;
  OK(distc_remotecall_fetch(2, "make_future", a, &pair));
  distc_value_free(a);
  CHECK(distc_value_int(distc_list_at(pair, 0)) == 2, "the owner is 2");
  a = distc_listv(1, distc_value_ref(pair));
  distc_value *r = NULL;
  OK(distc_remotecall_fetch(3, "fetch_pair", a, &r));
  CHECK(distc_value_int(distc_list_at(r, 0)) == 0 &&
            distc_value_int(distc_list_at(r, 1)) == 4,
        "3 fetched 4's answer through 2: rc %lld, value %lld",
        (long long)distc_value_int(distc_list_at(r, 0)),
        (long long)distc_value_int(distc_list_at(r, 1)));
  distc_value_free(r);
  /* Several at once, before it completes: 3, 4 and the master. */
  distc_value_free(pair);
  distc_value_free(a);
  a = distc_listv(2, distc_int(3), distc_double(0.5));
  OK(distc_remotecall_fetch(2, "make_future", a, &pair));
  distc_value_free(a);
  a = distc_listv(1, distc_value_ref(pair));
  distc_future *f3, *f4, *fm;
  OK(distc_remotecall(3, "fetch_pair", a, &f3));
  OK(distc_remotecall(4, "fetch_pair", a, &f4));
  OK(distc_future_from_value(pair, &fm));
  distc_value *r3 = NULL, *r4 = NULL, *rm = NULL;
  OK(distc_fetch_timeout(f3, WAIT_S, &r3));
  OK(distc_fetch_timeout(f4, WAIT_S, &r4));
  OK(distc_fetch_timeout(fm, WAIT_S, &rm));
  CHECK(distc_value_int(distc_list_at(r3, 1)) == 3 &&
            distc_value_int(distc_list_at(r4, 1)) == 3 &&
            distc_value_int(rm) == 3,
        "all three got 3's answer");
  distc_value_free(r3);
  distc_value_free(r4);
  distc_value_free(rm);
  distc_future_free(f3);
  distc_future_free(f4);
  distc_future_free(fm);
  distc_value_free(a);
  /* The owner frees it: a later fetch says so. */
  OK(distc_remotecall_wait(2, "drop_futures", NULL));
  OK(distc_future_from_value(pair, &fm));
  int rc = distc_fetch_timeout(fm, WAIT_S, NULL);
  CHECK(rc < 0 && strstr(distc_errmsg(), "freed by its owner"),
        "fetch after the owner freed it: %d %s", rc, distc_errmsg());
  distc_future_free(fm);
  distc_value_free(pair);
  /* distc_everywhere from a worker: the master and every worker. */
  r = NULL;
  OK(distc_remotecall_fetch(3, "everywhere_from_worker", NULL, &r));
  distc_value_free(r);
}

/* The chain 2 -> 3 -> 4 -> 2: worker 2 is waiting for 3 when 4 calls it. */
static void case_chain(void) {
  /* A calls B while B calls A, at once, before any link exists: each
   * dials the other (both links are kept). */
  distc_future *f2, *f3;
  distc_value *a = distc_listv(2, distc_int(3), distc_int(2));
  OK(distc_remotecall(2, "hop", a, &f2));
  distc_value_free(a);
  a = distc_listv(2, distc_int(2), distc_int(3));
  OK(distc_remotecall(3, "hop", a, &f3));
  distc_value_free(a);
  OK(distc_fetch_timeout(f2, WAIT_S, NULL));
  OK(distc_fetch_timeout(f3, WAIT_S, NULL));
  distc_future_free(f2);
  distc_future_free(f3);
  a = distc_listv(3, distc_int(3), distc_int(4), distc_int(2));
  distc_value *r = NULL;
  double t0 = now_s();
  OK(distc_remotecall_fetch(2, "hop", a, &r));
  distc_value_free(a);
  int want[] = {2, 3, 4, 2};
  bool same = distc_list_len(r) == 4;
  for (size_t i = 0; same && i < 4; i++)
    same = distc_value_int(distc_list_at(r, i)) == want[i];
  CHECK(same, "visited 2 3 4 2 (got %zu hops)", distc_list_len(r));
  CHECK(now_s() - t0 < WAIT_S, "in %.1f s", now_s() - t0);
  distc_value_free(r);
  /* Again, over the links now made, and many times: none is dropped. */
  for (int i = 0; i < 200; i++) {
    a = distc_listv(3, distc_int(3), distc_int(4), distc_int(2));
    int rc = distc_remotecall_fetch(2, "hop", a, &r);
    distc_value_free(a);
    distc_value_free(r);
    if (rc) {
      OK(rc);
      break;
    }
  }
}

/* A worker killed while another worker waits on its call: the caller gets
 * the process-exited error, and the master sees the worker gone. */
static void case_kill(void) {
  distc_value *a = distc_listv(3, distc_int(3), distc_string("die"),
                               distc_list(0));
  distc_value *r = NULL;
  double t0 = now_s();
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(a);
  int code = (int)distc_value_int(distc_list_at(r, 0));
  const char *msg = distc_value_str(distc_list_at(r, 1), NULL);
  CHECK(code == DISTC_EPROCEXIT, "worker 2's call to the dying 3: %d (%s)",
        code, msg ? msg : "");
  CHECK(msg && strstr(msg, "worker 3"), "the message names worker 3: %s",
        msg ? msg : "");
  CHECK(now_s() - t0 < WAIT_S, "in %.1f s", now_s() - t0);
  distc_value_free(r);
  /* The master is told: worker 3 leaves the membership. */
  bool gone = false;
  for (double t = now_s(); !gone && now_s() - t < WAIT_S; usleep(10000)) {
    int ids[16], n = distc_workers(ids, 16);
    gone = true;
    for (int i = 0; i < n; i++)
      gone = gone && ids[i] != 3;
  }
  CHECK(gone, "worker 3 left the membership");
  /* Worker 2 carries on, and a new call to 3 fails cleanly. */
  a = distc_listv(3, distc_int(3), distc_string("noop"), distc_list(0));
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(a);
  code = (int)distc_value_int(distc_list_at(r, 0));
  CHECK(code == DISTC_EPROCEXIT || code == DISTC_ENOENT,
        "a later call to 3: %d", code);
  distc_value_free(r);
  a = distc_listv(3, distc_int(4), distc_string("noop"), distc_list(0));
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(a);
  CHECK(distc_value_int(distc_list_at(r, 0)) == 0, "2 -> 4 still works");
  distc_value_free(r);
}

DISTC_FUNCTION(getpid_fn) {
  (void)args;
  (void)ctx;
  return distc_int(getpid());
}

/* Worker 3 dies while worker 2 is blocked sending it a call larger than
 * their link holds (3 is busy, so nobody reads): the send ends with the
 * process-exited error instead of waiting for room forever. */
static void case_kill_send(void) {
  distc_value *pid = NULL;
  OK(distc_remotecall_fetch(3, "getpid_fn", NULL, &pid));
  /* Link 2 and 3 first, so 3's I/O thread need not accept while busy. */
  distc_value *a = distc_listv(3, distc_int(3), distc_string("noop"),
                               distc_list(0)), *r = NULL;
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(r);
  distc_value_free(a);
  distc_future *busy = NULL, *f = NULL;
  distc_value *s = distc_listv(1, distc_double(20.0));
  OK(distc_remotecall(3, "sleepy", s, &busy));
  distc_value_free(s);
  size_t n = 1 << 20; /* 8 MiB of int64: more than the link takes */
  distc_value *big = distc_array(DISTC_I64, 1, &n);
  a = distc_listv(3, distc_int(3), distc_string("noop"),
                  distc_listv(1, big));
  double t0 = now_s();
  OK(distc_remotecall(2, "call_other", a, &f));
  distc_value_free(a);
  usleep(500000); /* 2 is now waiting for room */
  kill((pid_t)distc_value_int(pid), SIGKILL);
  r = NULL;
  OK(distc_fetch_timeout(f, WAIT_S, &r));
  int code = (int)distc_value_int(distc_list_at(r, 0));
  CHECK(code == DISTC_EPROCEXIT, "the blocked send to the dead 3: %d (%s)",
        code, distc_value_str(distc_list_at(r, 1), NULL));
  CHECK(now_s() - t0 < 10, "in %.1f s", now_s() - t0);
  distc_value_free(r);
  distc_future_free(f);
  CHECK(distc_fetch_timeout(busy, WAIT_S, NULL) == DISTC_EPROCEXIT,
        "the master's call on 3 fails too");
  distc_future_free(busy);
  distc_value_free(pid);
}

/* [n]: an array of n int64 (the caller passes it on). */
DISTC_FUNCTION(count_items) {
  (void)ctx;
  const distc_value *a = distc_list_at(args, 0);
  return distc_int((int64_t)distc_array_len(a));
}

/* Workers 2 and 3 send each other 8 MiB at the same moment, more than a
 * link holds either way: neither may wait for the other to read. */
static void case_exchange(void) {
  size_t n = 1 << 20;
  distc_value *big = distc_array(DISTC_I64, 1, &n);
  distc_value *a2 = distc_listv(3, distc_int(3), distc_string("count_items"),
                                distc_listv(1, distc_value_ref(big)));
  distc_value *a3 = distc_listv(3, distc_int(2), distc_string("count_items"),
                                distc_listv(1, big));
  /* Link them first: the exchange itself then starts at once on both. */
  distc_value *l = distc_listv(3, distc_int(3), distc_string("noop"),
                               distc_list(0)), *r = NULL;
  OK(distc_remotecall_fetch(2, "call_other", l, &r));
  distc_value_free(r);
  distc_value_free(l);
  for (int round = 0; round < 5; round++) {
    distc_future *f2, *f3;
    double t0 = now_s();
    OK(distc_remotecall(2, "call_other", a2, &f2));
    OK(distc_remotecall(3, "call_other", a3, &f3));
    distc_value *r2 = NULL, *r3 = NULL;
    OK(distc_fetch_timeout(f2, WAIT_S, &r2));
    OK(distc_fetch_timeout(f3, WAIT_S, &r3));
    CHECK(distc_value_int(distc_list_at(r2, 0)) == 0 &&
              distc_value_int(distc_list_at(r3, 0)) == 0,
          "round %d: both calls answered: %s / %s", round,
          distc_value_str(distc_list_at(r2, 1), NULL),
          distc_value_str(distc_list_at(r3, 1), NULL));
    CHECK(now_s() - t0 < WAIT_S, "round %d in %.1f s", round, now_s() - t0);
    distc_value_free(r2);
    distc_value_free(r3);
    distc_future_free(f2);
    distc_future_free(f3);
  }
  distc_value_free(a2);
  distc_value_free(a3);
}

/* Only 2 and 3 talk: the test's script counts the links with ss while
 * this waits (it prints READY and sleeps). */
static void case_lazy(void) {
  distc_value *a = distc_listv(3, distc_int(3), distc_string("noop"),
                               distc_list(0));
  distc_value *r = NULL;
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  CHECK(distc_value_int(distc_list_at(r, 0)) == 0, "2 -> 3: %s",
        distc_value_str(distc_list_at(r, 1), NULL));
  distc_value_free(r);
  distc_value_free(a);
  printf("READY %d\n", (int)getpid());
  fflush(stdout);
  /* The script looks meanwhile, then signals us to go on. */
  const char *wait_s = getenv("PEERS_LAZY_WAIT");
  sleep(wait_s ? (unsigned)atoi(wait_s) : 3);
}

/* Under master_worker a sideways call fails at once, saying why. */
static void case_refuse(void) {
  distc_value *a = distc_listv(3, distc_int(3), distc_string("noop"),
                               distc_list(0));
  distc_value *r = NULL;
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(a);
  int code = (int)distc_value_int(distc_list_at(r, 0));
  const char *msg = distc_value_str(distc_list_at(r, 1), NULL);
  CHECK(code == DISTC_ENOTSUP, "refused: %d (%s)", code, msg ? msg : "");
  CHECK(msg && strstr(msg, "master_worker") && strstr(msg, "all_to_all"),
        "the message names the topology and the way out: %s", msg ? msg : "");
  distc_value_free(r);
  /* Calls to the master and from the master still work. */
  a = distc_listv(3, distc_int(1), distc_string("noop"), distc_list(0));
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(a);
  CHECK(distc_value_int(distc_list_at(r, 0)) == 0, "2 -> master works");
  distc_value_free(r);
}

/* Worker -> worker round trips against master -> worker ones, for the
 * record (the benchmark row measures them properly). */
static void case_rtt(void) {
  distc_value *a = distc_listv(3, distc_int(3), distc_string("noop"),
                               distc_list(0));
  distc_value *r = NULL;
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(r);
  distc_value_free(a);
}

/* Strangers on a worker's port — more than may be in the handshake at
 * once, silent but for one sending garbage — do not hold up a real link to
 * it (the oldest are evicted), nor the worker itself (its I/O thread
 * authenticates nobody). */
static void case_stranger(void) {
  distc_value *a = distc_listv(1, distc_int(3)), *r = NULL;
  OK(distc_remotecall_fetch(DISTC_MASTER, "distc__peer_addr", a, &r));
  distc_value_free(a);
  const char *tcp = distc_value_str(distc_list_at(r, 2), NULL);
  char host[128] = "";
  /* "host:port,host:port,...": the first one is the address it reached
   * the master from. */
  const char *comma = tcp ? strchr(tcp, ',') : NULL;
  char first[160] = "";
  snprintf(first, sizeof first, "%.*s",
           (int)(comma ? (size_t)(comma - tcp) : strlen(tcp ? tcp : "")),
           tcp ? tcp : "");
  tcp = first;
  const char *colon = strrchr(tcp, ':');
  CHECK(colon && (size_t)(colon - tcp) < sizeof host, "worker 3 listens on "
        "TCP (%s)", tcp);
  if (!colon) {
    distc_value_free(r);
    return;
  }
  memcpy(host, tcp, (size_t)(colon - tcp));
  host[colon - tcp] = '\0';
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(colon + 1))};
  CHECK(inet_pton(AF_INET, host, &sa.sin_addr) == 1, "address %s", tcp);
  distc_value_free(r);
  int fds[20];
  for (int i = 0; i < 20; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(connect(fds[i], (struct sockaddr *)&sa, sizeof sa) == 0,
          "stranger %d connects", i);
  }
  CHECK(write(fds[0], "GET / HTTP/1.0\r\n\r\n", 18) == 18, "garbage sent");
  usleep(100000); /* the worker has accepted them all */
  double t0 = now_s();
  a = distc_listv(3, distc_int(3), distc_string("noop"), distc_list(0));
  OK(distc_remotecall_fetch(2, "call_other", a, &r));
  distc_value_free(a);
  CHECK(distc_value_int(distc_list_at(r, 0)) == 0, "2 -> 3 beside strangers: "
        "%s", distc_value_str(distc_list_at(r, 1), NULL));
  distc_value_free(r);
  /* The handshake gives a stranger 5 s: far less means nobody waited. */
  CHECK(now_s() - t0 < 2.0, "the link took %.2f s", now_s() - t0);
  OK(distc_remotecall_fetch(3, "noop", NULL, &r));
  distc_value_free(r);
  for (int i = 0; i < 20; i++)
    close(fds[i]);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "chain"))
    case_chain();
  else if (!strcmp(name, "future"))
    case_future();
  else if (!strcmp(name, "kill"))
    case_kill();
  else if (!strcmp(name, "kill-send"))
    case_kill_send();
  else if (!strcmp(name, "exchange"))
    case_exchange();
  else if (!strcmp(name, "lazy"))
    case_lazy();
  else if (!strcmp(name, "refuse"))
    case_refuse();
  else if (!strcmp(name, "rtt"))
    case_rtt();
  else if (!strcmp(name, "stranger"))
    case_stranger();
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  OK(distc_finalize());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

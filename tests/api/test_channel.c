/* test_channel.c — remote channels over real worker processes: semantics,
 * blocking, close, handles passed in calls, a producer and two consumers
 * moving 100,000 items, and the owner's death.  One case per run (argv[1])
 * under distc-launch.  Prints `N passed, M failed`. */
#include <distc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"


#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())

/* ---- functions the workers run ---- */

/* [ch, x]: put x; answers the status code. */
DISTC_FUNCTION(put_one) {
  (void)ctx;
  int rc = distc_channel_put(distc_list_at(args, 0), distc_list_at(args, 1));
  return distc_int(rc);
}

/* [ch]: take one; answers [code, value]. */
DISTC_FUNCTION(take_one) {
  (void)ctx;
  distc_value *v = NULL;
  int rc = distc_channel_take(distc_list_at(args, 0), &v);
  return distc_listv(2, distc_int(rc), v ? v : distc_nil());
}

/* [ch]: fetch (peek) one; answers [code, value]. */
DISTC_FUNCTION(fetch_one) {
  (void)ctx;
  distc_value *v = NULL;
  int rc = distc_channel_fetch(distc_list_at(args, 0), &v);
  return distc_listv(2, distc_int(rc), v ? v : distc_nil());
}

/* [ch, n]: puts 0 .. n-1, then closes the channel. */
DISTC_FUNCTION(produce) {
  const distc_value *ch = distc_list_at(args, 0);
  int64_t n = distc_value_int(distc_list_at(args, 1));
  for (int64_t i = 0; i < n; i++) {
    distc_value *x = distc_int(i);
    int rc = distc_channel_put(ch, x);
    distc_value_free(x);
    if (rc < 0)
      return distc_fail(ctx, "put %lld: %s", (long long)i, distc_errmsg());
  }
  if (distc_channel_close(ch) < 0)
    return distc_fail(ctx, "close: %s", distc_errmsg());
  return distc_int(n);
}

/* [ch]: takes until the channel is closed and empty; answers the items, in
 * the order taken, as an int64 array. */
DISTC_FUNCTION(consume) {
  const distc_value *ch = distc_list_at(args, 0);
  size_t n = 0, cap = 1024;
  int64_t *got = malloc(cap * sizeof *got);
  for (;;) {
    distc_value *v = NULL;
    int rc = distc_channel_take(ch, &v);
    if (rc == DISTC_ECLOSED)
      break;
    if (rc < 0) {
      free(got);
      return distc_fail(ctx, "take: %s", distc_errmsg());
    }
    if (n == cap)
      got = realloc(got, (cap *= 2) * sizeof *got);
    got[n++] = distc_value_int(v);
    distc_value_free(v);
  }
  distc_value *a = distc_array(DISTC_I64, 1, &n);
  memcpy(distc_array_data(a), got, n * sizeof *got);
  free(got);
  return a;
}

/* [capacity]: a channel owned by this worker, made here. */
DISTC_FUNCTION(make_here) {
  distc_value *ch = NULL;
  if (distc_channel_new(distc_myid(), (size_t)distc_value_int(
                                          distc_list_at(args, 0)), &ch) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return ch;
}

DISTC_FUNCTION(die) {
  (void)args;
  (void)ctx;
  raise(SIGKILL);
  return distc_nil();
}

/* ---- helpers ---- */

static distc_value *args2(const distc_value *ch, distc_value *x) {
  return distc_listv(x ? 2 : 1, distc_value_ref((distc_value *)ch), x);
}

static int64_t take_int(const distc_value *ch) {
  distc_value *v = NULL;
  int rc = distc_channel_take(ch, &v);
  int64_t x = rc < 0 ? -1000 + rc : distc_value_int(v);
  distc_value_free(v);
  return x;
}

static int put_int(const distc_value *ch, int64_t x) {
  distc_value *v = distc_int(x);
  int rc = distc_channel_put(ch, v);
  distc_value_free(v);
  return rc;
}

/* A future's [code, value] answer. */
static int answer_code(distc_future *f, int64_t *value) {
  distc_value *v = NULL;
  int rc = distc_fetch(f, &v);
  if (rc < 0)
    return rc;
  int code = (int)distc_value_int(distc_list_at(v, 0));
  if (value)
    *value = distc_value_int(distc_list_at(v, 1));
  distc_value_free(v);
  return code;
}

/* Still blocked 0.3 s later.  A correct channel cannot have answered yet,
 * so this never flakes; a channel that failed to block is caught. */
static bool still_blocked(distc_future *f) {
  usleep(300000);
  return !distc_isready(f);
}

/* ---- cases ---- */

/* FIFO order, fetch, isready, capacity, close, on one owner. */
static void semantics(int owner) {
  distc_value *ch = NULL;
  OK(distc_channel_new(owner, 2, &ch));
  CHECK(distc_is_channel(ch) && distc_value_type(ch) == DISTC_HANDLE,
        "a channel handle");
  bool ready = true;
  OK(distc_channel_isready(ch, &ready));
  CHECK(!ready, "empty channel is not ready");
  OK(put_int(ch, 10));
  OK(put_int(ch, 11));
  OK(distc_channel_isready(ch, &ready));
  CHECK(ready, "ready with items");
  distc_value *v = NULL;
  OK(distc_channel_fetch(ch, &v));
  CHECK(distc_value_int(v) == 10, "fetch peeks the oldest");
  distc_value_free(v);
  CHECK(take_int(ch) == 10 && take_int(ch) == 11, "FIFO");

  /* put blocks while full, until a take makes room. */
  OK(put_int(ch, 1));
  OK(put_int(ch, 2));
  distc_future *f;
  distc_value *a = args2(ch, distc_int(3));
  OK(distc_remotecall(3, "put_one", a, &f));
  distc_value_free(a);
  CHECK(still_blocked(f), "put into a full channel blocks");
  CHECK(take_int(ch) == 1, "take makes room");
  v = NULL;
  OK(distc_fetch(f, &v));
  CHECK(distc_value_int(v) == 0, "the blocked put completed");
  distc_value_free(v);
  distc_future_free(f);
  CHECK(take_int(ch) == 2 && take_int(ch) == 3, "the parked value came after");

  /* take and fetch block while empty, until a put. */
  distc_future *ft, *ff;
  a = args2(ch, NULL);
  OK(distc_remotecall(3, "take_one", a, &ft));
  OK(distc_remotecall(2 == owner ? 4 : 2, "fetch_one", a, &ff));
  distc_value_free(a);
  CHECK(still_blocked(ft) && !distc_isready(ff), "take and fetch block");
  OK(put_int(ch, 77));
  int64_t x = 0, y = 0;
  CHECK(answer_code(ft, &x) == 0 && x == 77, "blocked take got %lld",
        (long long)x);
  CHECK(answer_code(ff, &y) == 0 && y == 77, "blocked fetch saw %lld",
        (long long)y);
  distc_future_free(ft);
  distc_future_free(ff);
  OK(distc_channel_isready(ch, &ready));
  CHECK(!ready, "the take took it");

  /* close: blocked takers wake with DISTC_ECLOSED; items left can still be
   * taken; puts fail. */
  a = args2(ch, NULL);
  OK(distc_remotecall(3, "take_one", a, &ft));
  distc_value_free(a);
  CHECK(still_blocked(ft), "take blocks before close");
  OK(distc_channel_close(ch));
  CHECK(answer_code(ft, NULL) == DISTC_ECLOSED, "blocked take woke closed");
  distc_future_free(ft);
  int rc = put_int(ch, 5);
  CHECK(rc == DISTC_ECLOSED && strstr(distc_errmsg(), "closed"),
        "put after close: %d %s", rc, distc_errmsg());
  OK(distc_channel_free(ch));

  OK(distc_channel_new(owner, 4, &ch));
  OK(put_int(ch, 1));
  OK(put_int(ch, 2));
  OK(distc_channel_close(ch));
  CHECK(take_int(ch) == 1 && take_int(ch) == 2, "drain after close");
  rc = distc_channel_take(ch, &v);
  CHECK(rc == DISTC_ECLOSED, "closed and empty: %d", rc);
  /* free: later use of any handle is an error */
  distc_value *other = distc_value_ref(ch);
  OK(distc_channel_free(ch));
  rc = put_int(other, 1);
  CHECK(rc == DISTC_ENOENT, "freed channel: %d %s", rc, distc_errmsg());
  distc_value_free(other);
}

static void case_master_owned(void) { semantics(1); }
static void case_worker_owned(void) { semantics(2); }

static void case_errors(void) {
  distc_value *ch = NULL;
  CHECK(distc_channel_new(1, 0, &ch) == DISTC_EINVAL && !ch, "capacity 0");
  CHECK(distc_channel_new(42, 1, &ch) == DISTC_ENOENT, "no process 42");
  distc_value *x = distc_int(1), *v;
  CHECK(distc_channel_put(x, x) == DISTC_ETYPE, "not a channel");
  CHECK(distc_channel_take(x, &v) == DISTC_ETYPE, "not a channel");
  distc_value_free(x);
}

/* Workers use a channel owned by another worker (routed by the master), and
 * one owned by themselves (waiting there must not stop the calls that
 * unblock it). */
static void case_between_workers(void) {
  distc_value *ch = NULL, *cap = distc_listv(1, distc_int(1));
  OK(distc_remotecall_fetch(2, "make_here", cap, &ch));
  distc_value_free(cap);
  CHECK(distc_is_channel(ch), "a worker made a channel and returned it");
  if (!ch)
    return;
  distc_future *t3, *t2;
  distc_value *a = args2(ch, NULL);
  /* worker 3 waits on worker 2's channel; worker 2 waits on its own */
  OK(distc_remotecall(3, "take_one", a, &t3));
  OK(distc_remotecall(2, "take_one", a, &t2));
  distc_value_free(a);
  CHECK(still_blocked(t3) && !distc_isready(t2), "both wait");
  a = args2(ch, distc_int(5));
  OK(distc_remotecall_wait(4, "put_one", a)); /* worker 4 puts, routed */
  distc_value_free(a);
  OK(put_int(ch, 6));
  int64_t x3 = 0, x2 = 0;
  CHECK(answer_code(t3, &x3) == 0 && answer_code(t2, &x2) == 0 &&
            x2 + x3 == 11 && x2 != x3,
        "each got one of 5, 6: %lld %lld", (long long)x2, (long long)x3);
  distc_future_free(t3);
  distc_future_free(t2);
  OK(distc_channel_free(ch));
}

/* One producer, two consumers, 100,000 items: none lost, none twice. */
static void pipeline(int owner, int64_t n) {
  distc_value *ch = NULL;
  OK(distc_channel_new(owner, 64, &ch));
  if (!ch)
    return;
  distc_future *p, *c3, *c4;
  distc_value *a = args2(ch, NULL);
  OK(distc_remotecall(3, "consume", a, &c3));
  OK(distc_remotecall(4, "consume", a, &c4));
  distc_value_free(a);
  a = args2(ch, distc_int(n));
  OK(distc_remotecall(2, "produce", a, &p));
  distc_value_free(a);
  distc_value *r3 = NULL, *r4 = NULL, *rp = NULL;
  OK(distc_fetch(p, &rp));
  OK(distc_fetch(c3, &r3));
  OK(distc_fetch(c4, &r4));
  unsigned char *seen = calloc((size_t)n, 1);
  size_t n3 = distc_array_len(r3), n4 = distc_array_len(r4), bad = 0, dup = 0;
  const int64_t *x3 = distc_array_data(r3), *x4 = distc_array_data(r4);
  for (size_t i = 0; i < n3 + n4; i++) {
    int64_t x = i < n3 ? x3[i] : x4[i - n3];
    if (x < 0 || x >= n)
      bad++;
    else if (seen[x]++)
      dup++;
  }
  /* Each consumer saw its items in the order they were put. */
  size_t order = 0;
  for (size_t i = 1; i < n3; i++)
    order += x3[i] < x3[i - 1];
  for (size_t i = 1; i < n4; i++)
    order += x4[i] < x4[i - 1];
  CHECK(distc_value_int(rp) == n, "produced %lld", (long long)distc_value_int(rp));
  CHECK(n3 + n4 == (size_t)n && bad == 0 && dup == 0,
        "owner %d: %zu + %zu items, %zu out of range, %zu twice", owner, n3,
        n4, bad, dup);
  CHECK(order == 0, "FIFO per consumer (%zu inversions)", order);
  CHECK(n3 > 0 && n4 > 0, "both consumers took part: %zu %zu", n3, n4);
  free(seen);
  distc_value_free(rp);
  distc_value_free(r3);
  distc_value_free(r4);
  distc_future_free(p);
  distc_future_free(c3);
  distc_future_free(c4);
  OK(distc_channel_free(ch));
}

static void case_pipeline(void) { pipeline(1, 100000); }
static void case_pipeline_worker(void) { pipeline(2, 100000); }

/* The owner dies: the master's and a worker's blocked takes fail with
 * DISTC_EPROCEXIT, and so does anything later. */
static distc_value *dying_ch;
static int master_rc;
static atomic_bool taking;

static void *master_take(void *arg) {
  (void)arg;
  distc_value *v = NULL;
  atomic_store(&taking, true);
  master_rc = distc_channel_take(dying_ch, &v);
  distc_value_free(v);
  return NULL;
}

static void case_owner_dies(void) {
  OK(distc_channel_new(3, 1, &dying_ch));
  if (!dying_ch)
    return;
  distc_future *t2;
  distc_value *a = args2(dying_ch, NULL);
  OK(distc_remotecall(2, "take_one", a, &t2));
  distc_value_free(a);
  pthread_t t;
  pthread_create(&t, NULL, master_take, NULL);
  while (!atomic_load(&taking))
    usleep(1000);
  /* The take is sent microseconds after the flag; 0.3 s is ample. */
  CHECK(still_blocked(t2), "worker 2 waits on worker 3's channel");
  distc_remote_do(3, "die", NULL);
  pthread_join(t, NULL);
  CHECK(master_rc == DISTC_EPROCEXIT, "the master's take: %d", master_rc);
  distc_value *v = NULL;
  CHECK(distc_fetch(t2, &v) == 0, "worker 2 answered");
  int code = (int)distc_value_int(distc_list_at(v, 0));
  CHECK(code == DISTC_EPROCEXIT, "worker 2's take: %d", code);
  distc_value_free(v);
  distc_future_free(t2);
  int rc = put_int(dying_ch, 1);
  CHECK(rc == DISTC_ENOENT || rc == DISTC_EPROCEXIT, "later put: %d", rc);
  distc_value_free(dying_ch);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "master-owned"))
    case_master_owned();
  else if (!strcmp(name, "worker-owned"))
    case_worker_owned();
  else if (!strcmp(name, "errors"))
    case_errors();
  else if (!strcmp(name, "between-workers"))
    case_between_workers();
  else if (!strcmp(name, "pipeline"))
    case_pipeline();
  else if (!strcmp(name, "pipeline-worker"))
    case_pipeline_worker();
  else if (!strcmp(name, "owner-dies"))
    case_owner_dies();
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  OK(distc_finalize());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

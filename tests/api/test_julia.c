/* test_julia.c — cases of Julia's own Distributed test suite
 * (test/distributed_exec.jl) that distc claims to follow, written as a
 * user would write them in C: where pmap retries go, when rmprocs returns,
 * the order of on_error and retries, and parallel calls made on a worker.
 * One binary, one case per run (argv[1]), started by meson under
 * distc-launch.  Prints `N passed, M failed`. */
#include <distc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"

#define OK(call)                                                              \
  do {                                                                        \
    int rc_ = (call);                                                         \
    CHECK(rc_ >= 0, "rc=%d %s", rc_, distc_errmsg());                         \
  } while (0)

static int64_t at_int(const distc_value *l, size_t i) {
  return distc_value_int(distc_list_at(l, i));
}

static distc_value *ints(int64_t lo, size_t n) {
  distc_value *l = distc_list(n);
  for (size_t i = 0; i < n; i++)
    distc_list_set(l, i, distc_int(lo + (int64_t)i));
  return l;
}

/* The worker named by an item's error text ("On worker 4: ..."), or 0. */
static int worker_of(const char *msg) {
  const char *p = msg ? strstr(msg, "On worker ") : NULL;
  return p ? atoi(p + strlen("On worker ")) : 0;
}

/* ---- functions the workers run ---- */

/* Julia's `iseven(myid()) ? error("foobar") : myid()`. */
DISTC_FUNCTION(odd_workers_only) {
  (void)args;
  int me = distc_myid();
  if (me % 2 == 0)
    return distc_fail(ctx, "foobar on even worker %d", me);
  return distc_int(me);
}

DISTC_FUNCTION(whereami) {
  (void)args;
  (void)ctx;
  return distc_int(distc_myid());
}

DISTC_FUNCTION(sleep_ms) {
  (void)ctx;
  usleep((useconds_t)at_int(args, 0) * 1000);
  return distc_nil();
}

/* Fails the first time this process sees an item, succeeds after. */
static unsigned char flaky_seen[4096];

DISTC_FUNCTION(flaky) {
  int64_t x = at_int(args, 0);
  if (x < 0 || x >= 4096)
    return distc_fail(ctx, "item out of range");
  if (!flaky_seen[x]++)
    return distc_fail(ctx, "flaky first try of %lld", (long long)x);
  return distc_int(x);
}

DISTC_FUNCTION(chunk_len) {
  (void)ctx;
  return distc_int(at_int(args, 1) - at_int(args, 0));
}

/* The parallel calls a worker may not make yet: [code, message] each of
 * pmap, reduce, distributed for, its async form and a pool of workers 3
 * and 4 (Julia's test maps over that pool from worker 2); then a local
 * pmap's code and its last result. */
DISTC_FUNCTION(parallel_here) {
  (void)args;
  (void)ctx;
  distc_value *in = ints(0, 5), *out = NULL, *r = NULL, *res = distc_list(0);
  distc_future *f = NULL;
  distc_pool *p = NULL;
  int rc[5], others[] = {3, 4};
  char *msg[5];
  rc[0] = distc_pmap("whereami", in, NULL, &out);
  msg[0] = strdup(distc_errmsg());
  rc[1] = distc_reduce("chunk_len", 0, 5, DISTC_OP_SUM, NULL, &r);
  msg[1] = strdup(distc_errmsg());
  rc[2] = distc_distributed_for("chunk_len", 0, 5, NULL);
  msg[2] = strdup(distc_errmsg());
  rc[3] = distc_distributed_for_async("chunk_len", 0, 5, NULL, &f);
  msg[3] = strdup(distc_errmsg());
  rc[4] = distc_pool_new(others, 2, &p);
  msg[4] = strdup(distc_errmsg());
  for (int k = 0; k < 5; k++) {
    distc_list_push(res, distc_int(rc[k]));
    distc_list_push(res, distc_string(msg[k] ? msg[k] : ""));
    free(msg[k]);
  }
  distc_pmap_opts local = {.local = true};
  int lrc = distc_pmap("whereami", in, &local, &out);
  distc_list_push(res, distc_int(lrc));
  distc_list_push(res, distc_int(lrc == 0 ? at_int(out, 4) : -1));
  distc_value_free(out);
  distc_value_free(r);
  distc_future_free(f);
  distc_pool_free(p);
  distc_value_free(in);
  return res;
}

/* ---- item 1: retries move on, idle workers take turns ---- */

#define NSPREAD 200

typedef struct spread {
  int last[NSPREAD];  /* the worker the item failed on last */
  int same;           /* retries that failed again on that same worker */
  int checks;
} spread;

static bool note_failure(size_t index, int err, const char *msg, int attempt,
                         void *arg) {
  (void)err;
  (void)attempt;
  spread *s = arg;
  int w = worker_of(msg);
  s->checks++;
  if (index < NSPREAD) {
    if (s->last[index] == w)
      s->same++;
    s->last[index] = w;
  }
  return true;
}

/* Over workers 2..5, a function that fails on 2 and 4, with 1,000 retries
 * allowed: every item ends on 3 or 5, and no retry goes back to the worker
 * that just failed it (Julia's pool hands workers out first in, first
 * out).  With and without a retry delay: with one, every worker is idle
 * when the retry goes. */
static void case_retry_spread(void) {
  int ids[8];
  CHECK(distc_workers(ids, 8) == 4, "wants 4 workers");
  distc_value *in = ints(0, NSPREAD), *out = NULL;
  for (int pass = 0; pass < 2; pass++) {
    spread *s = calloc(1, sizeof *s);
    distc_pmap_opts o = {.retries = 1000,
                         .retry_delay_s = pass ? 0.001 : 0,
                         .retry_check = note_failure,
                         .retry_arg = s,
                         .no_progress = true};
    OK(distc_pmap("odd_workers_only", in, &o, &out));
    int bad = 0;
    for (size_t i = 0; out && i < NSPREAD; i++)
      bad += at_int(out, i) != 3 && at_int(out, i) != 5;
    CHECK(out && bad == 0, "pass %d: %d items not from an odd worker", pass,
          bad);
    CHECK(s->same == 0, "pass %d: %d of %d retries went back to the worker "
          "that had just failed them", pass, s->same, s->checks);
    CHECK(s->checks >= 1, "pass %d: no item failed at all?", pass);
    distc_value_free(out);
    out = NULL;
    free(s);
  }
  /* With one worker, a retry goes back to it: there is nowhere else. */
  int three = 3;
  distc_pool *p = NULL;
  OK(distc_pool_new(&three, 1, &p));
  distc_value *in2 = ints(300, 3);
  distc_pmap_opts o = {.pool = p, .retries = 1, .no_progress = true};
  OK(distc_pmap("flaky", in2, &o, &out));
  CHECK(out && at_int(out, 2) == 302, "retried on the pool's one worker");
  distc_value_free(out);
  distc_value_free(in2);
  distc_pool_free(p);
  distc_value_free(in);
}

/* One-item maps, one after the other, take the workers in turn rather
 * than the first one each time. */
static void case_round_robin(void) {
  int ids[8], n = distc_workers(ids, 8), seen[8] = {0};
  CHECK(n == 4, "wants 4 workers");
  distc_value *in = ints(0, 1), *out = NULL;
  for (int k = 0; k < 2 * n; k++) {
    OK(distc_pmap("whereami", in, NULL, &out));
    int w = (int)at_int(out, 0);
    for (int j = 0; j < n; j++)
      seen[j] += ids[j] == w;
    distc_value_free(out);
    out = NULL;
  }
  for (int j = 0; j < n; j++)
    CHECK(seen[j] == 2, "worker %d ran %d of %d one-item maps", ids[j],
          seen[j], 2 * n);
  /* And a map of as many items as workers puts one on each. */
  distc_value *who = ints(0, (size_t)n);
  memset(seen, 0, sizeof seen);
  OK(distc_pmap("whereami", who, NULL, &out));
  for (int i = 0; out && i < n; i++)
    for (int j = 0; j < n; j++)
      seen[j] += ids[j] == at_int(out, (size_t)i);
  for (int j = 0; j < n; j++)
    CHECK(seen[j] == 1, "worker %d ran %d of %d items", ids[j], seen[j], n);
  distc_value_free(out);
  distc_value_free(who);
  distc_value_free(in);
}

/* ---- item 3: on_error sees each failure before any retry ---- */

typedef struct hook_log {
  int hooks, checks, out_of_order;
  unsigned char pending[64]; /* the hook saw a failure the check has not */
} hook_log;

static distc_value *stand_in(size_t index, const distc_value *item, int err,
                             const char *msg, void *arg) {
  (void)item, (void)err, (void)msg;
  hook_log *h = arg;
  h->hooks++;
  return distc_int(-1000 - (int64_t)index);
}

static distc_value *rethrow(size_t index, const distc_value *item, int err,
                            const char *msg, void *arg) {
  (void)item, (void)err, (void)msg;
  hook_log *h = arg;
  h->hooks++;
  if (index < 64)
    h->pending[index] = 1;
  return NULL;
}

static bool after_hook(size_t index, int err, const char *msg, int attempt,
                       void *arg) {
  (void)err, (void)msg, (void)attempt;
  hook_log *h = arg;
  h->checks++;
  if (index >= 64 || !h->pending[index])
    h->out_of_order++;
  else
    h->pending[index] = 0;
  return true;
}

static void case_on_error_order(void) {
  /* flaky fails the first try of every item on every worker. */
  distc_value *in = ints(0, 20), *out = NULL;
  hook_log h = {0};
  distc_pmap_opts o = {.retries = 3, .on_error = stand_in,
                       .on_error_arg = &h, .retry_check = after_hook,
                       .retry_arg = &h, .no_progress = true};
  /* A value from the hook ends the item: no retry. */
  OK(distc_pmap("flaky", in, &o, &out));
  int bad = 0;
  for (size_t i = 0; out && i < 20; i++)
    bad += at_int(out, i) != -1000 - (int64_t)i;
  CHECK(out && bad == 0, "%d items were not the hook's value", bad);
  CHECK(h.hooks == 20 && h.checks == 0, "hook %d times, retry_check %d "
        "times (want 20, 0)", h.hooks, h.checks);
  distc_value_free(out);
  out = NULL;

  /* NULL from the hook rethrows: the retry policy runs, after the hook. */
  distc_value *in2 = ints(100, 20);
  memset(&h, 0, sizeof h);
  o.on_error = rethrow;
  OK(distc_pmap("flaky", in2, &o, &out));
  bad = 0;
  for (size_t i = 0; out && i < 20; i++)
    bad += at_int(out, i) != 100 + (int64_t)i;
  CHECK(out && bad == 0, "%d items not retried to success", bad);
  CHECK(h.hooks >= 20 && h.hooks == h.checks && h.out_of_order == 0,
        "hook %d times, retry_check %d times, %d checks before the hook",
        h.hooks, h.checks, h.out_of_order);
  distc_value_free(out);
  out = NULL;

  /* Rethrown with no retry left: the map fails with the item's error. */
  distc_value *in3 = ints(200, 4);
  memset(&h, 0, sizeof h);
  o.retries = 0;
  int rc = distc_pmap("flaky", in3, &o, &out);
  CHECK(rc == DISTC_EREMOTE && out == NULL &&
            strstr(distc_errmsg(), "flaky first try"),
        "rethrown, no retries: %d %s", rc, distc_errmsg());
  CHECK(h.hooks >= 1 && h.checks == 0, "hook %d, check %d", h.hooks,
        h.checks);
  distc_value_free(in3);
  distc_value_free(in2);
  distc_value_free(in);
}

/* ---- item 2: rmprocs returns once the workers are gone ---- */

/* Run with DISTC_RMPROCS_GRACE short: each round adds 3 workers, keeps
 * them busy past the grace, removes them and looks at once. */
static void case_rmprocs_busy(void) {
  int lingering = 0, in_pool = 0;
  for (int round = 0; round < 20; round++) {
    int ids[3], all[16];
    distc_addprocs_opts ao = {.count = 3};
    int n = distc_addprocs(&ao, ids);
    CHECK(n == 3, "round %d: addprocs %d: %s", round, n, distc_errmsg());
    if (n != 3)
      break;
    distc_pool *p = NULL;
    OK(distc_pool_new(ids, 3, &p));
    distc_future *f[3] = {NULL};
    distc_value *a = distc_listv(1, distc_int(20000));
    for (int k = 0; k < 3; k++)
      OK(distc_remotecall(ids[k], "sleep_ms", a, &f[k]));
    distc_value_free(a);
    OK(distc_rmprocs(ids, 3));
    int nw = distc_workers(all, 16);
    for (int j = 0; j < nw && j < 16; j++)
      for (int k = 0; k < 3; k++)
        lingering += all[j] == ids[k];
    in_pool += p ? distc_pool_size(p) : 0;
    for (int k = 0; k < 3; k++) {
      CHECK(f[k] && distc_wait(f[k]) == DISTC_EPROCEXIT,
            "round %d: the call on worker %d ended otherwise", round, ids[k]);
      distc_future_free(f[k]);
    }
    distc_pool_free(p);
  }
  CHECK(lingering == 0, "%d removed workers still listed right after "
        "rmprocs returned", lingering);
  CHECK(in_pool == 0, "%d removed workers still in a pool right after "
        "rmprocs returned", in_pool);
}

/* ---- item 4: parallel calls from a worker say why they fail ---- */

static void case_worker_parallel(void) {
  distc_value *v = NULL;
  OK(distc_remotecall_fetch(2, "parallel_here", NULL, &v));
  static const char *what[] = {"pmap", "distc_reduce", "distc_distributed_for",
                               "distc_distributed_for_async",
                               "distc_pool_new"};
  for (size_t k = 0; k < 5; k++) {
    const char *msg = distc_value_str(distc_list_at(v, 2 * k + 1), NULL);
    char head[64];
    snprintf(head, sizeof head, "%s from worker 2:", what[k]);
    CHECK(at_int(v, 2 * k) == DISTC_ENOTMASTER && msg &&
              strstr(msg, head) &&
              strstr(msg, "by the master only in this version") &&
              strstr(msg, "on the master") && !strstr(msg, "(null)"),
          "%s on a worker: %lld '%s'", what[k], (long long)at_int(v, 2 * k),
          msg ? msg : "");
  }
  CHECK(at_int(v, 10) == 0 && at_int(v, 11) == 2, "local pmap on worker 2: "
        "%lld %lld", (long long)at_int(v, 10), (long long)at_int(v, 11));
  distc_value_free(v);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  static const struct {
    const char *name;
    void (*run)(void);
  } cases[] = {
      {"retry-spread", case_retry_spread},
      {"round-robin", case_round_robin},
      {"on-error-order", case_on_error_order},
      {"rmprocs-busy", case_rmprocs_busy},
      {"worker-parallel", case_worker_parallel},
  };
  size_t k = 0;
  while (k < sizeof cases / sizeof *cases && strcmp(cases[k].name, name))
    k++;
  if (k == sizeof cases / sizeof *cases) {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  cases[k].run();
  if (distc_finalize() < 0)
    CHECK(0, "finalize: %s", distc_errmsg());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

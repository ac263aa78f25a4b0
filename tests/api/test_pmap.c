/* test_pmap.c — integration tests of pmap, worker pools, distributed
 * reductions and loops over real worker processes.  One binary, one case
 * per run (argv[1]), started by meson under distc-launch (or alone for the
 * standalone case).  Prints `N passed, M failed`. */
#include <distc.h>
#include <fcntl.h>
#include <math.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"


#define OK(call)                                                              \
  do {                                                                        \
    int rc_ = (call);                                                         \
    CHECK(rc_ >= 0, "rc=%d %s", rc_, distc_errmsg());                         \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t at_int(const distc_value *l, size_t i) {
  return distc_value_int(distc_list_at(l, i));
}

/* A list of the ints lo, lo+1, ..., lo+n-1. */
static distc_value *ints(int64_t lo, size_t n) {
  distc_value *l = distc_list(n);
  for (size_t i = 0; i < n; i++)
    distc_list_set(l, i, distc_int(lo + (int64_t)i));
  return l;
}

/* ---- functions the workers run ---- */

/* [x*x, myid], after sleeping an uneven few milliseconds. */
DISTC_FUNCTION(square_uneven) {
  (void)ctx;
  int64_t x = at_int(args, 0);
  usleep((useconds_t)((x * 7) % 5) * 1000);
  return distc_listv(2, distc_int(x * x), distc_int(distc_myid()));
}

DISTC_FUNCTION(times3) {
  (void)ctx;
  return distc_int(at_int(args, 0) * 3);
}

DISTC_FUNCTION(whereami) {
  (void)args;
  (void)ctx;
  return distc_int(distc_myid());
}

/* Doubles an int or double item; echoes anything else. */
DISTC_FUNCTION(twice) {
  (void)ctx;
  const distc_value *x = distc_list_at(args, 0);
  if (distc_value_type(x) == DISTC_DOUBLE)
    return distc_double(2 * distc_value_double(x));
  return distc_int(2 * distc_value_int(x));
}

/* item + arg[0]; counts how many times a new copy of the argument reached
 * this process.  The copy seen last is kept alive, so a fresh copy can
 * never reuse its address and pass for it. */
static distc_value *seen_arg;
static int arg_copies;

DISTC_FUNCTION(add_arg) {
  (void)ctx;
  distc_value *a = distc_list_at(args, 1);
  if (a != seen_arg) {
    distc_value_free(seen_arg);
    seen_arg = distc_value_ref(a);
    arg_copies++;
  }
  return distc_int(at_int(args, 0) + at_int(a, 0));
}

DISTC_FUNCTION(arg_copies_here) {
  (void)args;
  (void)ctx;
  return distc_int(arg_copies);
}

DISTC_FUNCTION(fail_odd) {
  int64_t x = at_int(args, 0);
  if (x % 2)
    return distc_fail(ctx, "odd item %lld", (long long)x);
  return distc_int(x);
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

/* Worker 2 dies at its first item >= 5; everyone else takes 5 ms. */
DISTC_FUNCTION(die_on_2) {
  (void)ctx;
  int64_t x = at_int(args, 0);
  if (distc_myid() == 2 && x >= 5)
    raise(SIGKILL);
  usleep(5000);
  return distc_int(x * 3);
}

DISTC_FUNCTION(die_always) {
  (void)args;
  (void)ctx;
  usleep(20000);
  raise(SIGKILL);
  return distc_nil();
}

/* A 16 MiB array item comes back negated. */
DISTC_FUNCTION(negate) {
  const distc_value *a = distc_list_at(args, 0);
  if (distc_value_type(a) != DISTC_ARRAY)
    return distc_fail(ctx, "wants an array");
  size_t n = distc_array_len(a);
  distc_value *r = distc_array(DISTC_F64, 1, &n);
  const double *x = distc_array_data(a);
  double *y = distc_array_data(r);
  for (size_t i = 0; i < n; i++)
    y[i] = -x[i];
  return r;
}

DISTC_FUNCTION(ident) {
  (void)ctx;
  return distc_value_ref(distc_list_at(args, 0));
}

/* Ints below 50 come back as ints, the others as strings. */
DISTC_FUNCTION(int_or_string) {
  (void)ctx;
  int64_t x = at_int(args, 0);
  if (x < 50)
    return distc_int(x);
  char buf[32];
  snprintf(buf, sizeof buf, "s%lld", (long long)x);
  return distc_string(buf);
}

/* keep_item keeps a reference to every item it is given, keep_args to
 * every argument list (the batch runner must notice either before reusing
 * it); kept_sum reports the sum of the kept items, as they read now. */
static distc_value *kept_args, *kept_items;

DISTC_FUNCTION(keep_item) {
  (void)ctx;
  if (!kept_items)
    kept_items = distc_list(0);
  distc_list_push(kept_items, distc_value_ref(distc_list_at(args, 0)));
  return distc_value_ref(distc_list_at(args, 0));
}

DISTC_FUNCTION(keep_args) {
  (void)ctx;
  if (!kept_args)
    kept_args = distc_list(0);
  distc_list_push(kept_args, distc_value_ref((distc_value *)args));
  return distc_value_ref(distc_list_at(args, 0));
}

DISTC_FUNCTION(kept_sum) {
  (void)args;
  (void)ctx;
  double s = 0;
  for (size_t i = 0; i < distc_list_len(kept_items); i++)
    s += distc_value_double(distc_list_at(kept_items, i));
  for (size_t i = 0; i < distc_list_len(kept_args); i++)
    s += distc_value_double(distc_list_at(distc_list_at(kept_args, i), 0));
  return distc_double(s);
}

/* On a worker: what the parallel calls say there.  [pmap rc, pmap local
 * rc, the local map's last result, reduce rc, pool rc, for rc]. */
DISTC_FUNCTION(parallel_from_worker) {
  (void)args;
  (void)ctx;
  distc_value *in = ints(0, 5), *out = NULL, *r = NULL;
  int rc1 = distc_pmap("times3", in, NULL, &out);
  distc_pmap_opts local = {.local = true};
  int rc2 = distc_pmap("times3", in, &local, &out);
  int64_t last = rc2 == 0 ? at_int(out, 4) : -1;
  distc_value_free(out);
  int rc3 = distc_reduce("chunk_len", 0, 5, DISTC_OP_SUM, NULL, &r);
  distc_pool *p = NULL;
  int id = distc_myid();
  int rc4 = distc_pool_new(&id, 1, &p);
  int rc5 = distc_distributed_for("chunk_len", 0, 5, NULL);
  distc_value_free(in);
  return distc_listv(6, distc_int(rc1), distc_int(rc2), distc_int(last),
                     distc_int(rc3), distc_int(rc4), distc_int(rc5));
}

/* An array of n doubles, all x. */
static distc_value *filled(size_t n, double x) {
  distc_value *a = distc_array(DISTC_F64, 1, &n);
  double *d = distc_array_data(a);
  for (size_t i = 0; i < n; i++)
    d[i] = x;
  return a;
}

/* Asks the master for times3(x) (a call back while the caller waits). */
DISTC_FUNCTION(ask_master) {
  int64_t x = at_int(args, 0);
  distc_value *a = distc_listv(1, distc_int(x)), *v = NULL;
  int rc = distc_remotecall_fetch(DISTC_MASTER, "times3", a, &v);
  distc_value_free(a);
  if (rc < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return v;
}

DISTC_FUNCTION(chunk_die) {
  (void)ctx;
  if (at_int(args, 0) == 0)
    raise(SIGKILL);
  return distc_int(1);
}

/* [array, n] -> an array of n copies of the array's first element */
DISTC_FUNCTION(make_array) {
  const distc_value *a = distc_list_at(distc_list_at(args, 0), 0);
  size_t n = (size_t)at_int(distc_list_at(args, 0), 1);
  if (!n)
    return distc_fail(ctx, "make_array wants [array, n]");
  return filled(n, ((const double *)distc_array_data(a))[0]);
}

DISTC_FUNCTION(sleep_1ms) {
  (void)ctx;
  usleep(1000);
  return distc_int(at_int(args, 0));
}

DISTC_FUNCTION(ospid) {
  (void)args;
  (void)ctx;
  return distc_int(getpid());
}

DISTC_FUNCTION(sleep_ms) {
  (void)ctx;
  usleep((useconds_t)at_int(args, 0) * 1000);
  return distc_int(distc_myid());
}

/* ---- chunk functions for the loops: args [lo, hi(, arg)] ---- */

static int64_t chunk_lo = -1, chunk_hi = -1, chunk_calls;

/* The partials every operator is tried on: x(i) = i % 13 + 1. */
DISTC_FUNCTION(chunk_int) {
  (void)ctx;
  int64_t lo = at_int(args, 0), hi = at_int(args, 1);
  const char *op = distc_value_str(distc_list_at(args, 2), NULL);
  int64_t acc = !strcmp(op, "prod") ? 1 : !strcmp(op, "min") ? INT64_MAX
                : !strcmp(op, "max") ? INT64_MIN : 0;
  for (int64_t i = lo; i < hi; i++) {
    int64_t x = i % 13 + 1;
    if (!strcmp(op, "sum"))
      acc += x;
    else if (!strcmp(op, "prod"))
      acc = (int64_t)((uint64_t)acc * (uint64_t)x);
    else if (!strcmp(op, "min"))
      acc = x < acc ? x : acc;
    else
      acc = x > acc ? x : acc;
  }
  return distc_int(acc);
}

/* The sum of x(i) over the chunk: a double, or an int for chunks that
 * start at an odd i (so the partials mix). */
DISTC_FUNCTION(chunk_double) {
  (void)ctx;
  int64_t lo = at_int(args, 0), hi = at_int(args, 1);
  int64_t acc = 0;
  for (int64_t i = lo; i < hi; i++)
    acc += i % 13 + 1;
  if (lo % 2)
    return distc_int(acc);
  return distc_double((double)acc);
}

/* A double per chunk, NaN for the chunk holding 50: min and max must
 * propagate it, as Julia's do. */
DISTC_FUNCTION(chunk_nan) {
  (void)ctx;
  int64_t lo = at_int(args, 0), hi = at_int(args, 1);
  return distc_double(lo <= 50 && 50 < hi ? NAN : (double)lo);
}

/* An array of dtype arg: element k is the sum over the chunk of
 * (i + k) % 7 (or, for min/max, the min/max). */
DISTC_FUNCTION(chunk_array) {
  int64_t lo = at_int(args, 0), hi = at_int(args, 1);
  const distc_value *spec = distc_list_at(args, 2);
  distc_dtype dt = (distc_dtype)at_int(spec, 0);
  const char *op = distc_value_str(distc_list_at(spec, 1), NULL);
  size_t n = 5;
  distc_value *a = distc_array(dt, 1, &n);
  if (!a)
    return distc_fail(ctx, "no memory");
  for (size_t k = 0; k < n; k++) {
    double acc = !strcmp(op, "min") ? 1e9 : !strcmp(op, "max") ? -1e9
                 : !strcmp(op, "prod") ? 1 : 0;
    for (int64_t i = lo; i < hi; i++) {
      double x = (double)((i + (int64_t)k) % 7 + 1);
      if (!strcmp(op, "sum"))
        acc += x;
      else if (!strcmp(op, "prod"))
        acc = x == 7 ? acc * 2 : acc; /* stays small: 2^(count of 7s) */
      else if (!strcmp(op, "min"))
        acc = x < acc ? x : acc;
      else
        acc = x > acc ? x : acc;
    }
    void *d = distc_array_data(a);
    switch (dt) {
    case DISTC_F64: ((double *)d)[k] = acc; break;
    case DISTC_F32: ((float *)d)[k] = (float)acc; break;
    case DISTC_I64: ((int64_t *)d)[k] = (int64_t)acc; break;
    case DISTC_I32: ((int32_t *)d)[k] = (int32_t)acc; break;
    case DISTC_U8: ((uint8_t *)d)[k] = (uint8_t)(int64_t)acc; break; /* wraps */
    }
  }
  return a;
}

/* Sum of i*i over the chunk, and how many: [sum, count]. */
DISTC_FUNCTION(chunk_pair) {
  (void)ctx;
  int64_t lo = at_int(args, 0), hi = at_int(args, 1), s = 0;
  for (int64_t i = lo; i < hi; i++)
    s += i * i;
  return distc_listv(2, distc_int(s), distc_int(hi - lo));
}

/* The custom reducer: element-wise sum of [sum, count] pairs. */
DISTC_FUNCTION(add_pairs) {
  const distc_value *a = distc_list_at(args, 0), *b = distc_list_at(args, 1);
  if (distc_list_len(a) != 2 || distc_list_len(b) != 2)
    return distc_fail(ctx, "add_pairs wants two pairs");
  return distc_listv(2, distc_int(at_int(a, 0) + at_int(b, 0)),
                     distc_int(at_int(a, 1) + at_int(b, 1)));
}

DISTC_FUNCTION(bad_reducer) {
  (void)args;
  return distc_fail(ctx, "reducer says no");
}

/* Fails on the chunk that holds 50. */
DISTC_FUNCTION(chunk_fail50) {
  int64_t lo = at_int(args, 0), hi = at_int(args, 1);
  if (lo <= 50 && 50 < hi)
    return distc_fail(ctx, "no 50 please");
  return distc_int(hi - lo);
}

/* Records its chunk on this process (the loop's side effect). */
DISTC_FUNCTION(chunk_record) {
  (void)ctx;
  chunk_lo = at_int(args, 0);
  chunk_hi = at_int(args, 1);
  chunk_calls++;
  usleep(20000);
  return distc_nil();
}

DISTC_FUNCTION(chunk_seen) {
  (void)args;
  (void)ctx;
  return distc_listv(3, distc_int(chunk_lo), distc_int(chunk_hi),
                     distc_int(chunk_calls));
}

DISTC_FUNCTION(chunk_len) {
  (void)ctx;
  return distc_int(at_int(args, 1) - at_int(args, 0));
}

DISTC_FUNCTION(chunk_one) {
  (void)args;
  (void)ctx;
  return distc_double(1.0);
}

/* ---- pmap ---- */

static void case_pmap_order(void) {
  distc_value *in = ints(0, 60), *out = NULL;
  size_t sizes[] = {0, 1, 7};
  for (size_t s = 0; s < 3; s++) {
    distc_pmap_opts o = {.batch_size = sizes[s]};
    OK(distc_pmap("square_uneven", in, &o, &out));
    CHECK(distc_list_len(out) == 60, "len %zu", distc_list_len(out));
    int bad = 0, used[16] = {0}, nused = 0;
    for (size_t i = 0; i < distc_list_len(out); i++) {
      const distc_value *r = distc_list_at(out, i);
      bad += at_int(r, 0) != (int64_t)(i * i);
      int w = (int)at_int(r, 1);
      if (w >= 0 && w < 16 && !used[w]++)
        nused++;
    }
    CHECK(bad == 0, "batch %zu: %d results out of place", sizes[s], bad);
    CHECK(nused == 3, "batch %zu: %d workers took part", sizes[s], nused);
    distc_value_free(out);
  }
  distc_value_free(in);
}

static void case_pmap_arg(void) {
  distc_value *in = ints(0, 200), *out = NULL;
  distc_value *arg = distc_listv(1, distc_int(1000));
  distc_pmap_opts o = {.batch_size = 1, .arg = arg};
  OK(distc_pmap("add_arg", in, &o, &out));
  int bad = 0;
  for (size_t i = 0; i < 200; i++)
    bad += at_int(out, i) != 1000 + (int64_t)i;
  CHECK(bad == 0 && distc_list_len(out) == 200, "%d wrong", bad);
  distc_value_free(out);
  /* 200 calls, one copy of the argument per worker. */
  int ids[8], n = distc_workers(ids, 8);
  for (int k = 0; k < n; k++) {
    distc_value *v;
    OK(distc_remotecall_fetch(ids[k], "arg_copies_here", NULL, &v));
    CHECK(distc_value_int(v) == 1, "worker %d got the argument %lld times",
          ids[k], (long long)distc_value_int(v));
    distc_value_free(v);
  }
  /* A second map brings its own argument, once again. */
  distc_value *arg2 = distc_listv(1, distc_int(-5));
  o.arg = arg2;
  o.batch_size = 0;
  OK(distc_pmap("add_arg", in, &o, &out));
  CHECK(at_int(out, 0) == -5 && at_int(out, 199) == 194, "second map %lld",
        (long long)at_int(out, 199));
  distc_value_free(out);
  for (int k = 0; k < n; k++) {
    distc_value *v;
    OK(distc_remotecall_fetch(ids[k], "arg_copies_here", NULL, &v));
    CHECK(distc_value_int(v) <= 2, "worker %d: %lld copies after two maps",
          ids[k], (long long)distc_value_int(v));
    distc_value_free(v);
  }
  /* Locally too. */
  o.local = true;
  OK(distc_pmap("add_arg", in, &o, &out));
  CHECK(at_int(out, 10) == 5, "local with arg");
  distc_value_free(out);
  distc_value_free(arg);
  distc_value_free(arg2);
  distc_value_free(in);
}

static distc_value *neg_index(size_t index, const distc_value *item, int err,
                              const char *msg, void *arg) {
  int *calls = arg;
  (*calls)++;
  if (err != DISTC_EREMOTE || !strstr(msg, "odd item") ||
      !strstr(msg, "On worker") ||
      distc_value_int(item) != (int64_t)index)
    return distc_string("unexpected error");
  return distc_int(-(int64_t)index);
}

static distc_value *refuse(size_t index, const distc_value *item, int err,
                           const char *msg, void *arg) {
  (void)index, (void)item, (void)err, (void)msg, (void)arg;
  return NULL;
}

static void case_pmap_errors(void) {
  distc_value *in = ints(0, 40), *out = (distc_value *)1;
  /* No handler: the map fails, naming the item and the worker. */
  int rc = distc_pmap("fail_odd", in, NULL, &out);
  CHECK(rc == DISTC_EREMOTE && out == NULL, "rc %d", rc);
  CHECK(strstr(distc_errmsg(), "pmap: item ") &&
            strstr(distc_errmsg(), "On worker ") &&
            strstr(distc_errmsg(), "odd item"),
        "message: %s", distc_errmsg());

  /* A value in place of failed items. */
  distc_value *ev = distc_string("failed");
  distc_pmap_opts o = {.error_value = ev};
  OK(distc_pmap("fail_odd", in, &o, &out));
  int bad = 0;
  for (size_t i = 0; i < 40; i++) {
    const distc_value *r = distc_list_at(out, i);
    bad += i % 2 ? !distc_value_equal(r, ev) : distc_value_int(r) != (int)i;
  }
  CHECK(bad == 0, "error_value: %d wrong", bad);
  distc_value_free(out);

  /* A function in place of failed items, called once per failure. */
  int calls = 0;
  distc_pmap_opts o2 = {.on_error = neg_index, .on_error_arg = &calls,
                        .batch_size = 3};
  OK(distc_pmap("fail_odd", in, &o2, &out));
  bad = 0;
  for (size_t i = 0; i < 40; i++)
    bad += at_int(out, i) != (i % 2 ? -(int64_t)i : (int64_t)i);
  CHECK(bad == 0 && calls == 20, "on_error: %d wrong, %d calls", bad, calls);
  distc_value_free(out);

  /* on_error may refuse, and the map fails. */
  distc_pmap_opts o3 = {.on_error = refuse};
  rc = distc_pmap("fail_odd", in, &o3, &out);
  CHECK(rc == DISTC_EREMOTE, "refused: %d", rc);

  /* A function nobody registered fails every item with ENOTREG. */
  rc = distc_pmap("no_such_fn", in, NULL, &out);
  CHECK(rc == DISTC_ENOTREG && strstr(distc_errmsg(), "no_such_fn"),
        "unregistered: %d %s", rc, distc_errmsg());

  /* Bad arguments. */
  distc_value *notlist = distc_int(3);
  CHECK(distc_pmap("times3", notlist, NULL, &out) == DISTC_EINVAL, "int input");
  CHECK(distc_pmap(NULL, in, NULL, &out) == DISTC_EINVAL, "no fn");
  CHECK(distc_pmap("times3", in, NULL, NULL) == DISTC_EINVAL, "no results");
  distc_pmap_opts neg = {.retries = -1};
  CHECK(distc_pmap("times3", in, &neg, &out) == DISTC_EINVAL, "retries < 0");
  distc_value_free(notlist);

  /* The workers are fine after all that. */
  OK(distc_pmap("times3", in, NULL, &out));
  CHECK(at_int(out, 39) == 117, "after errors");
  distc_value_free(out);
  distc_value_free(ev);
  distc_value_free(in);
}

static bool retry_unless_7(size_t index, int err, const char *msg,
                           int attempt, void *arg) {
  int *calls = arg;
  (*calls)++;
  return err == DISTC_EREMOTE && strstr(msg, "flaky first try") &&
         attempt >= 1 && index != 7;
}

static void case_pmap_retry(void) {
  /* Each process fails an item the first time it sees it; with two
   * workers, two retries always succeed. */
  distc_value *in = ints(0, 30), *out = NULL;
  distc_pmap_opts o = {.retries = 2};
  OK(distc_pmap("flaky", in, &o, &out));
  int bad = 0;
  for (size_t i = 0; i < 30; i++)
    bad += at_int(out, i) != (int64_t)i;
  CHECK(bad == 0, "retried: %d wrong", bad);
  distc_value_free(out);

  /* No retries: fails. */
  distc_value *in2 = ints(100, 10);
  int rc = distc_pmap("flaky", in2, NULL, &out);
  CHECK(rc == DISTC_EREMOTE && strstr(distc_errmsg(), "flaky first try"),
        "no retries: %d %s", rc, distc_errmsg());
  distc_value_free(in2);

  /* The predicate decides; item 7 (index 7) is not retried. */
  distc_value *in3 = ints(200, 10), *ev = distc_int(-1);
  int calls = 0;
  distc_pmap_opts o3 = {.retries = 3, .retry_check = retry_unless_7,
                        .retry_arg = &calls, .error_value = ev};
  OK(distc_pmap("flaky", in3, &o3, &out));
  bad = 0;
  for (size_t i = 0; i < 10; i++)
    bad += at_int(out, i) != (i == 7 ? -1 : 200 + (int64_t)i);
  CHECK(bad == 0, "retry_check: %d wrong", bad);
  CHECK(calls >= 10, "retry_check called %d times", calls);
  distc_value_free(out);
  distc_value_free(in3);

  /* A retry waits its delay first (a lower bound: it cannot be faster). */
  distc_value *in4 = ints(300, 1);
  distc_pmap_opts o4 = {.retries = 1, .retry_delay_s = 0.2};
  double t0 = now_s();
  OK(distc_pmap("flaky", in4, &o4, &out));
  CHECK(now_s() - t0 >= 0.2, "retry came after %.3f s", now_s() - t0);
  CHECK(at_int(out, 0) == 300, "delayed retry result");
  distc_value_free(out);
  distc_value_free(in4);
  distc_value_free(ev);
  distc_value_free(in);
}

static void case_pmap_kill(void) {
  distc_value *in = ints(0, 60), *out = NULL;
  OK(distc_pmap("die_on_2", in, NULL, &out));
  int bad = 0;
  for (size_t i = 0; i < 60; i++)
    bad += at_int(out, i) != 3 * (int64_t)i;
  CHECK(bad == 0 && distc_list_len(out) == 60, "%d wrong", bad);
  CHECK(distc_nworkers() == 2, "nworkers %d", distc_nworkers());
  int ids[4];
  CHECK(distc_workers(ids, 4) == 2 && ids[0] == 3 && ids[1] == 4,
        "worker 2 is gone");
  distc_value_free(out);
  /* And the next map runs on the others. */
  OK(distc_pmap("times3", in, NULL, &out));
  CHECK(at_int(out, 59) == 177, "after");
  distc_value_free(out);
  distc_value_free(in);
}

static void case_pmap_kill_all(void) {
  distc_value *in = ints(0, 20), *out = (distc_value *)1;
  double t0 = now_s();
  int rc = distc_pmap("die_always", in, NULL, &out);
  CHECK(rc == DISTC_EPROCEXIT && out == NULL, "rc %d", rc);
  CHECK(strstr(distc_errmsg(), "no worker left"), "message: %s",
        distc_errmsg());
  CHECK(now_s() - t0 < 60, "did not hang");
  distc_value_free(in);
}

static void case_pmap_edge(void) {
  distc_value *out = NULL;
  /* Empty input: an empty list, nothing runs. */
  distc_value *empty = distc_list(0);
  OK(distc_pmap("times3", empty, NULL, &out));
  CHECK(distc_value_type(out) == DISTC_LIST && distc_list_len(out) == 0,
        "empty");
  distc_value_free(out);
  size_t zero = 0;
  distc_value *empty_arr = distc_array(DISTC_F64, 1, &zero);
  OK(distc_pmap("times3", empty_arr, NULL, &out));
  CHECK(distc_list_len(out) == 0, "empty array");
  distc_value_free(out);

  /* One item. */
  distc_value *one = ints(7, 1);
  OK(distc_pmap("times3", one, NULL, &out));
  CHECK(distc_list_len(out) == 1 && at_int(out, 0) == 21, "one item");
  distc_value_free(out);

  /* More workers (3) than items (2). */
  distc_value *two = ints(4, 2);
  OK(distc_pmap("times3", two, NULL, &out));
  CHECK(distc_list_len(out) == 2 && at_int(out, 0) == 12 &&
            at_int(out, 1) == 15,
        "two items");
  distc_value_free(out);

  /* Arrays: each element is an item, as an int or a double. */
  size_t dims[2] = {3, 4};
  distc_value *m = distc_array(DISTC_F64, 2, dims);
  double *md = distc_array_data(m);
  for (int i = 0; i < 12; i++)
    md[i] = i + 0.25;
  OK(distc_pmap("twice", m, NULL, &out));
  int bad = 0;
  for (size_t i = 0; i < 12; i++)
    bad += distc_value_type(distc_list_at(out, i)) != DISTC_DOUBLE ||
           distc_value_double(distc_list_at(out, i)) != 2 * (i + 0.25);
  CHECK(distc_list_len(out) == 12 && bad == 0, "f64 array: %d wrong", bad);
  distc_value_free(out);
  size_t n5 = 5;
  distc_dtype dts[] = {DISTC_I64, DISTC_I32, DISTC_U8, DISTC_F32};
  for (size_t k = 0; k < 4; k++) {
    distc_value *a = distc_array(dts[k], 1, &n5);
    for (size_t i = 0; i < 5; i++) {
      void *d = distc_array_data(a);
      switch (dts[k]) {
      case DISTC_I64: ((int64_t *)d)[i] = (int64_t)i + 1; break;
      case DISTC_I32: ((int32_t *)d)[i] = (int32_t)i + 1; break;
      case DISTC_U8: ((uint8_t *)d)[i] = (uint8_t)i + 1; break;
      default: ((float *)d)[i] = (float)i + 1; break;
      }
    }
    OK(distc_pmap("twice", a, NULL, &out));
    bad = 0;
    for (size_t i = 0; i < 5; i++)
      bad += distc_value_double(distc_list_at(out, i)) != 2.0 * (i + 1);
    CHECK(distc_list_len(out) == 5 && bad == 0, "dtype %d: %d wrong", dts[k],
          bad);
    distc_value_free(out);
    distc_value_free(a);
  }

  /* Items that call back into the master while it waits for them. */
  distc_value *back = ints(0, 40);
  OK(distc_pmap("ask_master", back, NULL, &out));
  bad = 0;
  for (size_t i = 0; i < 40; i++)
    bad += at_int(out, i) != 3 * (int64_t)i;
  CHECK(distc_list_len(out) == 40 && bad == 0, "calls back: %d wrong", bad);
  distc_value_free(out);
  OK(distc_reduce("ask_master", 5, 8, DISTC_OP_SUM, NULL, &out));
  CHECK(distc_value_int(out) == 15 + 18 + 21, "reduce calling back: %lld",
        (long long)distc_value_int(out));
  distc_value_free(out);
  distc_value_free(back);

  /* distributed=false: everything runs here. */
  distc_value *in = ints(0, 50);
  distc_pmap_opts local = {.local = true};
  OK(distc_pmap("whereami", in, &local, &out));
  bad = 0;
  for (size_t i = 0; i < 50; i++)
    bad += at_int(out, i) != 1;
  CHECK(bad == 0, "local: %d ran elsewhere", bad);
  distc_value_free(out);
  /* Without it, only workers do. */
  OK(distc_pmap("whereami", in, NULL, &out));
  bad = 0;
  for (size_t i = 0; i < 50; i++)
    bad += at_int(out, i) < 2;
  CHECK(bad == 0, "distributed: %d ran on the master", bad);
  distc_value_free(out);

  distc_value_free(in);
  distc_value_free(m);
  distc_value_free(two);
  distc_value_free(one);
  distc_value_free(empty);
  distc_value_free(empty_arr);
}

/* Runs of ints or doubles travel as typed arrays, and results too, with
 * fallbacks to lists when the kinds mix: every mix must come back intact. */
static void case_pmap_typed(void) {
  distc_value *out = NULL;
  size_t sizes[] = {0, 1, 4};
  /* Mixed items: ints, doubles, a string, a nested list, nil. */
  distc_value *mixed = distc_list(0);
  for (int i = 0; i < 30; i++)
    distc_list_push(mixed, distc_int(i));
  for (int i = 0; i < 30; i++)
    distc_list_push(mixed, distc_double(i + 0.5));
  distc_list_push(mixed, distc_string("x"));
  distc_list_push(mixed, distc_listv(2, distc_int(1), distc_double(2)));
  distc_list_push(mixed, distc_nil());
  for (int i = 0; i < 30; i++)
    distc_list_push(mixed, distc_int(-i));
  for (size_t k = 0; k < 3; k++) {
    distc_pmap_opts o = {.batch_size = sizes[k]};
    OK(distc_pmap("ident", mixed, &o, &out));
    CHECK(distc_value_equal(out, mixed), "mixed, batch %zu", sizes[k]);
    distc_value_free(out);
  }
  /* Int items, results that turn from ints into strings mid-batch. */
  distc_value *in = ints(0, 100);
  for (size_t k = 0; k < 3; k++) {
    distc_pmap_opts o = {.batch_size = sizes[k]};
    OK(distc_pmap("int_or_string", in, &o, &out));
    int bad = 0;
    for (size_t i = 0; i < 100; i++) {
      const distc_value *r = distc_list_at(out, i);
      if (i < 50)
        bad += distc_value_type(r) != DISTC_INT || distc_value_int(r) != (int)i;
      else
        bad += distc_value_type(r) != DISTC_STRING;
    }
    CHECK(bad == 0, "int then string, batch %zu: %d wrong", sizes[k], bad);
    distc_value_free(out);
  }
  /* Functions that keep their items or argument lists: nothing they kept
   * may be rewritten behind their backs, from a list or an array input. */
  distc_value *d = distc_list(40);
  size_t n40 = 40;
  distc_value *arr = distc_array(DISTC_F64, 1, &n40);
  double *ad = distc_array_data(arr), want = 0;
  for (size_t i = 0; i < 40; i++) {
    distc_list_set(d, i, distc_double((double)i * 0.25));
    ad[i] = (double)i * 0.25;
    want += (double)i * 0.25;
  }
  int ids[8], n = distc_workers(ids, 8);
  const char *fns[] = {"keep_item", "keep_args"};
  for (int round = 1; round <= 4; round++) {
    distc_pmap_opts o1 = {.batch_size = 20}; /* one batch per worker */
    OK(distc_pmap(fns[(round - 1) % 2], round <= 2 ? d : arr, &o1, &out));
    CHECK(distc_value_equal(out, d), "%s over %s: results",
          fns[(round - 1) % 2], round <= 2 ? "a list" : "an array");
    distc_value_free(out);
    double got = 0;
    for (int k = 0; k < n; k++) {
      distc_value *v;
      OK(distc_remotecall_fetch(ids[k], "kept_sum", NULL, &v));
      got += distc_value_double(v);
      distc_value_free(v);
    }
    CHECK(got == round * want, "after %s over %s: kept values %g, want %g",
          fns[(round - 1) % 2], round <= 2 ? "a list" : "an array", got,
          round * want);
  }
  distc_value_free(arr);
  distc_value_free(d);
  distc_value_free(in);
  distc_value_free(mixed);
}

static void case_pmap_large(void) {
  enum { N = 6 };
  size_t len = 2 * 1024 * 1024; /* 16 MiB of doubles */
  distc_value *in = distc_list(N), *out = NULL;
  for (size_t k = 0; k < N; k++) {
    distc_value *a = distc_array(DISTC_F64, 1, &len);
    double *d = distc_array_data(a);
    for (size_t i = 0; i < len; i++)
      d[i] = (double)(i ^ k);
    distc_list_set(in, k, a);
  }
  OK(distc_pmap("negate", in, NULL, &out));
  int bad = 0;
  for (size_t k = 0; k < N && out; k++) {
    const distc_value *r = distc_list_at(out, k);
    const double *d = distc_array_data(r);
    if (!d || distc_array_len(r) != len) {
      bad++;
      continue;
    }
    for (size_t i = 0; i < len; i += 4099)
      bad += d[i] != -(double)(i ^ k);
    bad += d[len - 1] != -(double)((len - 1) ^ k);
  }
  CHECK(out && distc_list_len(out) == N && bad == 0, "large: %d wrong", bad);
  distc_value_free(out);
  distc_value_free(in);
}

/* Runs a pmap with fd 2 pointing at fd; returns what arrived there. */
static void pmap_with_stderr(int fd, int readfd, bool off, char *buf,
                             size_t cap) {
  distc_value *in = ints(0, 200), *out = NULL;
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  distc_pmap_opts o = {.no_progress = off};
  int rc = distc_pmap("sleep_1ms", in, &o, &out);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  OK(rc);
  CHECK(distc_list_len(out) == 200, "progress map results");
  distc_value_free(out);
  distc_value_free(in);
  size_t have = 0;
  fcntl(readfd, F_SETFL, fcntl(readfd, F_GETFL) | O_NONBLOCK);
  for (;;) {
    ssize_t r = read(readfd, buf + have, cap - 1 - have);
    if (r <= 0)
      break;
    have += (size_t)r;
  }
  buf[have] = '\0';
}

static void case_pmap_progress(void) {
  static char buf[65536];
  int master, slave;
  if (openpty(&master, &slave, NULL, NULL, NULL) < 0) {
    CHECK(0, "openpty failed");
    return;
  }
  /* On a terminal: a bar, drawn in place, ending at 100%. */
  pmap_with_stderr(slave, master, false, buf, sizeof buf);
  CHECK(strstr(buf, "pmap") && strstr(buf, "100%") && strstr(buf, "200/200") &&
            strchr(buf, '\r'),
        "bar on a tty: '%s'", buf);
  /* Forced off. */
  pmap_with_stderr(slave, master, true, buf, sizeof buf);
  CHECK(buf[0] == '\0', "off on a tty: '%s'", buf);
  close(master);
  close(slave);
  /* Never in a pipe. */
  int p[2];
  if (pipe(p) < 0) {
    CHECK(0, "pipe failed");
    return;
  }
  pmap_with_stderr(p[1], p[0], false, buf, sizeof buf);
  CHECK(buf[0] == '\0', "in a pipe: '%s'", buf);
  close(p[0]);
  close(p[1]);
}

/* ---- pools ---- */

static void case_pool(void) {
  distc_pool *p = NULL;
  int ids[8];
  /* Bad pools. */
  CHECK(distc_pool_new((int[]){2, 2}, 2, &p) == DISTC_EINVAL, "duplicate");
  CHECK(distc_pool_new((int[]){2, 99}, 2, &p) == DISTC_ENOENT &&
            strstr(distc_errmsg(), "99"),
        "no such worker: %s", distc_errmsg());
  CHECK(distc_pool_new(ids, 0, &p) == DISTC_EINVAL, "empty");
  CHECK(distc_remotecall_pool(NULL, "whereami", NULL, NULL) == DISTC_EINVAL,
        "NULL pool");

  OK(distc_pool_new((int[]){4, 2}, 2, &p));
  CHECK(distc_pool_size(p) == 2, "size");
  CHECK(distc_pool_members(p, ids, 8) == 2 && ids[0] == 2 && ids[1] == 4,
        "members ascending");

  /* Two calls in flight go to two different free members. */
  distc_value *slow = distc_listv(1, distc_int(300)), *v;
  distc_future *f1, *f2;
  OK(distc_remotecall_pool(p, "sleep_ms", slow, &f1));
  OK(distc_remotecall_pool(p, "sleep_ms", slow, &f2));
  int w1 = distc_future_where(f1), w2 = distc_future_where(f2);
  CHECK(w1 != w2 && (w1 == 2 || w1 == 4) && (w2 == 2 || w2 == 4),
        "members %d %d", w1, w2);
  /* A third waits for one of them, then runs on it. */
  OK(distc_remotecall_fetch_pool(p, "whereami", NULL, &v));
  CHECK(distc_value_int(v) == 2 || distc_value_int(v) == 4, "third on %lld",
        (long long)distc_value_int(v));
  distc_value_free(v);
  OK(distc_wait(f1));
  OK(distc_wait(f2));
  distc_future_free(f1);
  distc_future_free(f2);

  /* pmap on a pool uses only its members. */
  distc_value *in = ints(0, 40), *out;
  distc_pmap_opts o = {.pool = p};
  OK(distc_pmap("whereami", in, &o, &out));
  int bad = 0;
  for (size_t i = 0; i < 40; i++)
    bad += at_int(out, i) != 2 && at_int(out, i) != 4;
  CHECK(bad == 0, "pmap on the pool: %d elsewhere", bad);
  distc_value_free(out);

  /* A worker that dies leaves the pool. */
  OK(distc_remotecall_fetch(4, "ospid", NULL, &v));
  kill((pid_t)distc_value_int(v), SIGKILL);
  distc_value_free(v);
  for (int i = 0; i < 500 && distc_nworkers() == 3; i++)
    usleep(10000);
  CHECK(distc_pool_size(p) == 1, "size after a death %d", distc_pool_size(p));
  CHECK(distc_pool_members(p, ids, 8) == 1 && ids[0] == 2, "members after");
  for (int i = 0; i < 3; i++) {
    OK(distc_remotecall_fetch_pool(p, "whereami", NULL, &v));
    CHECK(distc_value_int(v) == 2, "goes to 2");
    distc_value_free(v);
  }
  OK(distc_pmap("whereami", in, &o, &out));
  distc_value_free(out);

  /* A pool whose members are all gone. */
  distc_pool *q;
  OK(distc_pool_new((int[]){3}, 1, &q));
  OK(distc_remotecall_fetch(3, "ospid", NULL, &v));
  kill((pid_t)distc_value_int(v), SIGKILL);
  distc_value_free(v);
  for (int i = 0; i < 500 && distc_nworkers() == 2; i++)
    usleep(10000);
  CHECK(distc_pool_size(q) == 0, "dead pool size");
  CHECK(distc_remotecall_fetch_pool(q, "whereami", NULL, &v) == DISTC_ENOENT,
        "dead pool call");
  distc_pmap_opts oq = {.pool = q};
  CHECK(distc_pmap("whereami", in, &oq, &out) == DISTC_ENOENT, "dead pool "
        "pmap");
  distc_pool_free(q);

  /* The master can be a member. */
  distc_pool *me;
  OK(distc_pool_new((int[]){1}, 1, &me));
  OK(distc_remotecall_fetch_pool(me, "whereami", NULL, &v));
  CHECK(distc_value_int(v) == 1, "master member");
  distc_value_free(v);
  distc_pool_free(me);
  distc_value_free(in);
  distc_value_free(slow);
  distc_pool_free(p);
}

/* ---- reductions ---- */

static const char *op_names[] = {"", "sum", "prod", "min", "max"};

static void case_reduce_ops(void) {
  const int64_t lo = 3, hi = 103;
  distc_value *r = NULL;
  for (distc_op op = DISTC_OP_SUM; op <= DISTC_OP_MAX; op++) {
    /* ints, against the serial loop */
    distc_value *a = distc_listv(1, distc_string(op_names[op]));
    distc_value *arg = distc_value_ref(distc_list_at(a, 0));
    distc_value_free(a);
    OK(distc_reduce("chunk_int", lo, hi, op, arg, &r));
    distc_value *args = distc_listv(3, distc_int(lo), distc_int(hi),
                                    distc_value_ref(arg)),
                *serial;
    OK(distc_remotecall_fetch(1, "chunk_int", args, &serial));
    CHECK(distc_value_type(r) == DISTC_INT && distc_value_equal(r, serial),
          "int %s: %lld vs %lld", op_names[op], (long long)distc_value_int(r),
          (long long)distc_value_int(serial));
    distc_value_free(r);
    distc_value_free(serial);
    distc_value_free(args);
    distc_value_free(arg);

    /* arrays of every dtype, element-wise */
    distc_dtype dts[] = {DISTC_F64, DISTC_F32, DISTC_I64, DISTC_I32, DISTC_U8};
    for (size_t k = 0; k < 5; k++) {
      distc_value *spec = distc_listv(2, distc_int(dts[k]),
                                      distc_string(op_names[op]));
      OK(distc_reduce("chunk_array", lo, hi, op, spec, &r));
      distc_value *sargs = distc_listv(3, distc_int(lo), distc_int(hi),
                                       distc_value_ref(spec));
      OK(distc_remotecall_fetch(1, "chunk_array", sargs, &serial));
      /* prod: each chunk's 2^c multiplies to 2^(total c), as the serial. */
      CHECK(distc_value_equal(r, serial), "array dtype %d %s", dts[k],
            op_names[op]);
      distc_value_free(r);
      distc_value_free(serial);
      distc_value_free(sargs);
      distc_value_free(spec);
    }
  }
  /* NaN in one partial: min and max are NaN, as distc_darray_reduce's */
  for (distc_op op = DISTC_OP_MIN; op <= DISTC_OP_MAX; op++) {
    OK(distc_reduce("chunk_nan", 0, 100, op, NULL, &r));
    CHECK(distc_value_type(r) == DISTC_DOUBLE && isnan(distc_value_double(r)),
          "NaN %s: %g", op_names[op], distc_value_double(r));
    distc_value_free(r);
  }
  /* doubles, some partials ints: the result is a double */
  OK(distc_reduce("chunk_double", 0, 100, DISTC_OP_SUM, NULL, &r));
  double want = 0;
  for (int i = 0; i < 100; i++)
    want += i % 13 + 1;
  CHECK(distc_value_type(r) == DISTC_DOUBLE && distc_value_double(r) == want,
        "mixed: %g vs %g", distc_value_double(r), want);
  distc_value_free(r);
  OK(distc_reduce("chunk_double", 0, 100, DISTC_OP_MAX, NULL, &r));
  CHECK(distc_value_type(r) == DISTC_DOUBLE, "mixed max type");
  distc_value_free(r);

  /* A custom reducer over [sum of i*i, count] pairs. */
  OK(distc_reduce_with("chunk_pair", 0, 1000, "add_pairs", NULL, &r));
  int64_t s = 0;
  for (int64_t i = 0; i < 1000; i++)
    s += i * i;
  CHECK(at_int(r, 0) == s && at_int(r, 1) == 1000, "custom: %lld %lld",
        (long long)at_int(r, 0), (long long)at_int(r, 1));
  distc_value_free(r);

  /* Partials that do not go together. */
  int rc = distc_reduce("chunk_pair", 0, 10, DISTC_OP_SUM, NULL, &r);
  CHECK(rc == DISTC_ETYPE && strstr(distc_errmsg(), "sum"), "lists: %d %s", rc,
        distc_errmsg());
}

static void case_reduce_edge(void) {
  distc_value *r = (distc_value *)1;
  /* Empty range: nil, nothing runs. */
  OK(distc_reduce("chunk_fail50", 10, 10, DISTC_OP_SUM, NULL, &r));
  CHECK(distc_value_type(r) == DISTC_NIL, "empty");
  distc_value_free(r);
  OK(distc_reduce("chunk_fail50", 10, 5, DISTC_OP_SUM, NULL, &r));
  CHECK(distc_value_type(r) == DISTC_NIL, "reversed is empty");
  distc_value_free(r);

  /* Fewer iterations (2) than workers (3): two chunks of one. */
  OK(distc_reduce("chunk_fail50", 0, 2, DISTC_OP_SUM, NULL, &r));
  CHECK(distc_value_int(r) == 2, "two iterations: %lld",
        (long long)distc_value_int(r));
  distc_value_free(r);
  OK(distc_reduce("chunk_len", 0, 1000, DISTC_OP_MAX, NULL, &r));
  CHECK(distc_value_int(r) == 334, "largest chunk of 1000 over 3: %lld",
        (long long)distc_value_int(r));
  distc_value_free(r);
  /* At the end of the int64 range. */
  distc_value *min = distc_string("min");
  OK(distc_reduce("chunk_int", INT64_MAX - 5, INT64_MAX, DISTC_OP_MIN, min,
                  &r));
  int64_t want = INT64_MAX;
  for (int64_t i = INT64_MAX - 5; i < INT64_MAX; i++)
    want = i % 13 + 1 < want ? i % 13 + 1 : want;
  CHECK(distc_value_int(r) == want, "top of the range: %lld vs %lld",
        (long long)distc_value_int(r), (long long)want);
  distc_value_free(r);
  distc_value_free(min);

  /* A failing chunk: names the worker and the chunk. */
  int rc = distc_reduce("chunk_fail50", 0, 90, DISTC_OP_SUM, NULL, &r);
  CHECK(rc == DISTC_EREMOTE, "rc %d", rc);
  CHECK(strstr(distc_errmsg(), "chunk 2 of 3, [30, 60) on worker 3") &&
            strstr(distc_errmsg(), "On worker 3:") &&
            strstr(distc_errmsg(), "no 50 please"),
        "message: %s", distc_errmsg());

  /* Bad arguments. */
  CHECK(distc_reduce("chunk_int", 0, 9, 0, NULL, &r) == DISTC_EINVAL, "op 0");
  CHECK(distc_reduce("chunk_int", 0, 9, 99, NULL, &r) == DISTC_EINVAL,
        "op 99");
  CHECK(distc_reduce(NULL, 0, 9, DISTC_OP_SUM, NULL, &r) == DISTC_EINVAL,
        "no fn");
  CHECK(distc_reduce("chunk_int", 0, 9, DISTC_OP_SUM, NULL, NULL) ==
            DISTC_EINVAL,
        "no result");
  CHECK(distc_reduce_with("chunk_pair", 0, 9, "nope", NULL, &r) ==
            DISTC_ENOTREG,
        "unregistered reducer");
  CHECK(distc_reduce_with("chunk_pair", 0, 9, NULL, NULL, &r) == DISTC_EINVAL,
        "no reducer");
  rc = distc_reduce_with("chunk_pair", 0, 9, "bad_reducer", NULL, &r);
  CHECK(rc == DISTC_EREMOTE && strstr(distc_errmsg(), "reducer says no"),
        "failing reducer: %d %s", rc, distc_errmsg());
  rc = distc_reduce("no_such_chunk_fn", 0, 9, DISTC_OP_SUM, NULL, &r);
  CHECK(rc == DISTC_ENOTREG && strstr(distc_errmsg(), "chunk 1 of 3"),
        "unregistered chunk fn: %d %s", rc, distc_errmsg());

  /* One double per worker, as the reduce8 benchmark does. */
  OK(distc_reduce("chunk_one", 0, 3, DISTC_OP_SUM, NULL, &r));
  CHECK(distc_value_double(r) == 3.0, "one each");
  distc_value_free(r);

  /* A worker that dies in its chunk: the reduction fails, naming it. */
  rc = distc_reduce("chunk_die", 0, 3, DISTC_OP_SUM, NULL, &r);
  CHECK(rc == DISTC_EPROCEXIT && strstr(distc_errmsg(), "chunk 1 of 3") &&
            strstr(distc_errmsg(), "exited"),
        "dying chunk: %d %s", rc, distc_errmsg());
  for (int i = 0; i < 500 && distc_nworkers() == 3; i++)
    usleep(10000);
  OK(distc_reduce("chunk_one", 0, 10, DISTC_OP_SUM, NULL, &r));
  CHECK(distc_value_double(r) == 2.0, "on the two left: %g",
        distc_value_double(r));
  distc_value_free(r);
}

static void case_dfor(void) {
  /* Blocking: every worker ran exactly its chunk. */
  OK(distc_distributed_for("chunk_record", 0, 10, NULL));
  int ids[8], n = distc_workers(ids, 8);
  int64_t covered = 0;
  for (int k = 0; k < n; k++) {
    distc_value *v;
    OK(distc_remotecall_fetch(ids[k], "chunk_seen", NULL, &v));
    int64_t lo = at_int(v, 0), hi = at_int(v, 1);
    CHECK(at_int(v, 2) == 1 && hi > lo && hi - lo >= 3 && hi - lo <= 4,
          "worker %d ran [%lld, %lld) %lld times", ids[k], (long long)lo,
          (long long)hi, (long long)at_int(v, 2));
    covered += hi - lo;
    distc_value_free(v);
  }
  CHECK(covered == 10, "covered %lld", (long long)covered);

  /* Async: a future that completes when every chunk is done. */
  distc_future *f;
  OK(distc_distributed_for_async("chunk_record", 100, 106, NULL, &f));
  OK(distc_wait(f));
  distc_value *v;
  OK(distc_fetch(f, &v));
  CHECK(distc_value_type(v) == DISTC_NIL, "loop value nil");
  distc_value_free(v);
  distc_future_free(f);
  for (int k = 0; k < n; k++) {
    OK(distc_remotecall_fetch(ids[k], "chunk_seen", NULL, &v));
    CHECK(at_int(v, 2) == 2 && at_int(v, 0) >= 100 && at_int(v, 1) <= 106,
          "second loop on %d", ids[k]);
    distc_value_free(v);
  }
  /* The future may be dropped before the loop ends. */
  OK(distc_distributed_for_async("chunk_record", 0, 3, NULL, &f));
  distc_future_free(f);

  /* Failures, gathered from every failing chunk. */
  int rc = distc_distributed_for("chunk_fail50", 0, 90, NULL);
  CHECK(rc == DISTC_EREMOTE && strstr(distc_errmsg(), "chunk 2 of 3") &&
            strstr(distc_errmsg(), "no 50 please"),
        "failing: %d %s", rc, distc_errmsg());
  OK(distc_distributed_for_async("chunk_fail50", 0, 90, NULL, &f));
  rc = distc_wait(f);
  CHECK(rc == DISTC_EREMOTE && strstr(distc_errmsg(), "On worker 3"),
        "async failing: %d %s", rc, distc_errmsg());
  distc_future_free(f);
  rc = distc_distributed_for("nope", 0, 90, NULL);
  CHECK(rc == DISTC_ENOTREG, "unregistered: %d", rc);

  /* Empty: done at once. */
  OK(distc_distributed_for_async("chunk_fail50", 5, 5, NULL, &f));
  CHECK(distc_isready(f), "empty loop done at once");
  OK(distc_wait(f));
  distc_future_free(f);
  OK(distc_distributed_for("chunk_fail50", 5, 5, NULL));
  CHECK(distc_distributed_for(NULL, 0, 1, NULL) == DISTC_EINVAL, "no fn");
  CHECK(distc_distributed_for_async("x", 0, 1, NULL, NULL) == DISTC_EINVAL,
        "no future");
}

/* Only the master distributes; a worker may still map locally. */
static void case_worker_calls(void) {
  distc_value *v = NULL;
  OK(distc_remotecall_fetch(2, "parallel_from_worker", NULL, &v));
  CHECK(at_int(v, 0) == DISTC_ENOTMASTER, "pmap on a worker: %lld",
        (long long)at_int(v, 0));
  CHECK(at_int(v, 1) == 0 && at_int(v, 2) == 12, "local pmap on a worker: "
        "%lld %lld", (long long)at_int(v, 1), (long long)at_int(v, 2));
  CHECK(at_int(v, 3) == DISTC_ENOTMASTER, "reduce on a worker");
  CHECK(at_int(v, 4) == DISTC_ENOTMASTER, "pool on a worker");
  CHECK(at_int(v, 5) == DISTC_ENOTMASTER, "for on a worker");
  distc_value_free(v);
}

/* Run with DISTC_MAX_FRAME=65536: a batch too large for one frame is sent
 * one item at a time, and an item too large for any frame fails alone. */
static void case_frame_limit(void) {
  distc_value *in = distc_list(8), *out = NULL;
  for (size_t i = 0; i < 8; i++) /* 40 KB each: two do not fit a frame */
    distc_list_set(in, i, filled(5000, (double)i));
  distc_pmap_opts o = {.batch_size = 4};
  OK(distc_pmap("negate", in, &o, &out));
  int bad = 0;
  for (size_t i = 0; i < 8; i++) {
    const double *d = distc_array_data(distc_list_at(out, i));
    bad += !d || distc_array_len(distc_list_at(out, i)) != 5000 ||
           d[4999] != -(double)i;
  }
  CHECK(distc_list_len(out) == 8 && bad == 0, "split batches: %d wrong", bad);
  distc_value_free(out);
  /* Item 3 alone is too large to send. */
  distc_list_set(in, 3, filled(20000, 3));
  distc_value *ev = distc_string("too big");
  distc_pmap_opts o2 = {.error_value = ev};
  OK(distc_pmap("negate", in, &o2, &out));
  CHECK(distc_value_equal(distc_list_at(out, 3), ev), "the large item failed");
  CHECK(distc_array_len(distc_list_at(out, 4)) == 5000, "the others did not");
  distc_value_free(out);
  int rc = distc_pmap("negate", in, NULL, &out);
  CHECK(rc == DISTC_ETOOBIG && strstr(distc_errmsg(), "item 3"),
        "without a stand-in: %d %s", rc, distc_errmsg());
  /* A result too large to come back fails its item the same way. */
  distc_value *grow = distc_list(2);
  distc_list_set(grow, 0, filled(10, 1));
  distc_list_set(grow, 1, distc_int(20000));
  distc_value *in2 = distc_listv(1, grow);
  rc = distc_pmap("make_array", in2, NULL, &out);
  CHECK(rc == DISTC_ETOOBIG && strstr(distc_errmsg(), "On worker"),
        "large result: %d %s", rc, distc_errmsg());
  distc_value_free(in2);
  distc_value_free(ev);
  distc_value_free(in);
}

/* Without distc-launch: a master with no workers runs everything itself. */
static void case_standalone(void) {
  distc_value *in = ints(0, 30), *out = NULL, *r = NULL;
  OK(distc_pmap("whereami", in, NULL, &out));
  int bad = 0;
  for (size_t i = 0; i < 30; i++)
    bad += at_int(out, i) != 1;
  CHECK(distc_list_len(out) == 30 && bad == 0, "pmap alone: %d", bad);
  distc_value_free(out);
  distc_value *arg = distc_listv(1, distc_string("sum"));
  OK(distc_reduce("chunk_int", 0, 100, DISTC_OP_SUM, distc_list_at(arg, 0),
                  &r));
  int64_t want = 0;
  for (int64_t i = 0; i < 100; i++)
    want += i % 13 + 1;
  CHECK(distc_value_int(r) == want, "reduce alone: %lld",
        (long long)distc_value_int(r));
  distc_value_free(r);
  distc_value_free(arg);
  OK(distc_distributed_for("chunk_record", 0, 5, NULL));
  CHECK(chunk_lo == 0 && chunk_hi == 5, "for alone");
  distc_value_free(in);
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
      {"order", case_pmap_order},       {"arg", case_pmap_arg},
      {"errors", case_pmap_errors},     {"retry", case_pmap_retry},
      {"kill", case_pmap_kill},         {"kill-all", case_pmap_kill_all},
      {"edge", case_pmap_edge},         {"large", case_pmap_large},
      {"typed", case_pmap_typed},       {"worker-calls", case_worker_calls},
      {"frame-limit", case_frame_limit},
      {"progress", case_pmap_progress}, {"pool", case_pool},
      {"reduce-ops", case_reduce_ops},  {"reduce-edge", case_reduce_edge},
      {"for", case_dfor},               {"standalone", case_standalone},
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

/* test_lib.c — the library's contracts a user builds on: every call that
 * hands back a value sets its out-pointer to NULL on failure; per-peer
 * statistics; work for the trace test (tests/launcher/test_trace.sh).  One case per run (argv[1]) under distc-launch, as
 * test_api.c.  Prints `N passed, M failed`. */
#include <distc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

DISTC_FUNCTION(boom) {
  (void)args;
  return distc_fail(ctx, "boom on %d", distc_myid());
}

DISTC_FUNCTION(boom_chunk) {
  (void)args;
  return distc_fail(ctx, "chunk failed on %d", distc_myid());
}

/* Something no call would ever store, so "left unset" and "set to NULL"
 * tell apart. */
static char junk;
#define JUNK ((void *)&junk)
#define NULLED(call, p)                                                       \
  do {                                                                        \
    p = JUNK;                                                                 \
    int rc_ = (call);                                                         \
    CHECK(rc_ < 0, "%s succeeded", #call);                                    \
    CHECK(p == NULL, "%s left its out-pointer set (rc=%d)", #call, rc_);      \
  } while (0)

static void case_null_out(void) {
  distc_value *v, *args = distc_listv(1, distc_int(1));
  distc_future *f;
  distc_pool *pool;

  NULLED(distc_remotecall(99, "boom", args, &f), f);
  NULLED(distc_spawnat(99, "boom", args, &f), f);
  NULLED(distc_remotecall_fetch(2, "boom", args, &v), v);
  NULLED(distc_remotecall_fetch(2, "not_registered", args, &v), v);
  NULLED(distc_remotecall_fetch(99, "boom", args, &v), v);
  if (distc_remotecall(2, "boom", args, &f) == 0) {
    NULLED(distc_fetch(f, &v), v);
    distc_future_free(f);
  } else {
    CHECK(0, "remotecall: %s", distc_errmsg());
  }

  int bad[] = {99};
  NULLED(distc_pool_new(bad, 1, &pool), pool);
  NULLED(distc_remotecall_pool(NULL, "boom", args, &f), f);
  int two[] = {2};
  if (distc_pool_new(two, 1, &pool) == 0) {
    NULLED(distc_remotecall_fetch_pool(pool, "boom", args, &v), v);
    distc_pool_free(pool);
  } else {
    CHECK(0, "pool_new: %s", distc_errmsg());
  }

  distc_value *xs = distc_listv(3, distc_int(1), distc_int(2), distc_int(3));
  NULLED(distc_pmap("boom", xs, NULL, &v), v);
  NULLED(distc_pmap("boom", NULL, NULL, &v), v);
  NULLED(distc_reduce("boom_chunk", 0, 10, DISTC_OP_SUM, NULL, &v), v);
  NULLED(distc_reduce("boom_chunk", 0, 10, (distc_op)99, NULL, &v), v);
  NULLED(distc_reduce_with("boom_chunk", 0, 10, "not_registered", NULL, &v),
         v);
  NULLED(distc_distributed_for_async(NULL, 0, 10, NULL, &f), f);

  size_t dims[] = {4};
  distc_shared_opts so = {.pids = bad, .npids = 1};
  NULLED(distc_shared_new(DISTC_F64, 1, dims, &so, &v), v);
  NULLED(distc_darray_distribute(xs, NULL, &v), v);
  NULLED(distc_darray_new(DISTC_F64, 0, dims, NULL, &v), v);
  distc_value *d;
  if (distc_darray_new(DISTC_F64, 1, dims, NULL, &d) == 0) {
    NULLED(distc_darray_localpart(d, &v), v);
    NULLED(distc_darray_map(d, "boom", NULL, &v), v);
    NULLED(distc_darray_reduce(d, "boom", DISTC_OP_SUM, &v), v);
    distc_darray_free(d);
  } else {
    CHECK(0, "darray_new: %s", distc_errmsg());
  }
  NULLED(distc_darray_gather(xs, &v), v);

  NULLED(distc_channel_new(99, 1, &v), v);
  distc_value *ch;
  if (distc_channel_new(2, 1, &ch) == 0) {
    distc_channel_close(ch);
    NULLED(distc_channel_take(ch, &v), v);
    NULLED(distc_channel_fetch(ch, &v), v);
    distc_channel_free(ch);
  } else {
    CHECK(0, "channel_new: %s", distc_errmsg());
  }
  distc_value_free(xs);
  distc_value_free(args);
}

/* [bytes]: the same bytes back. */
DISTC_FUNCTION(echo_bytes) {
  (void)ctx;
  return distc_value_ref(distc_list_at(args, 0));
}

DISTC_FUNCTION(square) {
  (void)ctx;
  int64_t x = distc_value_int(distc_list_at(args, 0));
  return distc_int(x * x);
}

/* [n]: an array of n doubles. */
DISTC_FUNCTION(big_array) {
  (void)ctx;
  size_t n = (size_t)distc_value_int(distc_list_at(args, 0));
  distc_value *a = distc_array(DISTC_F64, 1, &n);
  double *x = distc_array_data(a);
  for (size_t i = 0; i < n; i++)
    x[i] = (double)i;
  return a;
}

#define BIG_N ((size_t)1 << 19) /* 4 MiB of doubles */

/* Work for the trace: a call with 1000 bytes each way, a pmap, a 4 MiB
 * result. */
static void case_trace_work(void) {
  char buf[1000];
  memset(buf, 'x', sizeof buf);
  distc_value *args = distc_listv(1, distc_bytes(buf, sizeof buf)), *v;
  CHECK(distc_remotecall_fetch(2, "echo_bytes", args, &v) == 0, "%s",
        distc_errmsg());
  distc_value_free(v);
  distc_value_free(args);

  distc_value *xs = distc_list(0);
  for (int i = 0; i < 100; i++)
    distc_list_push(xs, distc_int(i));
  distc_pmap_opts po = {.batch_size = 10, .no_progress = true};
  CHECK(distc_pmap("square", xs, &po, &v) == 0, "%s", distc_errmsg());
  distc_value_free(v);
  distc_value_free(xs);

  int last = distc_nprocs(); /* the last worker */
  args = distc_listv(1, distc_int((int64_t)BIG_N));
  CHECK(distc_remotecall_fetch(last, "big_array", args, &v) == 0, "%s",
        distc_errmsg());
  CHECK(distc_array_len(v) == BIG_N, "%zu elements", distc_array_len(v));
  distc_value_free(v);
  distc_value_free(args);
}

/* Started without distc-launch, DISTC_TRACE set: adds 2 workers itself. */
static void case_trace_addprocs(void) {
  distc_addprocs_opts o = {.count = 2};
  int ids[2];
  CHECK(distc_addprocs(&o, ids) == 2, "%s", distc_errmsg());
  case_trace_work();
}

static void case_stats(void) {
  distc_peer_stats s, t;
  double t0 = now_s();
  CHECK(distc_stats(2, NULL) == DISTC_EINVAL, "NULL accepted");
  CHECK(distc_stats(99, &s) == DISTC_ENOENT, "pid 99: %s", distc_errmsg());
  /* Only the handshake's WELCOME so far. */
  CHECK(distc_stats(2, &s) == 0 && s.calls_sent == 0 && s.bytes_sent < 200,
        "before any call: %llu calls, %llu bytes",
        (unsigned long long)s.calls_sent, (unsigned long long)s.bytes_sent);

  /* 10 calls with 1000 bytes each way. */
  char buf[1000];
  memset(buf, 'x', sizeof buf);
  distc_value *args = distc_listv(1, distc_bytes(buf, sizeof buf)), *v;
  for (int i = 0; i < 10; i++) {
    CHECK(distc_remotecall_fetch(2, "echo_bytes", args, &v) == 0, "%s",
          distc_errmsg());
    distc_value_free(v);
  }
  distc_value_free(args);
  CHECK(distc_stats(2, &s) == 0, "%s", distc_errmsg());
  CHECK(s.calls_sent == 10, "calls_sent %llu, want 10",
        (unsigned long long)s.calls_sent);
  CHECK(s.calls_received == 0, "calls_received %llu",
        (unsigned long long)s.calls_received);
  CHECK(s.bytes_sent >= 10 * 1000 && s.bytes_sent < 10 * 1200,
        "bytes_sent %llu for 10 x 1000", (unsigned long long)s.bytes_sent);
  CHECK(s.bytes_received >= 10 * 1000 && s.bytes_received < 10 * 1200,
        "bytes_received %llu for 10 x 1000",
        (unsigned long long)s.bytes_received);
  CHECK(s.busy_s > 0 && s.busy_s <= now_s() - t0, "busy %.6f s of %.6f",
        s.busy_s, now_s() - t0);

  /* A 4 MiB result: over the connection, or copied out of a same-host
   * worker's memory. */
  args = distc_listv(1, distc_int((int64_t)BIG_N));
  CHECK(distc_remotecall_fetch(3, "big_array", args, &v) == 0, "%s",
        distc_errmsg());
  distc_value_free(v);
  distc_value_free(args);
  CHECK(distc_stats(3, &s) == 0, "%s", distc_errmsg());
  uint64_t big = BIG_N * sizeof(double);
  CHECK(s.calls_sent == 1 && s.bytes_received + s.bytes_copied >= big &&
            s.bytes_received + s.bytes_copied < big + 4096,
        "worker 3: %llu calls, %llu received + %llu copied for %llu",
        (unsigned long long)s.calls_sent,
        (unsigned long long)s.bytes_received,
        (unsigned long long)s.bytes_copied, (unsigned long long)big);
  const char *nocma = getenv("DISTC_NO_CMA");
  if (nocma && *nocma)
    CHECK(s.bytes_copied == 0, "copied %llu with DISTC_NO_CMA",
          (unsigned long long)s.bytes_copied);

  /* This process: the sums over both workers. */
  distc_peer_stats a, b;
  CHECK(distc_stats(2, &a) == 0 && distc_stats(3, &b) == 0 &&
            distc_stats(distc_myid(), &t) == 0,
        "%s", distc_errmsg());
  CHECK(t.calls_sent == a.calls_sent + b.calls_sent &&
            t.bytes_received == a.bytes_received + b.bytes_received &&
            t.bytes_copied == a.bytes_copied + b.bytes_copied,
        "sums: %llu calls", (unsigned long long)t.calls_sent);

  /* A worker's view: its calls received from the master. */
  distc_value *r;
  CHECK(distc_remotecall_fetch(2, "worker_stats", NULL, &r) == 0, "%s",
        distc_errmsg());
  CHECK(distc_value_int(distc_list_at(r, 0)) == 11,
        "worker 2 ran %lld calls from the master, want 11 (this one too)",
        (long long)distc_value_int(distc_list_at(r, 0)));
  CHECK(distc_value_int(distc_list_at(r, 1)) == DISTC_ENOENT,
        "worker 2's stats of worker 3: %lld",
        (long long)distc_value_int(distc_list_at(r, 1)));
  distc_value_free(r);
}

/* On a worker: [calls received from the master, distc_stats(3) code]. */
DISTC_FUNCTION(worker_stats) {
  (void)args;
  (void)ctx;
  distc_peer_stats s, o;
  int other = distc_stats(3, &o);
  if (distc_stats(DISTC_MASTER, &s) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return distc_listv(2, distc_int((int64_t)s.calls_received),
                     distc_int(other));
}

/* Workers running exe, a program whose libdistc the loader cannot find:
 * addprocs fails and says which library and what to do. */
static void case_addprocs_not_started(const char *exe) {
  distc_addprocs_opts o = {.count = 1, .exename = exe, .timeout_s = 30};
  int ids[1];
  int rc = distc_addprocs(&o, ids);
  const char *msg = distc_errmsg();
  CHECK(rc == DISTC_ESPAWN, "rc=%d %s", rc, msg);
  CHECK(strstr(msg, "status 127") && strstr(msg, "libdistc.so.0") &&
            strstr(msg, "LD_LIBRARY_PATH") && strstr(msg, "rpath"),
        "message: %s", msg);
  CHECK(distc_nworkers() == 1 && distc_nprocs() == 1, "%d workers left",
        distc_nprocs() - 1);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  /* Workers that take a second to connect: the master's wait is long
   * enough for its launch progress line. */
  const char *role = getenv("DISTC_ROLE");
  if (!strcmp(name, "slow-start") && role && !strcmp(role, "worker"))
    sleep(1);
  /* slow-start-last: only the last of the two workers is late. */
  const char *index = getenv("DISTC_WORKER_INDEX");
  if (!strcmp(name, "slow-start-last") && index && atoi(index) == 1)
    sleep(2);
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "null-out")) {
    case_null_out();
  } else if (!strcmp(name, "trace-work")) {
    case_trace_work();
  } else if (!strcmp(name, "trace-addprocs")) {
    case_trace_addprocs();
  } else if (!strcmp(name, "slow-start") ||
             !strcmp(name, "slow-start-last")) {
    CHECK(distc_nworkers() == 2, "%d workers", distc_nworkers());
  } else if (!strcmp(name, "stats")) {
    case_stats();
  } else if (!strcmp(name, "addprocs-not-started")) {
    case_addprocs_not_started(argc > 2 ? argv[2] : "");
  } else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  CHECK(distc_finalize() == 0, "finalize: %s", distc_errmsg());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

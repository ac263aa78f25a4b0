/* test_lib.c — the library's contracts a user builds on: every call that
 * hands back a value sets its out-pointer to NULL on failure; per-peer
 * statistics.  One case per run (argv[1]) under distc-launch, as
 * test_api.c.  Prints `N passed, M failed`. */
#include <distc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"

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
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "null-out")) {
    case_null_out();
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

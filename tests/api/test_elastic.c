/* test_elastic.c — the master's side of elastic join, driven by
 * tests/api/test_elastic.sh, which starts the joiners by hand (the same
 * binary with DISTC_JOIN and DISTC_JOIN_KEY set: distc_init makes them
 * workers).  One case per run (argv[1]); lines on stdout say what happened
 * for the script to check, and CHECK failures end in `N passed, M failed`.
 *
 *   pmap N MS      a pmap of N items of MS ms each over the default pool,
 *                  while workers join: which workers ran items
 *   members N      waits for N workers, then for one to leave; a pmap and a
 *                  default pool afterwards still work
 *   count N        under --min-workers: how many were there at start, then
 *                  waits for N
 *   hosts N        waits for N workers; the host each runs on
 *   api            no launcher: distc_listen opens the door itself */
#include <distc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"

#define OK(call)                                                              \
  do {                                                                        \
    int rc_ = (call);                                                         \
    CHECK(rc_ >= 0, "rc=%d %s", rc_, distc_errmsg());                         \
  } while (0)

DISTC_FUNCTION(slow_id) {
  (void)ctx;
  int64_t ms = distc_value_int(distc_list_at(args, 1));
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  return distc_int(distc_myid());
}

DISTC_FUNCTION(whoami) {
  (void)args;
  (void)ctx;
  return distc_int(distc_myid());
}

DISTC_FUNCTION(hostname) {
  (void)args;
  (void)ctx;
  char h[256] = "";
  gethostname(h, sizeof h - 1);
  return distc_string(h);
}

static atomic_int joins, leaves;

static void on_members(int id, int joined, void *arg) {
  (void)arg;
  printf("%s %d\n", joined ? "joined" : "left", id);
  fflush(stdout);
  atomic_fetch_add(joined ? &joins : &leaves, 1);
}

static void print_started(void) {
  int ids[256];
  int n = distc_workers(ids, 256);
  printf("started %d:", n);
  for (int i = 0; i < n && i < 256; i++)
    printf(" %d", ids[i]);
  printf("\n");
  fflush(stdout);
}

static int case_pmap(int n, int ms) {
  OK(distc_on_members(on_members, NULL));
  print_started();
  distc_value *items = distc_list((size_t)n);
  for (int i = 0; i < n; i++)
    distc_list_set(items, (size_t)i, distc_int(i));
  distc_value *arg = distc_int(ms), *res = NULL;
  distc_pmap_opts o = {.arg = arg, .no_progress = true, .batch_size = 1};
  printf("pmap begins\n");
  fflush(stdout);
  OK(distc_pmap("slow_id", items, &o, &res));
  int count[1024] = {0}, done = 0;
  for (size_t i = 0; res && i < distc_list_len(res); i++) {
    int64_t id = distc_value_int(distc_list_at(res, i));
    if (id > 0 && id < 1024) {
      count[id]++;
      done++;
    }
  }
  printf("done %d of %d\n", done, n);
  printf("ran:");
  for (int id = 1; id < 1024; id++)
    if (count[id])
      printf(" %d=%d", id, count[id]);
  printf("\n");
  distc_value_free(res);
  distc_value_free(items);
  distc_value_free(arg);
  CHECK(done == n, "%d of %d items done", done, n);
  return 0;
}

static int case_members(int want) {
  OK(distc_on_members(on_members, NULL));
  print_started();
  int got = distc_wait_workers(want, 60);
  CHECK(got >= want, "wait_workers: %d %s", got, distc_errmsg());
  printf("present %d\n", got);
  fflush(stdout);
  for (int i = 0; i < 600 && atomic_load(&leaves) == 0; i++)
    usleep(100000);
  CHECK(atomic_load(&leaves) > 0, "no departure seen in 60 s");
  printf("departure seen, %d workers\n", distc_nworkers());
  fflush(stdout);

  distc_value *items = distc_list(20), *arg = distc_int(1), *res = NULL;
  for (int i = 0; i < 20; i++)
    distc_list_set(items, (size_t)i, distc_int(i));
  distc_pmap_opts o = {.arg = arg, .no_progress = true};
  OK(distc_pmap("slow_id", items, &o, &res));
  CHECK(res && distc_list_len(res) == 20, "pmap after a departure");
  distc_value_free(res);

  distc_pool *p = NULL;
  OK(distc_pool_new(NULL, 0, &p));
  CHECK(distc_pool_size(p) == distc_workers(NULL, 0), "default pool %d vs %d",
        distc_pool_size(p), distc_workers(NULL, 0));
  distc_value *r = NULL;
  OK(distc_remotecall_fetch_pool(p, "whoami", NULL, &r));
  CHECK(r && distc_value_int(r) >= 2, "pool call ran on a worker");
  distc_value_free(r);
  distc_pool_free(p);
  distc_value_free(items);
  distc_value_free(arg);
  printf("after departure ok\n");
  return 0;
}

static int case_count(int want) {
  print_started();
  int got = distc_wait_workers(want, 60);
  CHECK(got >= want, "wait_workers: %d %s", got, distc_errmsg());
  printf("present %d\n", got);
  return 0;
}

/* Every worker says on which host it runs. */
static int case_hosts(int want) {
  int got = distc_wait_workers(want, 60);
  CHECK(got >= want, "wait_workers: %d %s", got, distc_errmsg());
  int ids[256];
  int n = distc_workers(ids, 256);
  printf("workers %d\n", n);
  for (int i = 0; i < n && i < 256; i++) {
    distc_value *r = NULL;
    OK(distc_remotecall_fetch(ids[i], "hostname", NULL, &r));
    printf("worker %d on %s\n", ids[i], r ? distc_value_str(r, NULL) : "?");
    distc_value_free(r);
  }
  return 0;
}

static int case_api(void) {
  distc_join_info info, again;
  OK(distc_listen("127.0.0.1:0", NULL, &info));
  /* Before the address is out, nobody can join. */
  CHECK(distc_wait_workers(1, 0.2) == DISTC_ETIMEDOUT,
        "nobody joined yet: timeout");
  printf("door %s %s\n", info.addr, info.key_file);
  fflush(stdout);
  struct stat st;
  CHECK(stat(info.key_file, &st) == 0 && (st.st_mode & 0777) == 0600,
        "key file %s mode %o", info.key_file, (unsigned)st.st_mode & 0777);
  OK(distc_listen(NULL, NULL, &again));
  CHECK(strcmp(info.addr, again.addr) == 0 &&
            strcmp(info.key_file, again.key_file) == 0,
        "a second distc_listen reports the open door");
  CHECK(distc_listen("127.0.0.1:0", NULL, NULL) == DISTC_ESTATE,
        "one door per master");
  int got = distc_wait_workers(2, 60);
  CHECK(got >= 2, "wait_workers: %d %s", got, distc_errmsg());
  int ids[16];
  int n = distc_workers(ids, 16);
  for (int i = 0; i < n && i < 16; i++) {
    distc_value *r = NULL;
    OK(distc_remotecall_fetch(ids[i], "whoami", NULL, &r));
    CHECK(r && distc_value_int(r) == ids[i], "worker %d answers", ids[i]);
    distc_value_free(r);
  }
  printf("present %d\n", got);
  OK(distc_finalize());
  CHECK(access(info.key_file, F_OK) != 0, "key file removed at finalize");
  return 0;
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    printf("init failed: %s\n", distc_errmsg());
    return 1;
  }
  const char *c = argc > 1 ? argv[1] : "";
  int a = argc > 2 ? atoi(argv[2]) : 0, b = argc > 3 ? atoi(argv[3]) : 0;
  if (strcmp(c, "pmap") == 0)
    case_pmap(a, b);
  else if (strcmp(c, "members") == 0)
    case_members(a);
  else if (strcmp(c, "count") == 0)
    case_count(a);
  else if (strcmp(c, "hosts") == 0)
    case_hosts(a);
  else if (strcmp(c, "api") == 0)
    case_api();
  else
    CHECK(0, "unknown case '%s'", c);
  printf("%d passed, %d failed\n", passed, failed);
  fflush(stdout);
  return failed ? 1 : 0;
}

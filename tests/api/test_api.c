/* test_api.c — integration tests of the public API over real worker
 * processes.  One binary, one case per run (argv[1]), started by meson under
 * distc-launch (or alone for the standalone cases), so every case is
 * isolated and has its own timeout.  Prints `N passed, M failed`. */
#include <distc.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"


#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- functions the workers run ---- */

static int64_t global_mark;

DISTC_FUNCTION(echo) {
  (void)ctx;
  return distc_value_ref(distc_list_at(args, 0));
}

DISTC_FUNCTION(myid) {
  (void)args;
  (void)ctx;
  return distc_int(distc_myid());
}

DISTC_FUNCTION(ospid) {
  (void)args;
  (void)ctx;
  return distc_int(getpid());
}

DISTC_FUNCTION(set_mark) {
  (void)ctx;
  global_mark = distc_value_int(distc_list_at(args, 0));
  return distc_nil();
}

DISTC_FUNCTION(get_mark) {
  (void)args;
  (void)ctx;
  return distc_int(global_mark);
}

DISTC_FUNCTION(sleep_ms) {
  (void)ctx;
  usleep((useconds_t)distc_value_int(distc_list_at(args, 0)) * 1000);
  return distc_int(distc_myid());
}

DISTC_FUNCTION(boom) {
  (void)args;
  return distc_fail(ctx, "boom on %d", distc_myid());
}

DISTC_FUNCTION(fail_on_even) {
  (void)args;
  if (distc_myid() % 2 == 0)
    return distc_fail(ctx, "even id %d", distc_myid());
  return distc_nil();
}

DISTC_FUNCTION(die) {
  (void)args;
  (void)ctx;
  usleep(50000);
  raise(SIGKILL);
  return distc_nil();
}

/* Writes output without end: the worker is always in the middle of writing
 * to its connection. */
DISTC_FUNCTION(spew) {
  (void)args;
  (void)ctx;
  static char block[65536];
  memset(block, 'x', sizeof block - 1);
  block[sizeof block - 1] = '\n';
  for (;;) {
    fwrite(block, 1, sizeof block, stdout);
    fflush(stdout);
  }
  return distc_nil();
}

DISTC_FUNCTION(say) {
  (void)ctx;
  printf("%s\n", distc_value_str(distc_list_at(args, 0), NULL));
  fprintf(stderr, "err %s\n", distc_value_str(distc_list_at(args, 0), NULL));
  return distc_nil();
}

/* Calls back into the master from a worker. */
DISTC_FUNCTION(ask_master) {
  distc_value *v = NULL;
  distc_value *a = distc_listv(1, distc_int(7));
  int rc = distc_remotecall_fetch(DISTC_MASTER, "echo", a, &v);
  distc_value_free(a);
  if (rc < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return v;
}

/* worker -> master -> worker -> master: each link needs its own thread on
 * the master. */
DISTC_FUNCTION(chain_master) {
  distc_value *v = NULL;
  int from = (int)distc_value_int(distc_list_at(args, 0));
  if (distc_remotecall_fetch(from, "ask_master", NULL, &v) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return v;
}

DISTC_FUNCTION(chain_start) {
  distc_value *v = NULL;
  distc_value *a = distc_listv(1, distc_int(distc_myid()));
  int rc = distc_remotecall_fetch(DISTC_MASTER, "chain_master", a, &v);
  distc_value_free(a);
  if (rc < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return v;
}

/* Polls isready on a worker until the master's answer is in. */
DISTC_FUNCTION(poll_master) {
  distc_future *f;
  distc_value *a = distc_listv(1, distc_int(11)), *v = NULL;
  int rc = distc_remotecall(DISTC_MASTER, "echo", a, &f);
  distc_value_free(a);
  if (rc < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  for (long i = 0; i < 100000000 && !distc_isready(f); i++)
    ;
  bool ready = distc_isready(f);
  if (ready)
    distc_fetch(f, &v);
  distc_future_free(f);
  if (!ready)
    return distc_fail(ctx, "isready never became true");
  return v;
}

DISTC_FUNCTION(everywhere_from_worker) {
  return distc_int(distc_everywhere("myid", NULL));
}

/* ---- cases ---- */

static void case_identity(void) {
  CHECK(distc_myid() == 1, "myid %d", distc_myid());
  int ids[16], n = distc_workers(ids, 16);
  CHECK(n == 2 && distc_nworkers() == 2 && distc_nprocs() == 3,
        "n=%d nworkers=%d nprocs=%d", n, distc_nworkers(), distc_nprocs());
  CHECK(ids[0] == 2 && ids[1] == 3, "ids %d %d", ids[0], ids[1]);
  for (int i = 0; i < n; i++) {
    distc_value *v;
    OK(distc_remotecall_fetch(ids[i], "myid", NULL, &v));
    CHECK(distc_value_int(v) == ids[i], "worker says %lld",
          (long long)distc_value_int(v));
    distc_value_free(v);
  }
}

static void case_calls(void) {
  distc_future *f;
  distc_value *v, *a = distc_listv(1, distc_string("hi"));
  OK(distc_remotecall(2, "echo", a, &f));
  OK(distc_fetch(f, &v));
  CHECK(strcmp(distc_value_str(v, NULL), "hi") == 0, "echo");
  distc_value_free(v);
  OK(distc_fetch(f, &v)); /* fetching twice gives the same value */
  CHECK(strcmp(distc_value_str(v, NULL), "hi") == 0, "echo twice");
  CHECK(distc_isready(f), "ready after fetch");
  CHECK(distc_future_where(f) == 2, "where");
  distc_value_free(v);
  distc_future_free(f);

  distc_value *slow = distc_listv(1, distc_int(200));
  OK(distc_remotecall(3, "sleep_ms", slow, &f));
  CHECK(!distc_isready(f), "not ready while sleeping");
  OK(distc_wait(f));
  CHECK(distc_isready(f), "ready after wait");
  distc_future_free(f);
  OK(distc_remotecall_wait(2, "sleep_ms", slow));
  distc_value_free(slow);

  /* remote_do: nothing comes back, but the effect happens, in order. */
  distc_value *m = distc_listv(1, distc_int(42));
  OK(distc_remote_do(3, "set_mark", m));
  distc_value_free(m);
  OK(distc_remotecall_fetch(3, "get_mark", NULL, &v));
  CHECK(distc_value_int(v) == 42, "mark %lld", (long long)distc_value_int(v));
  distc_value_free(v);

  /* spawnat(ANY) goes round robin over the workers. */
  int seen[8] = {0};
  for (int i = 0; i < 6; i++) {
    OK(distc_spawnat(DISTC_ANY, "myid", NULL, &f));
    OK(distc_fetch(f, &v));
    int id = (int)distc_value_int(v);
    CHECK(id == distc_future_where(f), "ran where it said");
    if (id >= 0 && id < 8)
      seen[id]++;
    distc_value_free(v);
    distc_future_free(f);
  }
  CHECK(seen[2] == 3 && seen[3] == 3, "round robin %d %d", seen[2], seen[3]);

  /* A call to the master itself runs locally. */
  OK(distc_remotecall_fetch(1, "echo", a, &v));
  CHECK(strcmp(distc_value_str(v, NULL), "hi") == 0, "local echo");
  distc_value_free(v);

  /* A worker can call the master. */
  OK(distc_remotecall_fetch(2, "ask_master", NULL, &v));
  CHECK(distc_value_int(v) == 7, "nested %lld", (long long)distc_value_int(v));
  distc_value_free(v);

  /* Many calls in flight at once, answers matched to their calls. */
  distc_future *fs[200];
  for (int i = 0; i < 200; i++) {
    distc_value *x = distc_listv(1, distc_int(i));
    OK(distc_remotecall(2 + i % 2, "echo", x, &fs[i]));
    distc_value_free(x);
  }
  int good = 0;
  for (int i = 0; i < 200; i++) {
    if (distc_fetch(fs[i], &v) == 0 && distc_value_int(v) == i)
      good++;
    distc_value_free(v);
    distc_future_free(fs[i]);
  }
  CHECK(good == 200, "in flight %d", good);
  distc_value_free(a);

  OK(distc_remotecall_fetch(3, "chain_start", NULL, &v));
  CHECK(v && distc_value_int(v) == 7, "chain");
  distc_value_free(v);
  OK(distc_remotecall_fetch(2, "poll_master", NULL, &v));
  CHECK(v && distc_value_int(v) == 11, "isready on a worker");
  distc_value_free(v);
  OK(distc_remotecall_fetch(2, "everywhere_from_worker", NULL, &v));
  CHECK(v && distc_value_int(v) == 0, "everywhere from a worker: %lld %s",
        (long long)distc_value_int(v), distc_errmsg());
  distc_value_free(v);
  char longname[300];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  CHECK(distc_remotecall_fetch(2, longname, NULL, &v) == DISTC_EINVAL,
        "long name: %s", distc_errmsg());
}

static void case_values(void) {
  size_t dims2[2] = {3, 4}, big[1] = {2 * 1024 * 1024};
  distc_value *arr = distc_array(DISTC_F64, 2, dims2);
  double *d = distc_array_data(arr);
  for (int i = 0; i < 12; i++)
    d[i] = i * 0.5;
  distc_value *large = distc_array(DISTC_F64, 1, big); /* 16 MiB */
  double *L = distc_array_data(large);
  for (size_t i = 0; i < big[0]; i++)
    L[i] = (double)i;
  distc_value *list = distc_listv(3, distc_int(1), distc_string("two"),
                                  distc_listv(1, distc_double(3.0)));
  distc_value *vals[] = {
      distc_nil(), distc_bool(true), distc_int(INT64_MIN), distc_double(-0.25),
      distc_string("héllo"), distc_bytes("a\0b", 3), arr, large, list,
      distc_array(DISTC_U8, 1, (size_t[]){0}),
  };
  /* More large arrays in one message than one sendmsg takes. */
  distc_value *many = distc_list(0);
  for (int i = 0; i < 1500; i++) {
    distc_value *x = distc_array(DISTC_I32, 1, (size_t[]){2048});
    ((int32_t *)distc_array_data(x))[7] = i;
    distc_list_push(many, x);
  }
  distc_value *a1 = distc_listv(1, many), *back = NULL;
  OK(distc_remotecall_fetch(2, "echo", a1, &back));
  CHECK(back && distc_value_equal(back, distc_list_at(a1, 0)), "1500 arrays");
  distc_value_free(back);
  distc_value_free(a1);

  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
    distc_value *a = distc_listv(1, distc_value_ref(vals[i])), *v = NULL;
    OK(distc_remotecall_fetch(2, "echo", a, &v));
    CHECK(v && distc_value_equal(v, vals[i]), "round trip of value %zu", i);
    distc_value_free(v);
    distc_value_free(a);
    distc_value_free(vals[i]);
  }
}

static void case_errors(void) {
  distc_value *v = NULL;
  int rc = distc_remotecall_fetch(2, "nope", NULL, &v);
  CHECK(rc == DISTC_ENOTREG, "rc %d", rc);
  CHECK(strstr(distc_errmsg(),
               "On worker 2: function 'nope' is not registered") != NULL,
        "message: %s", distc_errmsg());
  rc = distc_remotecall_fetch(3, "boom", NULL, &v);
  CHECK(rc == DISTC_EREMOTE, "rc %d", rc);
  CHECK(strstr(distc_errmsg(), "On worker 3: in function 'boom': boom on 3"),
        "message: %s", distc_errmsg());
  rc = distc_remotecall_fetch(99, "echo", NULL, &v);
  CHECK(rc == DISTC_ENOENT && strstr(distc_errmsg(), "99"), "rc %d %s", rc,
        distc_errmsg());
  CHECK(strcmp(distc_strerror(DISTC_EPROCEXIT), "the process exited") == 0,
        "strerror");
  distc_value *notlist = distc_int(1);
  rc = distc_remotecall_fetch(2, "echo", notlist, &v);
  CHECK(rc == DISTC_EINVAL, "args must be a list: %d", rc);
  distc_value_free(notlist);
  /* The worker is still fine after all that. */
  OK(distc_remotecall_fetch(2, "myid", NULL, &v));
  distc_value_free(v);
}

static void case_everywhere(void) {
  distc_value *m = distc_listv(1, distc_int(5));
  OK(distc_everywhere("set_mark", m));
  distc_value_free(m);
  CHECK(global_mark == 5, "master mark %lld", (long long)global_mark);
  int ids[8], n = distc_workers(ids, 8);
  for (int i = 0; i < n; i++) {
    distc_value *v;
    OK(distc_remotecall_fetch(ids[i], "get_mark", NULL, &v));
    CHECK(distc_value_int(v) == 5, "mark on %d", ids[i]);
    distc_value_free(v);
  }
  /* Errors from every failing process are gathered: 2 and 4 fail. */
  int rc = distc_everywhere("fail_on_even", NULL);
  CHECK(rc == DISTC_EREMOTE, "rc %d", rc);
  CHECK(strstr(distc_errmsg(), "On worker 2:") &&
            strstr(distc_errmsg(), "On worker 4:") &&
            !strstr(distc_errmsg(), "On worker 3:"),
        "gathered: %s", distc_errmsg());
}

static void case_kill_worker(void) {
  distc_future *f;
  distc_value *v = NULL;
  OK(distc_remotecall(2, "die", NULL, &f));
  double t0 = now_s();
  int rc = distc_fetch(f, &v);
  double took = now_s() - t0;
  CHECK(rc == DISTC_EPROCEXIT, "rc %d", rc);
  CHECK(strstr(distc_errmsg(), "On worker 2") &&
            strstr(distc_errmsg(), "exited"),
        "message %s", distc_errmsg());
  CHECK(took < 1.0, "took %.3f s", took);
  distc_future_free(f);
  /* Later calls to it fail at once; the other worker is unaffected. */
  rc = distc_remotecall_fetch(2, "myid", NULL, &v);
  CHECK(rc == DISTC_EPROCEXIT && strstr(distc_errmsg(), "On worker 2"),
        "dead worker rc %d %s", rc, distc_errmsg());
  CHECK(distc_nworkers() == 1, "nworkers %d", distc_nworkers());
  OK(distc_remotecall_fetch(3, "myid", NULL, &v));
  distc_value_free(v);
}

/* Mappings of the shared-memory rings in this process. */
static int ring_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int n = 0;
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    n += strstr(line, "distc-ring") != NULL;
  fclose(f);
  return n;
}

/* Run with DISTC_TRANSPORT=shm and 3 workers: a worker killed while it
 * writes to its ring is reported within 1 s and the master keeps serving
 * the others, as is one killed while the master sleeps on its ring;
 * nothing is left in /dev/shm, and no mapping after rmprocs. */
static void case_shm_kill(void) {
  distc_value *v = NULL;
  /* Each worker's offer precedes its answers. */
  OK(distc_remotecall_fetch(3, "myid", NULL, &v));
  distc_value_free(v);
  OK(distc_remotecall_fetch(4, "myid", NULL, &v));
  distc_value_free(v);
  OK(distc_remotecall_fetch(2, "ospid", NULL, &v));
  pid_t pid = (pid_t)distc_value_int(v);
  distc_value_free(v);
  CHECK(ring_maps() == 3, "ring mappings %d, want 3", ring_maps());
  char cmd[64];
  snprintf(cmd, sizeof cmd, "ls /dev/shm | grep -q distc");
  CHECK(system(cmd) != 0, "an entry in /dev/shm");
  /* The flood goes nowhere. */
  fflush(stdout);
  int out = dup(1), null = open("/dev/null", O_WRONLY);
  dup2(null, 1);
  close(null);
  distc_future *f;
  OK(distc_remotecall(2, "spew", NULL, &f));
  usleep(300000);
  kill(pid, SIGKILL);
  double t0 = now_s();
  int rc = distc_fetch(f, &v);
  double took = now_s() - t0;
  fflush(stdout);
  dup2(out, 1);
  close(out);
  CHECK(rc == DISTC_EPROCEXIT && strstr(distc_errmsg(), "exited"),
        "rc %d %s", rc, distc_errmsg());
  CHECK(took < 1.0, "reported after %.3f s", took);
  distc_future_free(f);
  OK(distc_remotecall_fetch(3, "myid", NULL, &v));
  CHECK(distc_value_int(v) == 3, "worker 3 answers");
  distc_value_free(v);
  /* Long calls: the master stops spinning and sleeps on the ring's futex,
   * where an answer wakes it, and so does a silent death (worker 4). */
  distc_value *ms = distc_listv(1, distc_int(300));
  OK(distc_remotecall_fetch(3, "sleep_ms", ms, &v));
  CHECK(distc_value_int(v) == 3, "slept on 3");
  distc_value_free(v);
  distc_value_free(ms);
  OK(distc_remotecall_fetch(4, "ospid", NULL, &v));
  pid = (pid_t)distc_value_int(v);
  distc_value_free(v);
  ms = distc_listv(1, distc_int(20000));
  OK(distc_remotecall(4, "sleep_ms", ms, &f));
  distc_value_free(ms);
  usleep(300000);
  kill(pid, SIGKILL);
  t0 = now_s();
  rc = distc_fetch(f, &v);
  took = now_s() - t0;
  CHECK(rc == DISTC_EPROCEXIT, "rc %d %s", rc, distc_errmsg());
  CHECK(took < 1.0, "sleeping master told after %.3f s", took);
  distc_future_free(f);
  int rm[] = {3};
  OK(distc_rmprocs(rm, 1));
  double t1 = now_s();
  while (ring_maps() > 0 && now_s() - t1 < 5)
    usleep(10000);
  CHECK(ring_maps() == 0, "%d ring mappings left after rmprocs",
        ring_maps());
}

static const char *other_binary;

static void case_addprocs(void) {
  /* Started with one worker (id 2). */
  int ids[4];
  distc_addprocs_opts o = {.count = 2};
  int n = distc_addprocs(&o, ids);
  CHECK(n == 2 && ids[0] == 3 && ids[1] == 4, "added %d: %d %d", n, ids[0],
        ids[1]);
  CHECK(distc_nworkers() == 3, "nworkers %d", distc_nworkers());
  distc_value *v;
  OK(distc_remotecall_fetch(4, "myid", NULL, &v));
  CHECK(distc_value_int(v) == 4, "id 4");
  distc_value_free(v);
  int rm[] = {2, 3};
  OK(distc_rmprocs(rm, 2));
  CHECK(distc_nworkers() == 1, "after rmprocs %d", distc_nworkers());
  CHECK(distc_remotecall_fetch(3, "myid", NULL, &v) == DISTC_EPROCEXIT,
        "removed: %s", distc_errmsg());
  /* Ids are never reused. */
  o.count = 1;
  n = distc_addprocs(&o, ids);
  CHECK(n == 1 && ids[0] == 5, "reuse? %d %d", n, ids[0]);
  /* dir and env reach the worker. */
  const char *env[] = {"DISTC_TEST_VAR=xyz", NULL};
  o = (distc_addprocs_opts){.count = 1, .dir = "/tmp", .env = env};
  n = distc_addprocs(&o, ids);
  CHECK(n == 1 && ids[0] == 6, "added %d %d", n, ids[0]);
  OK(distc_remotecall_fetch(6, "getenv_cwd", NULL, &v));
  CHECK(v && strcmp(distc_value_str(v, NULL), "xyz:/tmp") == 0, "env/dir %s",
        v ? distc_value_str(v, NULL) : "?");
  distc_value_free(v);
  /* A missing executable is a clear error, and nothing is left. */
  o = (distc_addprocs_opts){.count = 1, .exename = "/nonexistent/prog",
                            .timeout_s = 5};
  n = distc_addprocs(&o, ids);
  CHECK(n < 0 && strstr(distc_errmsg(), "/nonexistent/prog"), "missing: %d %s",
        n, distc_errmsg());
  CHECK(distc_nworkers() == 3, "nworkers %d", distc_nworkers());
  /* A program that exits instead of connecting fails the call, promptly. */
  o = (distc_addprocs_opts){.count = 2, .exename = "/bin/true",
                            .timeout_s = 30};
  double t0 = now_s();
  n = distc_addprocs(&o, ids);
  CHECK(n == DISTC_ESPAWN && strstr(distc_errmsg(), "before connecting"),
        "not linked: %d %s", n, distc_errmsg());
  CHECK(now_s() - t0 < 10, "noticed in %.1f s", now_s() - t0);
  /* A different distc binary is refused at the handshake. */
  if (other_binary) {
    o = (distc_addprocs_opts){.count = 1, .exename = other_binary,
                              .timeout_s = 30};
    n = distc_addprocs(&o, ids);
    CHECK(n == DISTC_EFINGERPRINT && strstr(distc_errmsg(), "different binary"),
          "other binary: %d %s", n, distc_errmsg());
  }
  CHECK(distc_nworkers() == 3, "nworkers after failures %d", distc_nworkers());
  OK(distc_remotecall_fetch(6, "myid", NULL, &v));
  distc_value_free(v);
}

DISTC_FUNCTION(getenv_cwd) {
  (void)args;
  (void)ctx;
  char cwd[512], out[600];
  const char *e = getenv("DISTC_TEST_VAR");
  snprintf(out, sizeof out, "%s:%s", e ? e : "", getcwd(cwd, sizeof cwd));
  return distc_string(out);
}

static void case_standalone(void) {
  /* Run without distc-launch: a master with no workers. */
  CHECK(distc_nworkers() == 1 && distc_nprocs() == 1, "alone");
  int ids[2];
  CHECK(distc_workers(ids, 2) == 1 && ids[0] == 1, "workers() is {1}");
  distc_value *v;
  distc_future *f;
  OK(distc_spawnat(DISTC_ANY, "myid", NULL, &f));
  OK(distc_fetch(f, &v));
  CHECK(distc_value_int(v) == 1, "ANY with no workers runs on the master");
  distc_value_free(v);
  distc_future_free(f);
  distc_addprocs_opts o = {.count = 2};
  CHECK(distc_addprocs(&o, ids) == 2 && ids[0] == 2 && ids[1] == 3,
        "addprocs %s", distc_errmsg());
  OK(distc_remotecall_fetch(3, "myid", NULL, &v));
  CHECK(distc_value_int(v) == 3, "id");
  distc_value_free(v);
}

static void case_load(const char *so) {
  distc_value *v = NULL;
  int rc = distc_remotecall_fetch(2, "plugin_square", NULL, &v);
  CHECK(rc == DISTC_ENOTREG, "before load: %d", rc);
  OK(distc_load_everywhere(so));
  distc_value *a = distc_listv(1, distc_int(9));
  OK(distc_remotecall_fetch(2, "plugin_square", a, &v));
  CHECK(distc_value_int(v) == 81, "square");
  distc_value_free(v);
  OK(distc_remotecall_fetch(1, "plugin_square", a, &v));
  CHECK(distc_value_int(v) == 81, "square on master");
  distc_value_free(v);
  distc_value_free(a);
  rc = distc_load_everywhere("/nonexistent/lib.so");
  CHECK(rc == DISTC_ELOAD && strstr(distc_errmsg(), "On worker 2:") &&
            strstr(distc_errmsg(), "On worker 1:"),
        "bad load %d: %s", rc, distc_errmsg());
}

/* For the shell tests: print the workers' OS pids, then wait to be killed. */
static void case_hang(void) {
  int ids[16], n = distc_workers(ids, 16);
  for (int i = 0; i < n; i++) {
    distc_value *v;
    if (distc_remotecall_fetch(ids[i], "ospid", NULL, &v) == 0)
      printf("worker-pid %lld\n", (long long)distc_value_int(v));
    distc_value_free(v);
  }
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; i < 600; i++)
    sleep(1);
}

static void case_output(void) {
  int ids[16], n = distc_workers(ids, 16);
  for (int i = 0; i < n; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "line from %d", ids[i]);
    distc_value *a = distc_listv(1, distc_string(msg));
    OK(distc_remotecall_wait(ids[i], "say", a));
    distc_value_free(a);
  }
  printf("master done\n");
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  int rc = distc_init(&argc, &argv);
  if (rc < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "identity"))
    case_identity();
  else if (!strcmp(name, "calls"))
    case_calls();
  else if (!strcmp(name, "values"))
    case_values();
  else if (!strcmp(name, "errors"))
    case_errors();
  else if (!strcmp(name, "everywhere"))
    case_everywhere();
  else if (!strcmp(name, "kill-worker"))
    case_kill_worker();
  else if (!strcmp(name, "shm-kill"))
    case_shm_kill();
  else if (!strcmp(name, "addprocs")) {
    other_binary = argc > 2 ? argv[2] : NULL;
    case_addprocs();
  }
  else if (!strcmp(name, "standalone"))
    case_standalone();
  else if (!strcmp(name, "load"))
    case_load(argc > 2 ? argv[2] : "");
  else if (!strcmp(name, "hang"))
    case_hang();
  else if (!strcmp(name, "hang-ignint")) {
    signal(SIGINT, SIG_IGN);
    case_hang();
  } else if (!strcmp(name, "output"))
    case_output();
  else if (!strcmp(name, "exit"))
    return atoi(argc > 2 ? argv[2] : "0");
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  OK(distc_finalize());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

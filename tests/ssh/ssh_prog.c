/* ssh_prog.c — the libdistc program the SSH tests run on the test hosts.
 *
 *   ssh_prog where            one line per worker: where it runs
 *   ssh_prog calls            remote calls across every worker, checked
 *   ssh_prog hang             prints the workers, then waits to be killed
 *   ssh_prog output           every worker prints a line
 *   ssh_prog pmap             distc_pmap over every worker, checked
 *   ssh_prog darray           a distributed array across every worker
 *   ssh_prog segv             the last worker segfaults inside a call
 *   ssh_prog stop             the last worker is stopped (SIGSTOP) inside
 *                             a call: the call fails as unresponsive and
 *                             the worker is killed on its host
 *   ssh_prog addprocs HOSTS SSH_CONFIG [OPTION...]
 *                             without distc-launch: distc_addprocs over SSH
 *   ssh_prog addprocs-stop HOSTS SSH_CONFIG
 *                             stop, with workers distc_addprocs started
 *
 * A worker identifies its host by its network namespace (each test host is
 * one), so the tests can tell where every worker ran. */
#include <distc.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXW 256

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "ssh_prog: %s: %s\n", what, distc_errmsg());
    exit(1);
  }
}

static void netns(char *buf, size_t len) {
  ssize_t n = readlink("/proc/self/ns/net", buf, len - 1);
  buf[n > 0 ? n : 0] = '\0';
}

/* The host a worker runs on: the server address of the SSH connection that
 * started it (sshd sets SSH_CONNECTION), or "local". */
static void host_of(char *buf, size_t len) {
  const char *c = getenv("SSH_CONNECTION");
  char a[64], b[64], srv[64];
  if (c == NULL || sscanf(c, "%63s %63s %63s", a, b, srv) != 3)
    snprintf(buf, len, "local");
  else
    snprintf(buf, len, "%s", srv);
}

/* [host netns, cwd, exe, pid, "K=V K=V ..." of the variables the tests
 * watch] */
DISTC_FUNCTION(whereami) {
  char ns[128], host[64], id[256], cwd[1024], exe[1024], env[2048] = "";
  netns(ns, sizeof ns);
  host_of(host, sizeof host);
  snprintf(id, sizeof id, "%s %s", host, ns);
  if (getcwd(cwd, sizeof cwd) == NULL)
    strcpy(cwd, "?");
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  static const char *const watched[] = {
      "XTEST_FWD", "XTEST_NOT", "DISPLAY", "SSH_AUTH_SOCK",
      "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "DISTC_LOG", "DISTC_ROLE"};
  for (size_t i = 0; i < sizeof watched / sizeof *watched; i++) {
    const char *v = getenv(watched[i]);
    if (v == NULL)
      continue;
    size_t used = strlen(env);
    snprintf(env + used, sizeof env - used, "%s%s=%s", used ? " " : "",
             watched[i], v);
  }
  return distc_listv(5, distc_string(id), distc_string(cwd),
                     distc_string(exe), distc_int(getpid()),
                     distc_string(env));
}

DISTC_FUNCTION(square) {
  int64_t x = distc_value_int(distc_list_at(args, 0));
  return distc_int(x * x);
}

/* Sum of a double array, so a large one crosses the wire both ways. */
DISTC_FUNCTION(echo_sum) {
  distc_value *a = distc_list_at(args, 0);
  const double *d = distc_array_data(a);
  double sum = 0;
  for (size_t i = 0; i < distc_array_len(a); i++)
    sum += d[i];
  return distc_listv(2, distc_value_ref(a), distc_double(sum));
}

/* [x * x, the host it ran on], for pmap: every item says where it ran. */
DISTC_FUNCTION(square_where) {
  int64_t x = distc_value_int(distc_list_at(args, 0));
  char host[64];
  host_of(host, sizeof host);
  return distc_listv(2, distc_int(x * x), distc_string(host));
}

/* The host of this darray owner and the sum of its chunk. */
DISTC_FUNCTION(chunk_where) {
  distc_value *d = distc_list_at(args, 0), *part = NULL;
  if (distc_darray_localpart(d, &part) < 0)
    return distc_fail(ctx, "no chunk here: %s", distc_errmsg());
  const double *x = distc_array_data(part);
  double sum = 0;
  for (size_t i = 0; i < distc_array_len(part); i++)
    sum += x[i];
  distc_value_free(part);
  char host[64];
  host_of(host, sizeof host);
  return distc_listv(2, distc_string(host), distc_double(sum));
}

DISTC_FUNCTION(fails) {
  return distc_fail(ctx, "failing on purpose on worker %d", distc_myid());
}

DISTC_FUNCTION(crash) {
  (void)args;
  (void)ctx;
  raise(SIGSEGV);
  return distc_nil();
}

DISTC_FUNCTION(nap) {
  (void)ctx;
  double s = distc_value_double(distc_list_at(args, 0));
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  return distc_nil();
}

DISTC_FUNCTION(say) {
  printf("hello from worker %d\n", distc_myid());
  fflush(stdout);
  return distc_nil();
}

/* pmap of 400 items over every worker: results in order, and items ran on
 * every host the workers are on.  Prints "pmap host H N" per host. */
static int run_pmap(void) {
  enum { N = 400 };
  distc_value *in = distc_list(N), *out = NULL;
  for (size_t i = 0; i < N; i++)
    distc_list_set(in, i, distc_int((int64_t)i));
  distc_pmap_opts o = {.no_progress = true};
  check(distc_pmap("square_where", in, &o, &out), "pmap");
  int bad = 0;
  char hosts[8][64];
  int counts[8] = {0}, nh = 0;
  for (size_t i = 0; i < N; i++) {
    distc_value *r = distc_list_at(out, i);
    if (distc_value_int(distc_list_at(r, 0)) != (int64_t)(i * i))
      bad++;
    const char *h = distc_value_str(distc_list_at(r, 1), NULL);
    int k = 0;
    while (k < nh && strcmp(hosts[k], h) != 0)
      k++;
    if (k == nh && nh < 8)
      snprintf(hosts[nh++], sizeof hosts[0], "%s", h);
    if (k < 8)
      counts[k]++;
  }
  for (int k = 0; k < nh; k++)
    printf("pmap host %s %d\n", hosts[k], counts[k]);
  printf("pmap %s\n", bad ? "FAILED" : "ok");
  distc_value_free(in);
  distc_value_free(out);
  return bad;
}

/* A 120x40 array of ones distributed over every worker: each owner reports
 * its host and chunk sum; reduce and gather see the whole array. */
static int run_darray(void) {
  size_t dims[2] = {120, 40};
  distc_value *fill = distc_listv(1, distc_double(1.0)), *d = NULL, *r = NULL;
  distc_darray_opts o = {.init = "distc_darray_fill", .init_args = fill};
  check(distc_darray_new(DISTC_F64, 2, dims, &o, &d), "darray_new");
  int bad = 0, owners[MAXW];
  int n = distc_darray_procs(d, owners, MAXW);
  distc_value *args = distc_listv(1, distc_value_ref(d));
  double total = 0;
  for (int i = 0; i < n; i++) {
    check(distc_remotecall_fetch(owners[i], "chunk_where", args, &r),
          "chunk_where");
    printf("chunk %d on %s sum %g\n", owners[i],
           distc_value_str(distc_list_at(r, 0), NULL),
           distc_value_double(distc_list_at(r, 1)));
    total += distc_value_double(distc_list_at(r, 1));
    distc_value_free(r);
  }
  distc_value_free(args);
  bad += total != 120.0 * 40;
  check(distc_darray_reduce(d, NULL, DISTC_OP_SUM, &r), "darray_reduce");
  bad += distc_value_double(r) != 120.0 * 40;
  distc_value_free(r);
  check(distc_darray_gather(d, &r), "darray_gather");
  const double *g = distc_array_data(r);
  for (size_t i = 0; i < distc_array_len(r); i++)
    bad += g[i] != 1.0;
  bad += distc_array_len(r) != 120 * 40;
  distc_value_free(r);
  check(distc_darray_free(d), "darray_free");
  distc_value_free(fill);
  printf("darray %s over %d owners\n", bad ? "FAILED" : "ok", n);
  return bad;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* 'T' while stopped, 'Z' dead but unreaped, '-' gone.  The test hosts are
 * network namespaces: their pids are ours. */
static char proc_state(long pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return '-';
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  return p && p[1] == ' ' ? p[2] : '?';
}

/* Stops worker id (on another host) 0.3 s into a 20 s call: the call must
 * fail as unresponsive, and the worker must then be killed there (by its
 * host's proxy: the master cannot reach another host's processes). */
static int run_stop(int id) {
  distc_value *v;
  check(distc_remotecall_fetch(id, "whereami", NULL, &v), "whereami");
  long pid = (long)distc_value_int(distc_list_at(v, 3));
  distc_value_free(v);
  distc_value *args = distc_listv(1, distc_double(20.0));
  distc_future *f;
  check(distc_remotecall(id, "nap", args, &f), "nap");
  distc_value_free(args);
  struct timespec tick = {0, 300 * 1000 * 1000};
  nanosleep(&tick, NULL);
  if (kill((pid_t)pid, SIGSTOP) != 0) {
    printf("stop FAILED: cannot stop pid %ld: %s\n", pid, strerror(errno));
    return 1;
  }
  double t0 = now_ms();
  distc_value *r = NULL;
  int rc = distc_fetch(f, &r);
  double lost_ms = now_ms() - t0;
  printf("stop call: rc=%d after %.0f ms: %s\n", rc, lost_ms,
         distc_errmsg());
  distc_value_free(r);
  distc_future_free(f);
  if (rc != DISTC_EPROCEXIT || strstr(distc_errmsg(), "unresponsive") == NULL)
    return 1;
  t0 = now_ms();
  char st;
  /* Until it is gone: a stopped process that gets SIGKILL runs (R) for a
   * moment while it dies. */
  while ((st = proc_state(pid)) != '-' && st != 'Z' && now_ms() - t0 < 10000) {
    struct timespec ms20 = {0, 20 * 1000 * 1000};
    nanosleep(&ms20, NULL);
  }
  printf("stop worker %d pid %ld state %c after %.0f ms\n", id, pid, st,
         now_ms() - t0);
  return st != '-' && st != 'Z';
}

static int workers(int *ids) {
  int n = distc_workers(ids, MAXW);
  if (n > MAXW)
    n = MAXW;
  if (n == 1 && ids[0] == DISTC_MASTER)
    n = 0;
  return n;
}

static void print_where(const int *ids, int n) {
  for (int i = 0; i < n; i++) {
    distc_value *v;
    check(distc_remotecall_fetch(ids[i], "whereami", NULL, &v), "whereami");
    printf("worker %d %s %s %s %lld env=[%s]\n", ids[i],
           distc_value_str(distc_list_at(v, 0), NULL),
           distc_value_str(distc_list_at(v, 1), NULL),
           distc_value_str(distc_list_at(v, 2), NULL),
           (long long)distc_value_int(distc_list_at(v, 3)),
           distc_value_str(distc_list_at(v, 4), NULL));
    distc_value_free(v);
  }
  char ns[128];
  netns(ns, sizeof ns);
  printf("master local %s\n", ns);
}

static int run_calls(const int *ids, int n) {
  int bad = 0;
  /* One call to each, then many, spread by DISTC_ANY. */
  for (int i = 0; i < n; i++) {
    distc_value *args = distc_listv(1, distc_int(ids[i])), *r;
    check(distc_remotecall_fetch(ids[i], "square", args, &r), "square");
    if (distc_value_int(r) != (int64_t)ids[i] * ids[i]) {
      printf("square on worker %d gave %lld\n", ids[i],
             (long long)distc_value_int(r));
      bad++;
    }
    distc_value_free(r);
    distc_value_free(args);
  }
  enum { NF = 64 };
  distc_future *fs[NF];
  int seen[MAXW + 2] = {0};
  for (int k = 0; k < NF; k++) {
    distc_value *args = distc_listv(1, distc_int(k));
    check(distc_spawnat(DISTC_ANY, "square", args, &fs[k]), "spawnat");
    distc_value_free(args);
  }
  for (int k = 0; k < NF; k++) {
    distc_value *r;
    check(distc_fetch(fs[k], &r), "fetch");
    if (distc_value_int(r) != (int64_t)k * k)
      bad++;
    int where = distc_future_where(fs[k]);
    if (where >= 0 && where < MAXW + 2)
      seen[where]++;
    distc_value_free(r);
    distc_future_free(fs[k]);
  }
  for (int i = 0; i < n; i++)
    if (ids[i] < MAXW + 2 && seen[ids[i]] == 0) {
      printf("spawnat(ANY) never ran on worker %d\n", ids[i]);
      bad++;
    }
  /* 4 MiB each way per worker, all at once. */
  size_t len = 512 * 1024;
  distc_value *a = distc_array(DISTC_F64, 1, &len);
  double *d = distc_array_data(a), want = 0;
  for (size_t i = 0; i < len; i++) {
    d[i] = (double)(i % 1000) * 0.5;
    want += d[i];
  }
  distc_value *args = distc_listv(1, a);
  distc_future *af[MAXW];
  for (int i = 0; i < n; i++)
    check(distc_remotecall(ids[i], "echo_sum", args, &af[i]), "echo_sum");
  for (int i = 0; i < n; i++) {
    distc_value *r;
    check(distc_fetch(af[i], &r), "fetch echo_sum");
    distc_value *back = distc_list_at(r, 0);
    if (distc_value_double(distc_list_at(r, 1)) != want ||
        distc_array_len(back) != len ||
        memcmp(distc_array_data(back), d, len * sizeof *d) != 0) {
      printf("echo_sum on worker %d came back wrong\n", ids[i]);
      bad++;
    }
    distc_value_free(r);
    distc_future_free(af[i]);
  }
  distc_value_free(args);
  /* An error says where it happened. */
  distc_value *r = NULL;
  int rc = distc_remotecall_fetch(ids[n - 1], "fails", NULL, &r);
  char want_msg[64];
  snprintf(want_msg, sizeof want_msg, "On worker %d", ids[n - 1]);
  if (rc != DISTC_EREMOTE || strstr(distc_errmsg(), want_msg) == NULL ||
      strstr(distc_errmsg(), "failing on purpose") == NULL) {
    printf("remote error was rc=%d '%s'\n", rc, distc_errmsg());
    bad++;
  }
  distc_value_free(r);
  return bad;
}

/* [pid]: where worker pid is, asked from here over a worker-to-worker
 * link (for "w2w"). */
DISTC_FUNCTION(whereis) {
  distc_value *v = NULL;
  if (distc_remotecall_fetch((int)distc_value_int(distc_list_at(args, 0)),
                             "whereami", NULL, &v) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return v;
}

/* Worker ids[0] calls every other worker directly (over TCP when they are
 * on other hosts), 50 times each: each answer must come from that worker
 * (the pid the master sees) on its own host. */
static int run_w2w(const int *ids, int n) {
  int bad = 0;
  distc_value *me = NULL;
  check(distc_remotecall_fetch(ids[0], "whereami", NULL, &me), "whereami");
  for (int i = 1; i < n; i++) {
    distc_value *them = NULL;
    check(distc_remotecall_fetch(ids[i], "whereami", NULL, &them), "whereami");
    for (int k = 0; k < 50; k++) {
      distc_value *a = distc_listv(1, distc_int(ids[i])), *v = NULL;
      if (distc_remotecall_fetch(ids[0], "whereis", a, &v) < 0) {
        printf("w2w %d -> %d: %s\n", ids[0], ids[i], distc_errmsg());
        bad++;
      } else if (distc_value_int(distc_list_at(v, 3)) !=
                 distc_value_int(distc_list_at(them, 3))) {
        printf("w2w %d -> %d: answered by another process\n", ids[0], ids[i]);
        bad++;
      } else if (k == 0) {
        printf("w2w %d on %s -> %d on %s\n", ids[0],
               distc_value_str(distc_list_at(me, 0), NULL), ids[i],
               distc_value_str(distc_list_at(v, 0), NULL));
      }
      distc_value_free(a);
      distc_value_free(v);
    }
    distc_value_free(them);
  }
  distc_value_free(me);
  return bad;
}

int main(int argc, char **argv) {
  check(distc_init(&argc, &argv), "distc_init");
  const char *what = argc > 1 ? argv[1] : "where";
  int ids[MAXW];
  int n = workers(ids);

  if (strcmp(what, "where") == 0) {
    print_where(ids, n);
  } else if (strcmp(what, "calls") == 0) {
    if (n == 0) {
      printf("no workers\n");
      return 1;
    }
    int bad = run_calls(ids, n);
    printf("calls %s on %d workers\n", bad ? "FAILED" : "ok", n);
    if (bad)
      return 1;
  } else if (strcmp(what, "w2w") == 0 && n >= 2) {
    int bad = run_w2w(ids, n);
    printf("w2w %s\n", bad ? "FAILED" : "ok");
    if (bad)
      return 1;
  } else if (strcmp(what, "pmap") == 0) {
    if (run_pmap())
      return 1;
  } else if (strcmp(what, "darray") == 0) {
    if (run_darray())
      return 1;
  } else if (strcmp(what, "output") == 0) {
    for (int i = 0; i < n; i++)
      check(distc_remotecall_wait(ids[i], "say", NULL), "say");
  } else if (strcmp(what, "segv") == 0 && n > 0) {
    int rc = distc_remotecall_wait(ids[n - 1], "crash", NULL);
    printf("segv %s: rc=%d %s\n",
           rc == DISTC_EPROCEXIT && strstr(distc_errmsg(), "signal 11")
               ? "ok" : "FAILED",
           rc, distc_errmsg());
    /* The run goes on a while: a departure at the very end of a run is
     * not reported (workers leave with their master). */
    fflush(stdout);
    sleep(2);
  } else if (strcmp(what, "stop") == 0 && n > 0) {
    int bad = run_stop(ids[n - 1]);
    distc_value *sq = distc_listv(1, distc_int(3)), *r = NULL;
    bad += n > 1 && distc_remotecall_fetch(ids[0], "square", sq, &r) < 0;
    distc_value_free(sq);
    distc_value_free(r);
    printf("stop %s\n", bad ? "FAILED" : "ok");
    if (bad)
      return 1;
  } else if (strcmp(what, "hang") == 0) {
    print_where(ids, n);
    printf("ready\n");
    fflush(stdout);
    for (;;)
      pause();
  } else if (strcmp(what, "addprocs-stop") == 0 && argc >= 4) {
    /* The same without distc-launch: the master's own manager kills it. */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "ssh-config=%s", argv[3]);
    const char *opts[2] = {cfg, NULL};
    distc_addprocs_opts o = {
        .count = 0, .hosts = argv[2], .manager_options = opts,
        .timeout_s = 20};
    int added[MAXW];
    int k = distc_addprocs(&o, added);
    if (k < 1) {
      fprintf(stderr, "ssh_prog: addprocs: %s\n", distc_errmsg());
      return 3;
    }
    int bad = run_stop(added[k - 1]);
    printf("stop %s\n", bad ? "FAILED" : "ok");
    if (bad)
      return 1;
  } else if (strcmp(what, "addprocs") == 0 && argc >= 4) {
    /* argv[3..]: manager options; argv[3] is the ssh config. */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "ssh-config=%s", argv[3]);
    const char *opts[16] = {cfg};
    for (int i = 4; i < argc && i - 3 < 15; i++)
      opts[i - 3] = argv[i];
    distc_addprocs_opts o = {
        .count = 0, .hosts = argv[2], .manager_options = opts,
        .timeout_s = 20};
    int added[MAXW];
    int k = distc_addprocs(&o, added);
    if (k < 0) {
      fprintf(stderr, "ssh_prog: addprocs: %s\n", distc_errmsg());
      return 3;
    }
    printf("added %d\n", k);
    n = workers(ids);
    print_where(ids, n);
    int bad = run_calls(ids, n);
    printf("calls %s on %d workers\n", bad ? "FAILED" : "ok", n);
    check(distc_rmprocs(added, k), "rmprocs");
    printf("after rmprocs %d workers\n", workers(ids));
    if (bad)
      return 1;
  } else {
    fprintf(stderr, "ssh_prog: unknown case '%s'\n", what);
    return 2;
  }
  check(distc_finalize(), "distc_finalize");
  return 0;
}

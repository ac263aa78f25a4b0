/* test_liveness.c — a worker that stops answering (SIGSTOP) is lost within
 * the liveness deadline, exactly as if it had exited; a busy one is not;
 * writes to a stopped worker never hold the caller; per-call deadlines; a
 * flood of idle unauthenticated connections does not starve the master.
 * One case per run (argv[1]) under distc-launch, with short heartbeat
 * settings (DISTC_HEARTBEAT_S / --heartbeat, DISTC_HEARTBEAT_MISSES) so a
 * case takes seconds.  Prints `N passed, M failed`. */
#include <distc.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"

/* The master's share of one core while it turns away a flood: a spinning
 * accept loop takes all of it; dropping ~10,000 connections costs a few
 * per cent, several times that with every call instrumented by ASan. */
#if defined(__SANITIZE_ADDRESS__)
#define FLOOD_CPU_SHARE 0.25
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLOOD_CPU_SHARE 0.25
#endif
#endif
#ifndef FLOOD_CPU_SHARE
#define FLOOD_CPU_SHARE 0.10
#endif

#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

DISTC_FUNCTION(ospid) {
  (void)args;
  (void)ctx;
  return distc_int(getpid());
}

/* Runs inline on the worker's main thread: it reads nothing meanwhile. */
DISTC_FUNCTION(sleep_ms) {
  (void)ctx;
  sleep_s((double)distc_value_int(distc_list_at(args, 0)) / 1e3);
  return distc_int(distc_myid());
}

DISTC_FUNCTION(twice_slowly) {
  (void)ctx;
  sleep_s(0.02);
  return distc_int(2 * distc_value_int(distc_list_at(args, 0)));
}

DISTC_FUNCTION(nbytes) {
  (void)ctx;
  size_t n = 0;
  distc_value_str(distc_list_at(args, 0), &n);
  return distc_int((int64_t)n);
}

DISTC_FUNCTION(init_slowly) {
  (void)args;
  (void)ctx;
  sleep_s(0.5);
  return distc_nil();
}

static double interval(void) {
  const char *s = getenv("DISTC_HEARTBEAT_S");
  return s ? atof(s) : 1.0;
}

static int64_t ospid_of(int id) {
  distc_value *v = NULL;
  int rc = distc_remotecall_fetch(id, "ospid", NULL, &v);
  OK(rc);
  int64_t pid = rc < 0 ? -1 : distc_value_int(v);
  distc_value_free(v);
  return pid;
}

/* 'T' while stopped; a killed one is a zombie or gone. */
static char proc_state(int64_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return '-';
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  return p && p[1] == ' ' ? p[2] : '?';
}

static bool has_worker(int id) {
  int ids[64];
  int n = distc_workers(ids, 64);
  for (int i = 0; i < n && i < 64; i++)
    if (ids[i] == id)
      return true;
  return false;
}

/* SIGSTOP during a call: the fetch fails with EPROCEXIT naming the worker
 * and its silence within 3 intervals; a worker busy in a call longer than
 * the deadline stays. */
static void case_stop_call(void) {
  double iv = interval();
  int64_t pid2 = ospid_of(2);
  distc_future *busy, *f;
  distc_value *ms = distc_listv(1, distc_int((int64_t)(iv * 4 * 1e3)));
  OK(distc_remotecall(3, "sleep_ms", ms, &busy));
  distc_value_free(ms);
  ms = distc_listv(1, distc_int(30000));
  OK(distc_remotecall(2, "sleep_ms", ms, &f));
  distc_value_free(ms);
  sleep_s(0.2);
  double t0 = now_s();
  CHECK(kill((pid_t)pid2, SIGSTOP) == 0, "SIGSTOP %lld", (long long)pid2);
  int rc = distc_fetch(f, NULL);
  double took = now_s() - t0;
  CHECK(rc == DISTC_EPROCEXIT, "rc=%d %s", rc, distc_errmsg());
  CHECK(strstr(distc_errmsg(), "On worker 2") &&
            strstr(distc_errmsg(), "unresponsive for"),
        "message: %s", distc_errmsg());
  CHECK(took < 3 * iv, "lost after %.2f s, interval %.2f s", took, iv);
  printf("stopped worker lost after %.2f s (interval %.2f s)\n", took, iv);
  distc_future_free(f);
  CHECK(!has_worker(2), "worker 2 still listed");
  /* The master killed it (it was on this host). */
  char st = 'T';
  for (int i = 0; i < 100 && (st = proc_state(pid2)) == 'T'; i++)
    sleep_s(0.02);
  CHECK(st != 'T', "worker 2 still stopped, not killed");
  rc = distc_remotecall_wait(2, "ospid", NULL);
  CHECK(rc == DISTC_EPROCEXIT, "call to the lost worker: rc=%d", rc);
  /* The busy one ran its whole call, past the deadline, and is still here. */
  distc_value *v = NULL;
  OK(distc_fetch(busy, &v));
  CHECK(distc_value_int(v) == 3, "busy call answered %lld",
        (long long)distc_value_int(v));
  distc_value_free(v);
  distc_future_free(busy);
  CHECK(has_worker(3), "the busy worker was dropped");
  OK(distc_remotecall_wait(3, "ospid", NULL));
}

/* Stops pid 0.1 s from now, from another thread. */
static void *stop_later(void *arg) {
  sleep_s(0.1);
  kill((pid_t)(intptr_t)arg, SIGSTOP);
  return NULL;
}

/* SIGSTOP mid-pmap: the stopped worker's batches are reissued, and pmap
 * completes on the others. */
static void case_stop_pmap(void) {
  double iv = interval();
  int64_t pid2 = ospid_of(2);
  size_t n = 60;
  distc_value *xs = distc_list(n), *out = NULL;
  for (size_t i = 0; i < n; i++)
    distc_list_set(xs, i, distc_int((int64_t)i));
  distc_pmap_opts o = {.batch_size = 1, .no_progress = true};
  pthread_t t;
  double t0 = now_s();
  /* Stop it from another thread while pmap runs here. */
  pthread_create(&t, NULL, stop_later, (void *)(intptr_t)pid2);
  int rc = distc_pmap("twice_slowly", xs, &o, &out);
  double took = now_s() - t0;
  pthread_join(t, NULL);
  OK(rc);
  CHECK(proc_state(pid2) != 'T', "the stopped worker was not killed");
  size_t good = 0;
  for (size_t i = 0; rc == 0 && i < n; i++)
    good += distc_value_int(distc_list_at(out, i)) == 2 * (int64_t)i;
  CHECK(rc < 0 || good == n, "%zu of %zu results right", good, n);
  /* Work: 60 x 20 ms over 2-3 workers; plus the deadline. */
  CHECK(took < 3 * iv + 1.5, "pmap took %.2f s", took);
  printf("pmap with a stopped worker took %.2f s\n", took);
  distc_value_free(out);
  distc_value_free(xs);
}

/* A child stops us (and maybe the workers) for `secs`, then resumes us, and
 * the workers a little later. */
static void stop_us(pid_t me, const int64_t *others, int n, double secs) {
  pid_t kid = fork();
  if (kid == 0) {
    sleep_s(0.1);
    for (int i = 0; i < n; i++)
      kill((pid_t)others[i], SIGSTOP);
    kill(me, SIGSTOP);
    sleep_s(secs);
    /* The master first: its first look sees workers silent for longer than
     * the deadline, and still stopped. */
    kill(me, SIGCONT);
    sleep_s(0.2);
    for (int i = 0; i < n; i++)
      kill((pid_t)others[i], SIGCONT);
    _exit(0);
  }
  sleep_s(0.3 + secs); /* we are stopped in the middle of this */
  waitpid(kid, NULL, 0);
}

/* Ctrl-Z stops the master but not the workers (process groups of their
 * own); stopping everything is the other case.  Past the deadline either
 * way, nobody is lost: workers do not judge the master, and a master that
 * was stopped itself forgives the silence it saw. */
static void case_stop_master(void) {
  double iv = interval();
  int64_t pids[2] = {ospid_of(2), ospid_of(3)};
  int n0 = distc_nworkers();
  stop_us(getpid(), NULL, 0, 3 * iv);
  sleep_s(iv); /* one more interval, for any late verdict */
  CHECK(distc_nworkers() == n0, "%d workers after the master was stopped",
        distc_nworkers());
  OK(distc_remotecall_wait(2, "ospid", NULL));
  OK(distc_remotecall_wait(3, "ospid", NULL));
  /* Worker 4, if any, keeps running: it is silent to a stopped master. */
  stop_us(getpid(), pids, 2, 3 * iv);
  sleep_s(iv);
  CHECK(distc_nworkers() == n0, "%d workers after everything was stopped",
        distc_nworkers());
  OK(distc_remotecall_wait(2, "ospid", NULL));
  OK(distc_remotecall_wait(3, "ospid", NULL));
}

/* SIGSTOP of a pool member during its call: the call moves to another
 * member, and the pool drops the lost one. */
static void case_stop_pool(void) {
  double iv = interval();
  int64_t pid2 = ospid_of(2);
  int ids[2] = {2, 3};
  distc_pool *pool = NULL;
  OK(distc_pool_new(ids, 2, &pool));
  distc_value *ms = distc_listv(1, distc_int(300)), *v = NULL;
  pthread_t t;
  double t0 = now_s();
  pthread_create(&t, NULL, stop_later, (void *)(intptr_t)pid2);
  int rc = distc_remotecall_fetch_pool(pool, "sleep_ms", ms, &v);
  double took = now_s() - t0;
  pthread_join(t, NULL);
  OK(rc);
  CHECK(rc < 0 || distc_value_int(v) == 3, "ran on %lld",
        (long long)distc_value_int(v));
  CHECK(took < 0.1 + 3 * iv + 0.3, "the call took %.2f s", took);
  CHECK(distc_pool_size(pool) == 1, "pool size %d", distc_pool_size(pool));
  distc_value_free(v);
  distc_value_free(ms);
  distc_pool_free(pool);
}

/* SIGSTOP of a participant while distc_shared_new waits for it. */
static void case_stop_shared(void) {
  double iv = interval();
  int64_t pid2 = ospid_of(2);
  pthread_t t;
  size_t dims[1] = {1000};
  distc_shared_opts so = {.init = "init_slowly"};
  distc_value *S = NULL;
  double t0 = now_s();
  pthread_create(&t, NULL, stop_later, (void *)(intptr_t)pid2);
  int rc = distc_shared_new(DISTC_F64, 1, dims, &so, &S);
  double took = now_s() - t0;
  pthread_join(t, NULL);
  CHECK(rc == DISTC_EPROCEXIT, "shared_new: rc=%d %s", rc, distc_errmsg());
  CHECK(strstr(distc_errmsg(), "unresponsive"), "message: %s", distc_errmsg());
  /* 0.1 s before the stop, the deadline, 3 intervals in all. */
  CHECK(took < 0.1 + 3 * iv, "shared_new ended after %.2f s", took);
  distc_value_free(S);
  /* The others still work. */
  OK(distc_remotecall_wait(3, "ospid", NULL));
}

/* A per-call deadline gives up waiting without touching the call. */
static void case_timeout(void) {
  distc_value *ms = distc_listv(1, distc_int(1500)), *v = NULL;
  distc_future *f;
  OK(distc_remotecall(2, "sleep_ms", ms, &f));
  double t0 = now_s();
  int rc = distc_fetch_timeout(f, 0.2, &v);
  double took = now_s() - t0;
  CHECK(rc == DISTC_ETIMEDOUT, "rc=%d %s", rc, distc_errmsg());
  CHECK(took >= 0.19 && took < 1.0, "timed out after %.2f s", took);
  CHECK(v == NULL, "a value came back on timeout");
  CHECK(distc_wait_timeout(f, 0) == DISTC_ETIMEDOUT, "zero timeout");
  CHECK(has_worker(2), "the timeout dropped the worker");
  OK(distc_fetch_timeout(f, 30, &v));
  CHECK(distc_value_int(v) == 2, "answer %lld", (long long)distc_value_int(v));
  distc_value_free(v);
  OK(distc_wait_timeout(f, 0));
  CHECK(distc_fetch_timeout(f, -1, NULL) == DISTC_EINVAL, "negative timeout");
  distc_future_free(f);
  distc_value_free(ms);
}

/* Calls of 256 KiB to a stopped worker: its socket fills, and then they
 * queue; every remotecall returns at once.  Heartbeats are off here, so only
 * distc_finalize's grace period ends it (it kills the worker). */
static void case_full_socket(void) {
  int64_t pid2 = ospid_of(2);
  CHECK(kill((pid_t)pid2, SIGSTOP) == 0, "SIGSTOP");
  size_t len = 256 * 1024;
  char *buf = calloc(1, len);
  distc_value *a = distc_listv(1, distc_bytes(buf, len));
  free(buf);
  distc_future *fs[12];
  double worst = 0, t0 = now_s();
  for (int i = 0; i < 12; i++) {
    double t = now_s();
    OK(distc_remotecall(2, "nbytes", a, &fs[i]));
    if (now_s() - t > worst)
      worst = now_s() - t;
  }
  CHECK(worst < 0.5, "a remotecall took %.2f s", worst);
  printf("12 x 256 KiB to a stopped worker: %.3f s, slowest call %.3f s\n",
         now_s() - t0, worst);
  /* The other worker is served meanwhile. */
  OK(distc_remotecall_wait(3, "ospid", NULL));
  for (int i = 0; i < 12; i++)
    distc_future_free(fs[i]);
  distc_value_free(a);
  double tf = now_s();
  OK(distc_finalize());
  double took = now_s() - tf;
  CHECK(took < 5.0 + 2.0, "finalize took %.2f s (grace 5 s)", took);
  printf("finalize with a stopped, full worker took %.2f s\n", took);
  CHECK(proc_state(pid2) != 'T', "the stopped worker was left stopped");
}

/* The same with heartbeats on: calls that find the queue past its mark wait
 * for room, and that wait ends when the worker is declared lost. */
static void case_full_socket_live(void) {
  double iv = interval();
  int64_t pid2 = ospid_of(2);
  size_t len = 1024 * 1024;
  char *buf = calloc(1, len);
  distc_value *a = distc_listv(1, distc_bytes(buf, len));
  free(buf);
  double t0 = now_s();
  CHECK(kill((pid_t)pid2, SIGSTOP) == 0, "SIGSTOP");
  int lost = 0;
  for (int i = 0; i < 12; i++) {
    distc_future *f;
    int rc = distc_remotecall(2, "nbytes", a, &f);
    if (rc == 0)
      distc_future_free(f);
    else
      lost += rc == DISTC_EPROCEXIT;
  }
  double took = now_s() - t0;
  CHECK(lost > 0, "every call queued (12 MiB past the mark?)");
  CHECK(took < 3 * iv + 0.5, "the calls held the caller %.2f s", took);
  printf("12 x 1 MiB to a stopped worker: %.2f s, %d refused\n", took, lost);
  distc_value_free(a);
  OK(distc_remotecall_wait(3, "ospid", NULL));
}

/* ---- a flood of idle connections (run with a file limit of 256) ---- */

typedef struct listener {
  struct sockaddr_storage sa;
  socklen_t len;
} listener;

/* The master's listening sockets, found among our own descriptors. */
static int find_listeners(listener *ls, int max) {
  int n = 0;
  for (int fd = 3; fd < 1024 && n < max; fd++) {
    int acc = 0;
    socklen_t l = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) != 0 || !acc)
      continue;
    ls[n].len = sizeof ls[n].sa;
    if (getsockname(fd, (struct sockaddr *)&ls[n].sa, &ls[n].len) == 0)
      n++;
  }
  return n;
}

/* The attacker, a forked child: keeps `want` connections open that never
 * say a word, re-dialing those the master drops, for `secs` seconds.  Only
 * async-signal-safe calls (we forked a threaded process). */
static void attack(const listener *ls, int nls, int want, double secs) {
  static int fds[4096];
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  for (int i = 0; i < want; i++)
    fds[i] = -1;
  double end = now_s() + secs;
  char buf[256];
  while (now_s() < end) {
    for (int i = 0; i < want; i++) {
      if (fds[i] >= 0) {
        ssize_t r;
        while ((r = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT)) > 0)
          ;
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
          close(fds[i]);
          fds[i] = -1;
        }
      }
      if (fds[i] < 0) {
        const listener *l = &ls[i % nls];
        int fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0)
          continue;
        if (connect(fd, (const struct sockaddr *)&l->sa, l->len) == 0 ||
            errno == EINPROGRESS)
          fds[i] = fd;
        else
          close(fd);
      }
    }
    sleep_s(0.25);
  }
  _exit(0);
}

static double cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
         r.ru_stime.tv_usec / 1e6;
}

static void case_flood(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  CHECK(rl.rlim_cur <= 256, "run this case with ulimit -S -n 256 (now %ld)",
        (long)rl.rlim_cur);
  listener ls[8];
  int nls = find_listeners(ls, 8);
  CHECK(nls >= 1, "found no listening socket");
  if (nls < 1)
    return;
  /* Our stderr (the library's warnings) into a file we count. */
  fflush(stderr);
  int saved = dup(2);
  FILE *log = tmpfile();
  dup2(fileno(log), 2);

  double secs = 8, t0 = now_s(), c0 = cpu_s();
  pid_t kid = fork();
  if (kid == 0)
    attack(ls, nls, 2000, secs);
  CHECK(kid > 0, "fork");
  int calls = 0, bad = 0, files_bad = 0, jrc = -1, newid = 0;
  double worst = 0, joined = -1;
  while (now_s() - t0 < secs) {
    if (joined < 0 && now_s() - t0 > 2) {
      /* A worker that joins during the flood gets in. */
      distc_addprocs_opts ao = {.count = 1, .timeout_s = 30};
      double tj = now_s();
      jrc = distc_addprocs(&ao, &newid);
      joined = now_s() - tj;
    }
    for (int id = 2; id <= 3; id++) {
      double t = now_s();
      int rc = distc_remotecall_wait(id, "ospid", NULL);
      double dt = now_s() - t;
      worst = dt > worst ? dt : worst;
      calls++;
      if (rc < 0 && bad++ == 0)
        printf("call to %d under the flood: %s\n", id, distc_errmsg());
    }
    FILE *f = fopen("/dev/null", "r");
    if (f)
      fclose(f);
    else
      files_bad++;
    sleep_s(0.05);
  }
  int status = 0;
  if (kid > 0)
    waitpid(kid, &status, 0);
  double wall = now_s() - t0, cpu = cpu_s() - c0;

  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(log);
  char line[1024];
  int lines = 0;
  while (fgets(line, sizeof line, log)) {
    lines++;
    fputs(line, stderr);
  }
  fclose(log);

  CHECK(bad == 0, "%d of %d calls failed under the flood", bad, calls);
  CHECK(worst < 1.0, "slowest call under the flood: %.3f s", worst);
  CHECK(files_bad == 0, "fopen failed %d times: descriptors exhausted",
        files_bad);
  CHECK(jrc == 1, "addprocs under the flood: %d %s", jrc, distc_errmsg());
  /* How soon it gets in depends on its place in the backlog behind the
   * attacker's connections and on the machine's load: not checked. */
  /* Our own threads (calls, fopen, the I/O thread) and nothing like a
   * spinning accept loop. */
  CHECK(cpu < FLOOD_CPU_SHARE * wall, "the master used %.2f s of CPU in "
        "%.2f s", cpu, wall);
  CHECK(lines <= 6, "%d lines on stderr", lines);
  printf("flood of 2000: %d calls, slowest %.3f s, join %.2f s, master CPU "
         "%.2f s in %.2f s, %d stderr lines\n",
         calls, worst, joined, cpu, wall, lines);
  if (jrc == 1)
    OK(distc_remotecall_wait(newid, "ospid", NULL));
}

/* The same with the master out of descriptors (the program holds all but
 * a few): accept fails with EMFILE, and the master must pause, not spin on
 * the listening sockets that stay readable. */
static void case_flood_emfile(void) {
  listener ls[8];
  int nls = find_listeners(ls, 8);
  CHECK(nls >= 1, "found no listening socket");
  if (nls < 1)
    return;
  int hog[1024], nhog = 0;
  while (nhog < 1024 && (hog[nhog] = open("/dev/null", O_RDONLY)) >= 0)
    nhog++;
  for (int i = 0; i < 4 && nhog > 0; i++)
    close(hog[--nhog]); /* a few left, taken by the first connections */
  double secs = 4, t0 = now_s(), c0 = cpu_s();
  pid_t kid = fork();
  if (kid == 0)
    attack(ls, nls, 2000, secs);
  CHECK(kid > 0, "fork");
  int calls = 0, bad = 0;
  while (now_s() - t0 < secs) {
    if (distc_remotecall_wait(2 + calls % 2, "ospid", NULL) < 0 && bad++ == 0)
      printf("call under the flood: %s\n", distc_errmsg());
    calls++;
    sleep_s(0.05);
  }
  int status = 0;
  if (kid > 0)
    waitpid(kid, &status, 0);
  double wall = now_s() - t0, cpu = cpu_s() - c0;
  while (nhog > 0)
    close(hog[--nhog]);
  CHECK(bad == 0, "%d of %d calls failed", bad, calls);
  CHECK(cpu < FLOOD_CPU_SHARE * wall, "the master used %.2f s of CPU in "
        "%.2f s", cpu, wall);
  printf("flood at EMFILE: %d calls, master CPU %.2f s in %.2f s\n", calls,
         cpu, wall);
  OK(distc_remotecall_wait(2, "ospid", NULL));
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  int rc = distc_init(&argc, &argv);
  if (rc < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (distc_nworkers() < 2) {
    printf("wants at least 2 workers\n");
    return 1;
  }
  bool finalised = false;
  if (!strcmp(name, "stop-call"))
    case_stop_call();
  else if (!strcmp(name, "stop-pmap"))
    case_stop_pmap();
  else if (!strcmp(name, "stop-master"))
    case_stop_master();
  else if (!strcmp(name, "stop-pool"))
    case_stop_pool();
  else if (!strcmp(name, "stop-shared"))
    case_stop_shared();
  else if (!strcmp(name, "timeout"))
    case_timeout();
  else if (!strcmp(name, "full-socket")) {
    case_full_socket();
    finalised = true;
  } else if (!strcmp(name, "full-socket-live"))
    case_full_socket_live();
  else if (!strcmp(name, "flood"))
    case_flood();
  else if (!strcmp(name, "flood-emfile"))
    case_flood_emfile();
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  if (!finalised)
    OK(distc_finalize());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

/* test_shared.c — shared arrays over real worker processes.  One binary, one
 * case per run (argv[1]), started by meson under distc-launch; the crash
 * cases are driven by test_shared_crash.sh.  Every case ends by checking
 * that none of this run's segments is left in /dev/shm.  Prints `N passed,
 * M failed`. */
#include <dirent.h>
#include <distc.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../check.h"


#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())

/* Segments of this run are named /dev/shm/distc-<master pid>-... */
static int count_segments(char *first, size_t n) {
  char prefix[32];
  snprintf(prefix, sizeof prefix, "distc-%d-", (int)getpid());
  DIR *d = opendir("/dev/shm");
  int count = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
      if (first && count == 0)
        snprintf(first, n, "%s", e->d_name);
      count++;
    }
  if (d)
    closedir(d);
  return count;
}

/* Whether this process has one of its arrays mapped; the first one's
 * name goes to first. */
static bool mapped_here(char *first, size_t n) {
  char prefix[48], line[512];
  snprintf(prefix, sizeof prefix, "distc-%d-", (int)getpid());
  FILE *f = fopen("/proc/self/maps", "r");
  bool found = false;
  while (f && !found && fgets(line, sizeof line, f)) {
    char *p = strstr(line, prefix);
    if (p && (found = true) && first)
      snprintf(first, n, "%.*s", (int)strcspn(p, " \n"), p);
  }
  if (f)
    fclose(f);
  return found;
}

static void check_clean(const char *when) {
  CHECK(count_segments(NULL, 0) == 0, "segments left in /dev/shm %s", when);
}

/* ---- functions the workers run ---- */

DISTC_FUNCTION(ospid) {
  (void)args;
  (void)ctx;
  return distc_int(getpid());
}

DISTC_FUNCTION(sleep_ms) {
  (void)ctx;
  usleep((useconds_t)distc_value_int(distc_list_at(args, 0)) * 1000);
  return distc_nil();
}

DISTC_FUNCTION(die) {
  (void)args;
  (void)ctx;
  raise(SIGKILL);
  return distc_nil();
}

DISTC_FUNCTION(echo) {
  (void)ctx;
  return distc_value_ref(distc_list_at(args, 0));
}

/* [S]: writes myid*1000 + i at every index i of my part; answers [lo, hi]. */
DISTC_FUNCTION(mark_part) {
  const distc_value *s = distc_list_at(args, 0);
  size_t lo, hi;
  if (!distc_is_shared(s) || distc_shared_localindices(s, &lo, &hi) < 0)
    return distc_fail(ctx, "not a shared array here");
  double *d = distc_array_data(s);
  for (size_t i = lo; i < hi; i++)
    d[i] = distc_myid() * 1000.0 + (double)i;
  return distc_listv(2, distc_int((int64_t)lo), distc_int((int64_t)hi));
}

/* [S, lo, hi]: the sum of S[lo..hi) as doubles, whatever the dtype. */
DISTC_FUNCTION(sum_range) {
  const distc_value *s = distc_list_at(args, 0);
  size_t lo = (size_t)distc_value_int(distc_list_at(args, 1));
  size_t hi = (size_t)distc_value_int(distc_list_at(args, 2));
  double sum = 0;
  void *p = distc_array_data(s);
  for (size_t i = lo; i < hi; i++) {
    switch (distc_array_dtype(s)) {
    case DISTC_F64: sum += ((double *)p)[i]; break;
    case DISTC_F32: sum += ((float *)p)[i]; break;
    case DISTC_I64: sum += (double)((int64_t *)p)[i]; break;
    case DISTC_I32: sum += ((int32_t *)p)[i]; break;
    case DISTC_U8: sum += ((uint8_t *)p)[i]; break;
    }
  }
  return distc_double(sum);
}

/* init: [S, base]: element i of my part = base + i (mod 200 for u8). */
DISTC_FUNCTION(init_iota) {
  const distc_value *s = distc_list_at(args, 0);
  int64_t base = distc_value_int(distc_list_at(args, 1));
  size_t lo, hi;
  if (distc_shared_localindices(s, &lo, &hi) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  void *p = distc_array_data(s);
  for (size_t i = lo; i < hi; i++) {
    int64_t x = base + (int64_t)i;
    switch (distc_array_dtype(s)) {
    case DISTC_F64: ((double *)p)[i] = (double)x; break;
    case DISTC_F32: ((float *)p)[i] = (float)x; break;
    case DISTC_I64: ((int64_t *)p)[i] = x; break;
    case DISTC_I32: ((int32_t *)p)[i] = (int32_t)x; break;
    case DISTC_U8: ((uint8_t *)p)[i] = (uint8_t)(x % 200); break;
    }
  }
  return distc_nil();
}

DISTC_FUNCTION(init_fails) {
  (void)args;
  if (distc_myid() == 3)
    return distc_fail(ctx, "init refused on 3");
  return distc_nil();
}

/* How many of this run's arrays this process has mapped (a memfd shows in
 * /proc/self/maps as "/memfd:distc-<master pid>-... (deleted)"). */
DISTC_FUNCTION(count_maps) {
  (void)ctx;
  char prefix[48], line[512];
  snprintf(prefix, sizeof prefix, "distc-%lld-",
           (long long)distc_value_int(distc_list_at(args, 0)));
  FILE *f = fopen("/proc/self/maps", "r");
  int n = 0;
  while (f && fgets(line, sizeof line, f))
    n += strstr(line, prefix) != NULL;
  if (f)
    fclose(f);
  return distc_int(n);
}

DISTC_FUNCTION(set_nofile) {
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = (rlim_t)distc_value_int(distc_list_at(args, 0));
  if (setrlimit(RLIMIT_NOFILE, &r) < 0)
    return distc_fail(ctx, "setrlimit: %s", strerror(errno));
  return distc_nil();
}

/* pmap item function: [i, S]: S[i] = 2 * i + 1. */
DISTC_FUNCTION(pmap_write) {
  (void)ctx;
  int64_t i = distc_value_int(distc_list_at(args, 0));
  double *d = distc_array_data(distc_list_at(args, 1));
  d[i] = 2.0 * (double)i + 1;
  return distc_int(distc_myid());
}

/* ---- helpers ---- */

static int maps_on(int pid) {
  distc_value *a = distc_listv(1, distc_int(getpid())), *v = NULL;
  int rc = distc_remotecall_fetch(pid, "count_maps", a, &v);
  int n = rc < 0 ? -1 : (int)distc_value_int(v);
  distc_value_free(a);
  distc_value_free(v);
  return n;
}

static double sum_on(int pid, const distc_value *s, size_t lo, size_t hi) {
  distc_value *a = distc_listv(3, distc_value_ref((distc_value *)s),
                               distc_int((int64_t)lo), distc_int((int64_t)hi));
  distc_value *v = NULL;
  int rc = distc_remotecall_fetch(pid, "sum_range", a, &v);
  double sum = rc < 0 ? -1 : distc_value_double(v);
  if (rc < 0)
    printf("sum_range on %d: %s\n", pid, distc_errmsg());
  distc_value_free(a);
  distc_value_free(v);
  return sum;
}

/* ---- cases ---- */

/* Default participants, localindices, and memory seen by everyone. */
static void case_basic(void) {
  size_t dims[2] = {10, 10};
  distc_value *s = NULL;
  OK(distc_shared_new(DISTC_F64, 2, dims, NULL, &s));
  if (!s)
    return;
  check_clean("right after creation");
  CHECK(distc_is_shared(s) && distc_value_type(s) == DISTC_ARRAY &&
            distc_array_len(s) == 100 && distc_array_ndim(s) == 2,
        "an ordinary 10x10 array");
  int ids[8], n = distc_shared_procs(s, ids, 8);
  CHECK(n == 2 && ids[0] == 2 && ids[1] == 3, "procs: n=%d", n);
  size_t lo, hi;
  OK(distc_shared_localindices(s, &lo, &hi));
  CHECK(lo == hi, "the master's part is empty: [%zu, %zu)", lo, hi);
  OK(distc_shared_indices(s, 2, &lo, &hi));
  CHECK(lo == 0 && hi == 50, "worker 2: [%zu, %zu)", lo, hi);
  OK(distc_shared_indices(s, 3, &lo, &hi));
  CHECK(lo == 50 && hi == 100, "worker 3: [%zu, %zu)", lo, hi);
  const double *d = distc_array_data(s);
  double z = 0;
  for (int i = 0; i < 100; i++)
    z += d[i] != 0;
  CHECK(z == 0, "starts zeroed");

  /* Each worker writes its own part; the master and the other worker see
   * the writes, which a copy of the data could not show. */
  for (int w = 2; w <= 3; w++) {
    distc_value *a = distc_listv(1, distc_value_ref(s)), *r = NULL;
    OK(distc_remotecall_fetch(w, "mark_part", a, &r));
    int64_t rlo = distc_value_int(distc_list_at(r, 0));
    int64_t rhi = distc_value_int(distc_list_at(r, 1));
    CHECK(rlo == (w - 2) * 50 && rhi == rlo + 50, "worker %d's localindices "
          "[%lld, %lld)", w, (long long)rlo, (long long)rhi);
    distc_value_free(a);
    distc_value_free(r);
  }
  int good = 0;
  for (int i = 0; i < 100; i++)
    good += d[i] == (i < 50 ? 2000.0 : 3000.0) + i;
  CHECK(good == 100, "master sees the workers' writes (%d of 100)", good);
  double want = 0;
  for (int i = 0; i < 50; i++)
    want += 2000.0 + i;
  CHECK(sum_on(3, s, 0, 50) == want, "worker 3 sees worker 2's writes");
  /* The master writes, a worker reads. */
  ((double *)distc_array_data(s))[99] = -7;
  CHECK(sum_on(2, s, 99, 100) == -7, "worker 2 sees the master's write");

  /* A shared array that comes back from a worker is the same memory. */
  distc_value *a = distc_listv(1, distc_value_ref(s)), *back = NULL;
  OK(distc_remotecall_fetch(2, "echo", a, &back));
  CHECK(back && distc_is_shared(back) &&
            distc_array_data(back) == distc_array_data(s),
        "echo returns the same mapping");
  distc_value_free(back);
  distc_value_free(a);

  /* Freed by the master: every participant unmaps it. */
  CHECK(maps_on(2) == 1 && maps_on(3) == 1, "mapped once on each worker");
  distc_value_free(s);
  CHECK(maps_on(2) == 0 && maps_on(3) == 0, "unmapped after the master freed "
        "it: %d %d", maps_on(2), maps_on(3));
  check_clean("after free");
}

/* init runs on every participant over its part, for every dtype. */
static void case_init(void) {
  distc_dtype types[] = {DISTC_F64, DISTC_F32, DISTC_I64, DISTC_I32, DISTC_U8};
  for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
    size_t dims[3] = {3, 7, 5};
    distc_value *init_args = distc_listv(1, distc_int(10));
    distc_shared_opts o = {.init = "init_iota", .init_args = init_args};
    distc_value *s = NULL;
    OK(distc_shared_new(types[t], 3, dims, &o, &s));
    distc_value_free(init_args);
    if (!s)
      continue;
    double want = 0;
    for (int i = 0; i < 105; i++)
      want += types[t] == DISTC_U8 ? (10 + i) % 200 : 10 + i;
    CHECK(sum_on(1, s, 0, 105) == want, "dtype %d initialised everywhere",
          (int)types[t]);
    CHECK(sum_on(2, s, 0, 105) == want, "worker sees the init of dtype %d",
          (int)types[t]);
    distc_value_free(s);
  }
  /* A failing init fails the creation, and nothing stays anywhere. */
  distc_shared_opts o = {.init = "init_fails"};
  distc_value *s = (distc_value *)1;
  int rc = distc_shared_new(DISTC_F64, 1, (size_t[]){8}, &o, &s);
  CHECK(rc == DISTC_EREMOTE && s == NULL &&
            strstr(distc_errmsg(), "init refused on 3"),
        "failing init: %d %s", rc, distc_errmsg());
  CHECK(maps_on(2) == 0 && maps_on(3) == 0, "nothing mapped after a failed "
        "init");
  /* An unknown init function is an error too. */
  o.init = "no_such_init";
  rc = distc_shared_new(DISTC_F64, 1, (size_t[]){8}, &o, &s);
  CHECK(rc == DISTC_ENOTREG, "unknown init %d: %s", rc, distc_errmsg());
  check_clean("after the init cases");
}

/* Explicit participants: the master among them, splits, a non-participant. */
static void case_pids(void) {
  int pids[] = {1, 3};
  distc_shared_opts o = {.pids = pids, .npids = 2};
  distc_value *s = NULL;
  OK(distc_shared_new(DISTC_I32, 1, (size_t[]){7}, &o, &s));
  if (!s)
    return;
  size_t lo, hi;
  OK(distc_shared_localindices(s, &lo, &hi));
  CHECK(lo == 0 && hi == 3, "master part [%zu, %zu)", lo, hi);
  OK(distc_shared_indices(s, 3, &lo, &hi));
  CHECK(lo == 3 && hi == 7, "worker 3 part [%zu, %zu)", lo, hi);
  OK(distc_shared_indices(s, 2, &lo, &hi));
  CHECK(lo == 0 && hi == 0, "non-participant part empty");
  CHECK(maps_on(2) == 0 && maps_on(3) == 1, "mapped on 3 only");
  /* Worker 2 is no participant: it cannot receive the array. */
  distc_value *a = distc_listv(1, distc_value_ref(s)), *v = NULL;
  int rc = distc_remotecall_fetch(2, "echo", a, &v);
  CHECK(rc == DISTC_ENOENT && strstr(distc_errmsg(), "not mapped on process "
                                                     "2"),
        "non-participant: %d %s", rc, distc_errmsg());
  distc_value_free(a);
  distc_value_free(s);

  /* Bad participant lists. */
  int dup[] = {2, 2}, ghost[] = {2, 42};
  o = (distc_shared_opts){.pids = dup, .npids = 2};
  rc = distc_shared_new(DISTC_F64, 1, (size_t[]){4}, &o, &s);
  CHECK(rc == DISTC_EINVAL && strstr(distc_errmsg(), "twice"), "dup %d %s", rc,
        distc_errmsg());
  o = (distc_shared_opts){.pids = ghost, .npids = 2};
  rc = distc_shared_new(DISTC_F64, 1, (size_t[]){4}, &o, &s);
  CHECK(rc == DISTC_ENOENT && strstr(distc_errmsg(), "42"), "ghost %d %s", rc,
        distc_errmsg());
  rc = distc_shared_new((distc_dtype)99, 1, (size_t[]){4}, NULL, &s);
  CHECK(rc == DISTC_EINVAL, "bad dtype %d", rc);
  /* Only the master creates. */
  check_clean("after the pids case");
}

DISTC_FUNCTION(create_on_worker) {
  (void)args;
  distc_value *s = NULL;
  int rc = distc_shared_new(DISTC_F64, 1, (size_t[]){4}, NULL, &s);
  return distc_int(rc);
}

static void case_worker_creates(void) {
  distc_value *v = NULL;
  OK(distc_remotecall_fetch(2, "create_on_worker", NULL, &v));
  CHECK(distc_value_int(v) == DISTC_ENOTMASTER, "worker create: %lld",
        (long long)distc_value_int(v));
  distc_value_free(v);
}

/* A worker that says it runs on another host cannot take part. */
static void case_cross_host(void) {
  const char *env[] = {"DISTC_HOSTNAME=elsewhere.invalid", NULL};
  distc_addprocs_opts ao = {.count = 1, .env = env};
  int id = 0;
  CHECK(distc_addprocs(&ao, &id) == 1 && id == 4, "addprocs %s",
        distc_errmsg());
  int pids[] = {2, 4};
  distc_shared_opts o = {.pids = pids, .npids = 2};
  distc_value *s = NULL;
  int rc = distc_shared_new(DISTC_F64, 1, (size_t[]){10}, &o, &s);
  CHECK(rc == DISTC_EINVAL && s == NULL &&
            strstr(distc_errmsg(), "one machine") &&
            strstr(distc_errmsg(), "elsewhere.invalid"),
        "cross-host: %d %s", rc, distc_errmsg());
  /* By default it is left out. */
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){10}, NULL, &s));
  int ids[8], n = distc_shared_procs(s, ids, 8);
  CHECK(n == 2 && ids[0] == 2 && ids[1] == 3, "default procs skip worker 4 "
        "(n=%d)", n);
  CHECK(maps_on(4) == 0, "worker 4 never mapped it");
  distc_value_free(s);
  check_clean("after the cross-host case");
}

/* A file-backed array: the data ends up in the file. */
static void case_file(void) {
  char path[] = "/tmp/distc-test-shared-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0)
    return;
  close(fd);
  distc_value *s = NULL;
  /* Too small and not to be grown: a clear error. */
  distc_shared_opts o = {.path = path, .offset = 100, .create = true};
  int rc = distc_shared_new(DISTC_F64, 1, (size_t[]){64}, &o, &s);
  CHECK(rc == DISTC_EINVAL && strstr(distc_errmsg(), "multiple"),
        "misaligned offset: %d %s", rc, distc_errmsg());
  o = (distc_shared_opts){.path = path, .offset = 104};
  rc = distc_shared_new(DISTC_F64, 1, (size_t[]){64}, &o, &s);
  CHECK(rc == DISTC_EINVAL && strstr(distc_errmsg(), "create"),
        "small file: %d %s", rc, distc_errmsg());
  o.create = true;
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){64}, &o, &s));
  if (s) {
    for (int w = 2; w <= 3; w++) {
      distc_value *a = distc_listv(1, distc_value_ref(s));
      OK(distc_remotecall_wait(w, "mark_part", a));
      distc_value_free(a);
    }
    distc_value_free(s);
  }
  FILE *f = fopen(path, "rb");
  double d[64];
  size_t got = 0;
  if (f && fseek(f, 104, SEEK_SET) == 0)
    got = fread(d, sizeof(double), 64, f);
  if (f)
    fclose(f);
  int good = 0;
  for (int i = 0; i < (int)got; i++)
    good += d[i] == (i < 32 ? 2000.0 : 3000.0) + i;
  CHECK(got == 64 && good == 64, "file holds the workers' writes (%zu, %d)",
        got, good);
  /* Mapped again, the data is there (the offset is not page aligned). */
  o.create = false;
  s = NULL;
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){64}, &o, &s));
  if (s)
    CHECK(sum_on(2, s, 0, 64) == 2000.0 * 32 + 3000.0 * 32 + 63 * 64 / 2,
          "reopened file");
  distc_value_free(s);
  unlink(path);
  /* A file the array creates holds this run's data: its owner's only. */
  mode_t old = umask(022);
  o = (distc_shared_opts){.path = path, .create = true};
  s = NULL;
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){8}, &o, &s));
  umask(old);
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
        "created file has mode 0600 (%o)", (unsigned)(st.st_mode & 0777));
  distc_value_free(s);
  unlink(path);
  check_clean("after the file case");
}

/* Many arrays at once with few descriptors: none is kept open. */
static void case_many(void) {
  distc_value *lim = distc_listv(1, distc_int(64));
  OK(distc_everywhere("set_nofile", lim));
  distc_value_free(lim);
  enum { N = 300 };
  distc_value *s[N];
  int made = 0;
  for (int i = 0; i < N; i++) {
    s[i] = NULL;
    if (distc_shared_new(DISTC_F64, 1, (size_t[]){16}, NULL, &s[i]) == 0)
      made++;
    else if (made == i)
      printf("array %d: %s\n", i, distc_errmsg());
  }
  CHECK(made == N, "%d of %d arrays held at once", made, N);
  CHECK(maps_on(2) == N, "worker 2 maps all %d", N);
  check_clean("with 300 arrays held");
  for (int i = 0; i < N; i++)
    distc_value_free(s[i]);
  CHECK(maps_on(2) == 0 && maps_on(3) == 0, "all unmapped");
  for (int i = 0; i < N; i++) {
    distc_value *t = NULL;
    if (distc_shared_new(DISTC_F64, 1, (size_t[]){16}, NULL, &t) < 0) {
      CHECK(0, "create/free %d: %s", i, distc_errmsg());
      break;
    }
    distc_value_free(t);
  }
  check_clean("after 600 arrays");
}

/* Passing a shared array to pmap passes the handle. */
static void case_pmap(void) {
  distc_value *s = NULL;
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){40}, NULL, &s));
  if (!s)
    return;
  size_t one = 40;
  distc_value *items = distc_array(DISTC_I64, 1, &one);
  for (int i = 0; i < 40; i++)
    ((int64_t *)distc_array_data(items))[i] = i;
  distc_pmap_opts o = {.arg = s, .batch_size = 3, .no_progress = true};
  distc_value *r = NULL;
  OK(distc_pmap("pmap_write", items, &o, &r));
  int good = 0;
  for (int i = 0; i < 40; i++)
    good += ((double *)distc_array_data(s))[i] == 2.0 * i + 1;
  CHECK(good == 40, "pmap wrote into the shared array (%d of 40)", good);
  distc_value_free(r);
  distc_value_free(items);
  distc_value_free(s);
  check_clean("after pmap");
}

/* rmprocs of a participant and SIGKILL of another: the master and the rest
 * keep working, and nothing is left. */
static void case_lose_workers(void) {
  distc_value *s = NULL;
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){30}, NULL, &s));
  if (!s)
    return;
  int rm[] = {3};
  OK(distc_rmprocs(rm, 1));
  check_clean("after rmprocs");
  distc_value *a = distc_listv(1, distc_value_ref(s));
  OK(distc_remotecall_wait(2, "mark_part", a));
  CHECK(((double *)distc_array_data(s))[0] == 2000, "worker 2 still shares");
  distc_future *f;
  OK(distc_remotecall(4, "die", NULL, &f));
  CHECK(distc_wait(f) == DISTC_EPROCEXIT, "worker 4 died");
  distc_future_free(f);
  check_clean("after SIGKILL of a worker");
  OK(distc_remotecall_wait(2, "mark_part", a));
  distc_value_free(a);
  distc_value_free(s);
  CHECK(maps_on(2) == 0, "worker 2 unmapped it");
}

/* SIGKILL of a participant while the array is being created: the master
 * gets the error, and no name is in /dev/shm at any time. */
static pid_t victim;

static void *kill_when_segment_appears(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000 && !mapped_here(NULL, 0); i++)
    usleep(10000);
  int seen = mapped_here(NULL, 0) + 10 * count_segments(NULL, 0);
  kill(victim, SIGKILL);
  return (void *)(intptr_t)seen;
}

static void case_kill_creating(void) {
  distc_value *v = NULL;
  OK(distc_remotecall_fetch(3, "ospid", NULL, &v));
  victim = (pid_t)distc_value_int(v);
  distc_value_free(v);
  /* Worker 3 is busy, so the creation waits for it with the name linked. */
  distc_value *ms = distc_listv(1, distc_int(30000));
  OK(distc_remote_do(3, "sleep_ms", ms));
  distc_value_free(ms);
  pthread_t t;
  pthread_create(&t, NULL, kill_when_segment_appears, NULL);
  distc_value *s = NULL;
  int rc = distc_shared_new(DISTC_F64, 1, (size_t[]){1000}, NULL, &s);
  void *seen;
  pthread_join(t, &seen);
  CHECK((intptr_t)seen == 1, "the array was mapped, with no name in /dev/shm, "
        "while waiting (%d)", (int)(intptr_t)seen);
  CHECK(rc == DISTC_EPROCEXIT && s == NULL, "creation failed: %d %s", rc,
        distc_errmsg());
  check_clean("after SIGKILL of a worker during creation");
  CHECK(maps_on(2) == 0, "worker 2 let go of it");
  /* The survivor still shares new arrays. */
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){10}, NULL, &s));
  int ids[4];
  CHECK(distc_shared_procs(s, ids, 4) == 1 && ids[0] == 2, "procs now {2}");
  distc_value_free(s);
}

/* Without workers the master shares with itself. */
static void case_standalone(void) {
  distc_value *s = NULL;
  OK(distc_shared_new(DISTC_F64, 1, (size_t[]){10}, NULL, &s));
  int ids[2];
  CHECK(distc_shared_procs(s, ids, 2) == 1 && ids[0] == 1, "procs {1}");
  size_t lo, hi;
  OK(distc_shared_localindices(s, &lo, &hi));
  CHECK(lo == 0 && hi == 10, "the master's part is everything");
  distc_value_free(s);
  check_clean("standalone");
}

/* For test_shared_crash.sh: the master is killed (by the script) while
 * creating an array (worker 2 busy), or after. */
static void *report_segment(void *arg) {
  (void)arg;
  char name[256] = "";
  for (int i = 0; i < 1000 && !mapped_here(name, sizeof name); i++)
    usleep(10000);
  printf("segment %s\nready\n", name);
  fflush(stdout);
  return NULL;
}

static void case_crash_master(bool creating) {
  printf("master-pid %d\n", (int)getpid());
  int ids[8], n = distc_workers(ids, 8);
  for (int i = 0; i < n; i++) {
    distc_value *v = NULL;
    if (distc_remotecall_fetch(ids[i], "ospid", NULL, &v) == 0)
      printf("worker-pid %lld\n", (long long)distc_value_int(v));
    distc_value_free(v);
  }
  fflush(stdout);
  distc_value *s = NULL;
  if (creating) {
    distc_value *ms = distc_listv(1, distc_int(60000));
    distc_remote_do(2, "sleep_ms", ms);
    distc_value_free(ms);
    pthread_t t;
    pthread_create(&t, NULL, report_segment, NULL);
    distc_shared_new(DISTC_F64, 1, (size_t[]){1 << 20}, NULL, &s);
    printf("created?!\n");
  } else {
    distc_shared_new(DISTC_F64, 1, (size_t[]){1 << 20}, NULL, &s);
    printf("segments %d\nready\n", count_segments(NULL, 0));
  }
  fflush(stdout);
  sleep(600);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "basic"))
    case_basic();
  else if (!strcmp(name, "init"))
    case_init();
  else if (!strcmp(name, "pids"))
    case_pids();
  else if (!strcmp(name, "worker-creates"))
    case_worker_creates();
  else if (!strcmp(name, "cross-host"))
    case_cross_host();
  else if (!strcmp(name, "file"))
    case_file();
  else if (!strcmp(name, "many"))
    case_many();
  else if (!strcmp(name, "pmap"))
    case_pmap();
  else if (!strcmp(name, "lose-workers"))
    case_lose_workers();
  else if (!strcmp(name, "kill-creating"))
    case_kill_creating();
  else if (!strcmp(name, "standalone"))
    case_standalone();
  else if (!strcmp(name, "crash-master-creating"))
    case_crash_master(true);
  else if (!strcmp(name, "crash-master-after"))
    case_crash_master(false);
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  OK(distc_finalize());
  check_clean("after finalize");
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

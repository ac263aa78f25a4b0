/* test_harden.c — what a misbehaving worker or a long run must not do to
 * the master: grow it without bound, or get past the frame limit.  One
 * binary, one case per run (argv[1]), started by meson under distc-launch;
 * the departure cases are driven by test_departures.sh.  Prints `N passed,
 * M failed`. */
#include <distc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"

#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())

/* ASan's allocator keeps freed memory in quarantine (256 MB by default):
 * RSS says nothing there, so the memory bounds are checked in the plain
 * build only, and the soak runs a tenth of its calls (still enough for the
 * sanitizer to see every path). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
#define MEMORY_BOUND(cond) true
#define SOAK_CALLS 20000
#else
#define MEMORY_BOUND(cond) (cond)
#define SOAK_CALLS 200000
#endif

/* A field of /proc/self/status in KiB (VmRSS, VmHWM). */
static long status_kib(const char *field) {
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  FILE *f = fopen("/proc/self/status", "r");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':')
      v = atol(line + n + 1);
  if (f)
    fclose(f);
  return v;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- functions the workers run ---- */

DISTC_FUNCTION(rss_kib) {
  (void)args;
  (void)ctx;
  return distc_int(status_kib("VmRSS"));
}

DISTC_FUNCTION(noop) {
  (void)args;
  (void)ctx;
  return distc_nil();
}

DISTC_FUNCTION(echo) {
  (void)ctx;
  return distc_value_ref(distc_list_at(args, 0));
}

/* [mb]: writes mb MiB to stdout with no newline at all. */
DISTC_FUNCTION(spew) {
  (void)ctx;
  int64_t mb = distc_value_int(distc_list_at(args, 0));
  static char buf[1 << 16];
  memset(buf, 'x', sizeof buf);
  fflush(stdout);
  for (int64_t i = 0; i < mb * 16; i++)
    for (size_t off = 0; off < sizeof buf;) {
      ssize_t w = write(1, buf + off, sizeof buf - off);
      if (w <= 0)
        return distc_fail(ctx, "write failed");
      off += (size_t)w;
    }
  return distc_nil();
}

/* [n]: a progress bar of n steps drawn with '\r', then a newline. */
DISTC_FUNCTION(progress) {
  (void)ctx;
  int64_t n = distc_value_int(distc_list_at(args, 0));
  for (int64_t i = 1; i <= n; i++)
    printf("step %lld\r", (long long)i);
  printf("\n");
  fflush(stdout);
  return distc_nil();
}

/* [s]: prints s as it is. */
DISTC_FUNCTION(put) {
  (void)ctx;
  fputs(distc_value_str(distc_list_at(args, 0), NULL), stdout);
  fflush(stdout);
  return distc_nil();
}

/* [bytes, as_bytes]: an array of that many bytes, or a bytes value. */
DISTC_FUNCTION(big) {
  (void)ctx;
  size_t n = (size_t)distc_value_int(distc_list_at(args, 0));
  if (distc_value_bool(distc_list_at(args, 1))) {
    char *p = calloc(1, n);
    distc_value *v = p ? distc_bytes(p, n) : NULL;
    free(p);
    return v ? v : distc_fail(ctx, "out of memory");
  }
  return distc_array(DISTC_U8, 1, (size_t[]){n});
}

/* [how]: leaves in the middle of the call. */
DISTC_FUNCTION(leave) {
  (void)ctx;
  const char *how = distc_value_str(distc_list_at(args, 0), NULL);
  fflush(stdout);
  if (!strcmp(how, "segv")) {
    /* A real fault (not NULL, which UBSan would catch first). */
    volatile uintptr_t bad = 64;
    *(volatile int *)bad = 1;
  }
  else if (!strcmp(how, "abort"))
    abort();
  else if (!strcmp(how, "exit3"))
    exit(3);
  else if (!strcmp(how, "kill"))
    raise(SIGKILL);
  return distc_nil();
}

/* How many of this process's descriptors lead to path. */
static int fds_to(const char *path) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, target, sizeof target - 1);
    if (k <= 0)
      continue;
    target[k] = '\0';
    n += strcmp(target, path) == 0;
  }
  return n;
}

DISTC_FUNCTION(count_fds_to) {
  (void)ctx;
  return distc_int(fds_to(distc_value_str(distc_list_at(args, 0), NULL)));
}

/* ---- cases ---- */

/* Runs fn(args) on worker 2 with the master's stdout sent to path; returns
 * the call's status. */
static int call_to_file(const char *fn, distc_value *args, const char *path) {
  fflush(stdout);
  int saved = dup(1);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fd, 1);
  close(fd);
  int rc = distc_remotecall_wait(2, fn, args);
  /* One more call: its answer comes after every byte of output before it. */
  distc_remotecall_wait(2, "noop", NULL);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  distc_value_free(args);
  return rc;
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  char *b = NULL;
  *n = 0;
  if (f) {
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = calloc(1, (size_t)len + 1);
    if (b)
      *n = fread(b, 1, (size_t)len, f);
    fclose(f);
  }
  return b;
}

/* A worker writing 100 MB without a newline, or a long progress bar, costs
 * the master one line buffer, not the output's size. */
static void case_long_line(void) {
  long hwm0 = status_kib("VmHWM"), rss0 = status_kib("VmRSS");
  double t0 = now_s();
  OK(call_to_file("spew", distc_listv(1, distc_int(100)), getenv("SPEW_TO") ? getenv("SPEW_TO") : "/dev/null"));
  OK(call_to_file("progress", distc_listv(1, distc_int(200000)), "/dev/null"));
  long hwm1 = status_kib("VmHWM"), rss1 = status_kib("VmRSS");
  printf("100 MB without newline + 200k-step progress bar: %.1f s, master "
         "RSS %ld -> %ld KiB, peak %ld -> %ld KiB\n", now_s() - t0, rss0, rss1,
         hwm0, hwm1);
  CHECK(MEMORY_BOUND(hwm1 - hwm0 < 2048),
        "the master's peak RSS grew by %ld KiB", hwm1 - hwm0);

  /* What is printed: long lines in tagged pieces, '\r' kept. */
  char path[] = "/tmp/distc-test-harden-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  OK(call_to_file("put", distc_listv(1, distc_string("ab\rcd\r\nef\n")),
                  path));
  size_t n;
  char *out = slurp(path, &n);
  unlink(path);
  const char *want = "      From worker 2:\tab\r      From worker 2:\tcd\r\n"
                     "      From worker 2:\tef\n";
  CHECK(out && n == strlen(want) && !memcmp(out, want, n),
        "'\\r' ends a piece and \"\\r\\n\" one line: got %zu bytes '%s'", n,
        out ? out : "");
  free(out);

  fd = mkstemp(strcpy(path, "/tmp/distc-test-harden-XXXXXX"));
  close(fd);
  char *s = malloc(10002);
  memset(s, 'y', 10000);
  strcpy(s + 10000, "\n");
  OK(call_to_file("put", distc_listv(1, distc_string(s)), path));
  free(s);
  out = slurp(path, &n);
  unlink(path);
  int lines = 0, ys = 0;
  for (size_t i = 0; out && i < n; i++) {
    lines += out[i] == '\n';
    ys += out[i] == 'y';
  }
  CHECK(ys == 10000 && lines == 3 && !strncmp(out, "      From worker 2:\t", 21),
        "a 10000-byte line comes in 3 tagged pieces (%d lines, %d bytes)",
        lines, ys);
  free(out);
}

/* Run with DISTC_MAX_FRAME=4194304: whatever the path, a value over the
 * limit fails with DISTC_ETOOBIG before it is encoded or copied — the
 * master's peak memory shows whether it was. */
static void case_frame_limit(void) {
  const size_t limit = 4 << 20;
  /* An argument over the limit: refused before it is encoded. */
  char *p = calloc(1, limit + 1);
  distc_value *arg = distc_listv(1, distc_bytes(p, limit + 1));
  free(p);
  long hwm0 = status_kib("VmHWM");
  double t0 = now_s();
  distc_future *f = NULL;
  int rc = distc_remotecall(2, "noop", arg, &f);
  distc_future_free(f);
  long grew = status_kib("VmHWM") - hwm0;
  CHECK(rc == DISTC_ETOOBIG && strstr(distc_errmsg(), "frame limit"),
        "an argument of limit+1 bytes: %d %s", rc, distc_errmsg());
  CHECK(MEMORY_BOUND(grew < 1024),
        "refused before encoding: peak grew by %ld KiB", grew);
  distc_value_free(arg);

  /* Results over the limit, from a same-host worker: the array would be
   * lent (copied out of the worker's memory, no frame at all), the bytes
   * value sent; both are refused, neither reaches the master. */
  for (int as_bytes = 0; as_bytes <= 1; as_bytes++) {
    distc_value *a = distc_listv(2, distc_int(4 * (int64_t)limit),
                                 distc_bool(as_bytes));
    distc_value *v = NULL;
    hwm0 = status_kib("VmHWM");
    double t1 = now_s();
    rc = distc_remotecall_fetch(2, "big", a, &v);
    grew = status_kib("VmHWM") - hwm0;
    CHECK(rc == DISTC_ETOOBIG && strstr(distc_errmsg(), "frame limit") &&
              v == NULL,
          "%s result of 4x the limit: %d %s", as_bytes ? "a bytes" : "an array",
          rc, distc_errmsg());
    CHECK(MEMORY_BOUND(grew < 1024),
          "nothing of it copied: peak grew by %ld KiB", grew);
    CHECK(now_s() - t1 < 5, "refused quickly (%.2f s)", now_s() - t1);
    distc_value_free(a);
  }
  /* Under the limit, the same paths still work. */
  distc_value *a = distc_listv(2, distc_int((int64_t)limit / 2), distc_bool(0));
  distc_value *v = NULL;
  OK(distc_remotecall_fetch(2, "big", a, &v));
  CHECK(v && distc_array_len(v) == limit / 2, "an array of half the limit");
  distc_value_free(v);
  distc_value_free(a);
  printf("frame limit cases: %.2f s\n", now_s() - t0);
}

/* A worker leaving inside a call (argv[2]: segv, abort, exit3, kill): the
 * call's error says how; the launcher's stderr too (test_departures.sh). */
static void case_depart(const char *how, const char *want) {
  distc_value *a = distc_listv(1, distc_string(how));
  int rc = distc_remotecall_wait(2, "leave", a);
  distc_value_free(a);
  CHECK(rc == DISTC_EPROCEXIT && strstr(distc_errmsg(), "On worker 2:") &&
            strstr(distc_errmsg(), want),
        "%s: %d '%s' (wanted '%s')", how, rc, distc_errmsg(), want);
  printf("errmsg: %s\n", distc_errmsg());
  /* The others carry on. */
  distc_value *v = NULL;
  OK(distc_remotecall_fetch(3, "noop", NULL, &v));
  distc_value_free(v);
  /* Give the launcher its moment to report before the run ends. */
  usleep(300000);
}

/* argv[2]: a file the launcher was started with open (test_harden.sh): no
 * descriptor of it reaches the master or a worker. */
static void case_fds(const char *path) {
  CHECK(fds_to(path) == 0, "the master has %d descriptors of %s", fds_to(path),
        path);
  int ids[8], n = distc_workers(ids, 8);
  for (int i = 0; i < n; i++) {
    distc_value *a = distc_listv(1, distc_string(path)), *v = NULL;
    OK(distc_remotecall_fetch(ids[i], "count_fds_to", a, &v));
    CHECK(v && distc_value_int(v) == 0, "worker %d has %lld descriptors of %s",
          ids[i], v ? (long long)distc_value_int(v) : -1LL, path);
    distc_value_free(v);
    distc_value_free(a);
  }
}

/* 200k calls and 20k futures freed before their answer came: nothing
 * grows, on the master or the worker. */
static void case_soak(void) {
  distc_value *v = NULL;
  distc_value *arg = distc_listv(1, distc_string("some payload"));
  /* Warm up: the allocator's pools, the connection's buffers. */
  for (int i = 0; i < SOAK_CALLS / 10; i++) {
    distc_value *r = NULL;
    if (distc_remotecall_fetch(2, "echo", arg, &r) < 0)
      break;
    distc_value_free(r);
    if (i % 10 == 0) {
      distc_future *f = NULL;
      if (distc_remotecall(2, "noop", NULL, &f) == 0)
        distc_future_free(f);
    }
  }
  OK(distc_remotecall_fetch(2, "rss_kib", NULL, &v));
  long w0 = distc_value_int(v), m0 = status_kib("VmRSS");
  distc_value_free(v);
  double t0 = now_s();
  int bad = 0;
  for (int i = 0; i < SOAK_CALLS && bad == 0; i++) {
    distc_value *r = NULL;
    bad += distc_remotecall_fetch(2, "echo", arg, &r) < 0;
    distc_value_free(r);
    if (i % 10 == 0) {
      distc_future *f = NULL;
      bad += distc_remotecall(2, "noop", NULL, &f) < 0;
      distc_future_free(f);
    }
  }
  CHECK(bad == 0, "every call succeeded: %s", distc_errmsg());
  double dt = now_s() - t0;
  OK(distc_remotecall_fetch(2, "rss_kib", NULL, &v));
  long w1 = v ? distc_value_int(v) : -1, m1 = status_kib("VmRSS");
  distc_value_free(v);
  distc_value_free(arg);
  printf("soak: %d calls + %d unfetched futures in %.1f s; RSS master "
         "%ld -> %ld KiB, worker %ld -> %ld KiB\n", SOAK_CALLS, SOAK_CALLS / 10,
         dt, m0, m1, w0, w1);
  CHECK(MEMORY_BOUND(m1 - m0 < 1024), "the master's RSS grew by %ld KiB",
        m1 - m0);
  CHECK(MEMORY_BOUND(w1 - w0 < 1024), "the worker's RSS grew by %ld KiB",
        w1 - w0);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "long-line"))
    case_long_line();
  else if (!strcmp(name, "frame-limit"))
    case_frame_limit();
  else if (!strcmp(name, "depart") && argc > 3)
    case_depart(argv[2], argv[3]);
  else if (!strcmp(name, "fds") && argc > 2)
    case_fds(argv[2]);
  else if (!strcmp(name, "soak"))
    case_soak();
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  OK(distc_finalize());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

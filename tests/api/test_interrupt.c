/* test_interrupt.c — distc_interrupt: a worker in a loop that polls the
 * flag, one sleeping in a system call, one blocked in a channel take, an
 * idle one, an item of pmap; and (case "ctrlc", driven by
 * test_interrupt.sh) the launcher's first Ctrl-C.  One case per run
 * (argv[1]) under distc-launch -p 2.  Every wait is bounded.  Prints
 * `N passed, M failed`. */
#include <distc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"

#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())
/* A function that was never interrupted gives up after this long, so a
 * broken interrupt fails the test instead of hanging it. */
#define GIVE_UP_S 20.0

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

DISTC_FUNCTION(whoami) {
  (void)args;
  (void)ctx;
  return distc_int(distc_myid());
}

static volatile unsigned long sink; /* the busy loop's work, kept */

/* A pure computation that polls the flag; returns the seconds it ran (or
 * fails when it gave up, which the caller would see as DISTC_EREMOTE). */
DISTC_FUNCTION(spin) {
  (void)args;
  double t0 = now_s();
  while (!distc_interrupted()) {
    for (int i = 0; i < 100000; i++)
      sink += (unsigned long)i;
    if (now_s() - t0 > GIVE_UP_S)
      return distc_fail(ctx, "never interrupted");
  }
  return distc_double(now_s() - t0);
}

/* Spins for [seconds] unless interrupted: true when it was. */
DISTC_FUNCTION(spin_for) {
  (void)ctx;
  double t0 = now_s(), s = distc_value_double(distc_list_at(args, 0));
  while (now_s() - t0 < s)
    if (distc_interrupted())
      return distc_bool(true);
  return distc_bool(false);
}

/* Blocked in the kernel: the interrupt's signal ends the sleep early. */
DISTC_FUNCTION(sleepy) {
  (void)args;
  double t0 = now_s();
  unsigned left = sleep((unsigned)GIVE_UP_S);
  if (left == 0)
    return distc_fail(ctx, "slept %.1f s: the sleep was not interrupted",
                      now_s() - t0);
  return distc_bool(distc_interrupted());
}

DISTC_FUNCTION(take_from) {
  (void)ctx;
  distc_value *v = NULL;
  int rc = distc_channel_take(distc_list_at(args, 0), &v);
  if (rc < 0)
    return distc_fail(ctx, "take: %s", distc_errmsg());
  return v;
}

/* pmap item: item 3 spins until interrupted after writing its worker's id
 * to the file named by the argument; the others return at once. */
DISTC_FUNCTION(item) {
  int64_t i = distc_value_int(distc_list_at(args, 0));
  if (i != 3)
    return distc_int(i * 10);
  const char *path = distc_value_str(distc_list_at(args, 1), NULL);
  FILE *f = fopen(path, "w");
  if (f) {
    fprintf(f, "%d\n", distc_myid());
    fclose(f);
  }
  double t0 = now_s();
  while (!distc_interrupted())
    if (now_s() - t0 > GIVE_UP_S)
      return distc_fail(ctx, "never interrupted");
  return distc_int(-1);
}

/* Starts fn on worker id, waits until it has surely started, interrupts
 * it and checks the caller's error; returns how long the fetch took. */
static double interrupt_one(int id, const char *fn, const char *what) {
  distc_future *f = NULL;
  int rc = distc_remotecall(id, fn, NULL, &f);
  OK(rc);
  if (rc < 0)
    return -1;
  usleep(300000);
  CHECK(!distc_isready(f), "%s: still running before the interrupt", what);
  double t0 = now_s();
  OK(distc_interrupt(&id, 1));
  rc = distc_fetch(f, NULL);
  double took = now_s() - t0;
  char want[64];
  snprintf(want, sizeof want, "On worker %d: interrupted", id);
  CHECK(rc == DISTC_EINTERRUPTED, "%s: rc=%d (%s) %s", what, rc,
        distc_strerror(rc), distc_errmsg());
  CHECK(strstr(distc_errmsg(), want) != NULL, "%s: message '%s' names the "
        "worker ('%s')", what, distc_errmsg(), want);
  CHECK(took < 5.0, "%s: the call ended %.2f s after the interrupt", what,
        took);
  distc_future_free(f);
  return took;
}

/* The worker takes the next call as usual, and it is not interrupted. */
static void usable(int id, const char *what) {
  distc_value *v = NULL;
  int rc = distc_remotecall_fetch(id, "whoami", NULL, &v);
  CHECK(rc == 0 && distc_value_int(v) == id, "%s: worker %d answers the "
        "next call: rc=%d %s", what, id, rc, distc_errmsg());
  distc_value_free(v);
  distc_value *a = distc_listv(1, distc_double(0.2));
  rc = distc_remotecall_fetch(id, "spin_for", a, &v);
  CHECK(rc == 0 && !distc_value_bool(v), "%s: the next call on worker %d is "
        "not interrupted: rc=%d %s", what, id, rc, distc_errmsg());
  distc_value_free(v);
  distc_value_free(a);
}

static void case_poll(void) {
  int w[2];
  distc_workers(w, 2);
  /* The other worker's call runs on, untouched. */
  distc_value *a = distc_listv(1, distc_double(1.0)), *v = NULL;
  distc_future *other = NULL;
  OK(distc_remotecall(w[1], "spin_for", a, &other));
  double took = interrupt_one(w[0], "spin", "polling loop");
  printf("polling loop: the caller got the error %.1f ms after the "
         "interrupt\n", took * 1e3);
  int rc = distc_fetch(other, &v);
  CHECK(rc == 0 && !distc_value_bool(v), "worker %d not interrupted: rc=%d "
        "%s", w[1], rc, distc_errmsg());
  distc_value_free(v);
  distc_value_free(a);
  distc_future_free(other);
  usable(w[0], "after a polling loop");
  /* Twice in a row on the same worker. */
  interrupt_one(w[0], "spin", "polling loop, again");
  usable(w[0], "after the second interrupt");
}

static void case_sleep(void) {
  interrupt_one(2, "sleepy", "sleep(20)");
  usable(2, "after a sleep");
}

static void case_take(void) {
  distc_value *ch = NULL;
  OK(distc_channel_new(DISTC_MASTER, 4, &ch));
  distc_value *a = distc_listv(1, distc_value_ref(ch));
  distc_future *f = NULL;
  OK(distc_remotecall(2, "take_from", a, &f));
  usleep(300000);
  CHECK(!distc_isready(f), "take: blocked before the interrupt");
  int id = 2;
  double t0 = now_s();
  OK(distc_interrupt(&id, 1));
  int rc = distc_fetch(f, NULL);
  double took = now_s() - t0;
  CHECK(rc == DISTC_EINTERRUPTED, "take: rc=%d %s", rc, distc_errmsg());
  CHECK(strstr(distc_errmsg(), "On worker 2: interrupted") != NULL,
        "take: message '%s' names worker 2", distc_errmsg());
  CHECK(took < 5.0, "take: unwound %.2f s after the interrupt", took);
  printf("channel take: unwound %.1f ms after the interrupt\n", took * 1e3);
  distc_future_free(f);
  usable(2, "after a take");
  OK(distc_channel_close(ch));
  distc_value_free(a);
  distc_channel_free(ch);
}

static void case_idle(void) {
  int id = 2;
  OK(distc_interrupt(&id, 1));
  OK(distc_interrupt(NULL, 0));
  usleep(200000);
  usable(2, "after an interrupt while idle");
  usable(3, "after an interrupt of every worker while idle");
  int bad[] = {2, 99};
  int rc = distc_interrupt(bad, 2);
  CHECK(rc == DISTC_ENOENT && strstr(distc_errmsg(), "99"), "unknown id: "
        "rc=%d %s", rc, distc_errmsg());
  int master = DISTC_MASTER;
  rc = distc_interrupt(&master, 1);
  CHECK(rc == DISTC_ENOENT, "the master's id: rc=%d %s", rc, distc_errmsg());
  rc = distc_interrupt(NULL, 1);
  CHECK(rc == DISTC_EINVAL, "NULL ids with n 1: rc=%d %s", rc,
        distc_errmsg());
  CHECK(!distc_interrupted(), "the master's flag is never set");
}

typedef struct {
  const char *path;
  int id;
} pmap_watch;

/* Interrupts the worker that took item 3, once it says which it is. */
static void *interrupt_item(void *arg) {
  pmap_watch *pw = arg;
  double t0 = now_s();
  while (now_s() - t0 < GIVE_UP_S) {
    FILE *f = fopen(pw->path, "r");
    if (f && fscanf(f, "%d", &pw->id) == 1) {
      fclose(f);
      usleep(100000);
      distc_interrupt(&pw->id, 1);
      return NULL;
    }
    if (f)
      fclose(f);
    usleep(20000);
  }
  return NULL;
}

static void case_pmap(void) {
  char path[] = "/tmp/distc-interrupt-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    CHECK(0, "mkstemp");
    return;
  }
  close(fd);
  unlink(path);
  distc_value *in = distc_list(0);
  for (int i = 0; i < 8; i++)
    distc_list_push(in, distc_int(i));
  distc_value *arg = distc_string(path), *out = NULL;
  distc_pmap_opts o = {.batch_size = 1, .arg = arg, .retries = 2};
  pmap_watch pw = {path, 0};
  pthread_t t;
  pthread_create(&t, NULL, interrupt_item, &pw);
  int rc = distc_pmap("item", in, &o, &out);
  pthread_join(t, NULL);
  char want[64];
  snprintf(want, sizeof want, "On worker %d: interrupted", pw.id);
  CHECK(rc == DISTC_EINTERRUPTED, "pmap: rc=%d %s", rc, distc_errmsg());
  CHECK(strstr(distc_errmsg(), "item 3") && strstr(distc_errmsg(), want),
        "pmap: message '%s' names item 3 and '%s' (not retried)",
        distc_errmsg(), want);
  distc_value_free(out);
  unlink(path);
  /* With an error value the map completes, the item replaced. */
  distc_value *minus = distc_int(-99);
  o.error_value = minus;
  o.retries = 0;
  pw.id = 0;
  pthread_create(&t, NULL, interrupt_item, &pw);
  rc = distc_pmap("item", in, &o, &out);
  pthread_join(t, NULL);
  OK(rc);
  CHECK(rc == 0 && distc_value_int(distc_list_at(out, 3)) == -99 &&
            distc_value_int(distc_list_at(out, 4)) == 40,
        "pmap with an error value: item 3 replaced, the rest computed");
  distc_value_free(out);
  distc_value_free(minus);
  unlink(path);
  distc_value_free(arg);
  distc_value_free(in);
  usable(pw.id ? pw.id : 2, "after pmap");
}

/* Driven by test_interrupt.sh: a long call that only the launcher's first
 * SIGINT ends; then the program goes on until the second one. */
static void case_ctrlc(void) {
  distc_future *f = NULL;
  OK(distc_remotecall(2, "spin", NULL, &f));
  printf("spinning\n");
  fflush(stdout);
  int rc = distc_fetch(f, NULL);
  printf("fetch: %s: %s\n", distc_strerror(rc), distc_errmsg());
  distc_future_free(f);
  distc_value *v = NULL;
  rc = distc_remotecall_fetch(2, "whoami", NULL, &v);
  printf("continued: %s %lld\n", rc == 0 ? "ok" : distc_errmsg(),
         rc == 0 ? (long long)distc_value_int(v) : -1LL);
  distc_value_free(v);
  fflush(stdout);
  for (int i = 0; i < 300; i++) /* until the second SIGINT ends us */
    usleep(100000);
  printf("never interrupted twice\n");
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
  if (!strcmp(name, "poll"))
    case_poll();
  else if (!strcmp(name, "sleep"))
    case_sleep();
  else if (!strcmp(name, "take"))
    case_take();
  else if (!strcmp(name, "idle"))
    case_idle();
  else if (!strcmp(name, "pmap"))
    case_pmap();
  else if (!strcmp(name, "ctrlc"))
    case_ctrlc();
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  OK(distc_finalize());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

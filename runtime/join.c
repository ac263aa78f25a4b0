/* join.c — elastic membership: workers the master did not start join
 * through a door (a listening socket plus a key file, join_door.c), and the
 * master's program sees the cluster grow and shrink.
 *
 * Master side: the door opened by distc-launch --listen (inherited) or by
 * distc_listen, accepted by the I/O thread with the same handshake as every
 * worker (master.c gives a joiner the next id); distc_wait_workers; the
 * members callback, run on a service thread in the order of the events so
 * that it may make calls; and a generation count pmap and pools read to
 * take in newcomers.
 *
 * Worker side: DISTC_JOIN and DISTC_JOIN_KEY in the environment turn the
 * program into a worker that asks for an id instead of bringing a launch
 * index. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* The one door of this master.  Handles belong to the I/O thread: the door
 * is opened on any thread and handed over through `pending`. */
static struct {
  pthread_mutex_t mu;
  int fd;        /* -1: no door */
  bool pending;  /* the I/O thread has yet to poll fd */
  bool polling;
  uv_poll_t poll;
  char addr[256];
  char key[PATH_MAX];
  bool own_key; /* we wrote the key file: removed at finalize */
} door = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static atomic_uint members_gen;

/* ---- the members callback ---- */

typedef struct member_event {
  int id;
  bool joined;
} member_event;

static struct {
  pthread_mutex_t mu;      /* fn, arg and the queue */
  pthread_mutex_t deliver; /* one delivery at a time, in queue order */
  distc_members_fn fn;
  void *arg;
  member_event *q;
  size_t n, cap;
} watch = {.mu = PTHREAD_MUTEX_INITIALIZER,
           .deliver = PTHREAD_MUTEX_INITIALIZER};

/* A service job: hands the queued events to the callback.  Several jobs
 * may run at once on several service threads; the delivery lock and the
 * one queue keep the events in order all the same. */
static void deliver(void *unused) {
  (void)unused;
  pthread_mutex_lock(&watch.deliver);
  for (;;) {
    pthread_mutex_lock(&watch.mu);
    if (watch.n == 0 || watch.fn == NULL) {
      watch.n = 0;
      pthread_mutex_unlock(&watch.mu);
      break;
    }
    member_event e = watch.q[0];
    memmove(watch.q, watch.q + 1, --watch.n * sizeof *watch.q);
    distc_members_fn fn = watch.fn;
    void *arg = watch.arg;
    pthread_mutex_unlock(&watch.mu);
    fn(e.id, e.joined, arg);
  }
  pthread_mutex_unlock(&watch.deliver);
}

void distc__members_note(int id, bool joined) {
  if (joined)
    atomic_fetch_add(&members_gen, 1);
  pthread_mutex_lock(&watch.mu);
  if (watch.fn == NULL) {
    pthread_mutex_unlock(&watch.mu);
    return;
  }
  if (watch.n == watch.cap) {
    size_t cap = watch.cap ? watch.cap * 2 : 16;
    member_event *q = realloc(watch.q, cap * sizeof *q);
    if (q == NULL) {
      pthread_mutex_unlock(&watch.mu);
      distc__log(DISTC__LOG_ERROR, "out of memory: the members callback "
                                   "misses worker %d %s", id,
                 joined ? "joining" : "leaving");
      return;
    }
    watch.q = q;
    watch.cap = cap;
  }
  watch.q[watch.n++] = (member_event){id, joined};
  pthread_mutex_unlock(&watch.mu);
  if (distc__service_post(deliver, NULL) < 0)
    distc__log(DISTC__LOG_ERROR, "out of memory: the members callback is "
                                 "late for worker %d", id);
}

unsigned distc__members_gen(void) { return atomic_load(&members_gen); }

int distc_on_members(distc_members_fn fn, void *arg) {
  distc__cluster *C = &distc__C;
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "only the master sees workers "
                                           "join and leave");
  pthread_mutex_lock(&watch.mu);
  watch.fn = fn;
  watch.arg = arg;
  pthread_mutex_unlock(&watch.mu);
  return 0;
}

int distc_wait_workers(int n, double timeout_s) {
  distc__cluster *C = &distc__C;
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "only the master can wait for "
                                           "workers");
  if (n < 0 || !(timeout_s >= 0))
    return distc__seterr(DISTC_EINVAL, "distc_wait_workers wants n >= 0 and "
                         "a timeout >= 0 seconds, got %d and %g", n,
                         timeout_s);
  double deadline = distc__now() + timeout_s * 1e9;
  int rc;
  pthread_mutex_lock(&C->lock);
  for (;;) {
    if (C->nids >= n) {
      rc = C->nids;
      break;
    }
    double now = distc__now();
    if (now >= deadline) {
      pthread_mutex_lock(&door.mu);
      char where[300];
      snprintf(where, sizeof where, "%s", door.fd >= 0 ? door.addr : "");
      pthread_mutex_unlock(&door.mu);
      rc = distc__seterr(DISTC_ETIMEDOUT,
                         "only %d of %d workers present after %g s; %s%s",
                         C->nids, n, timeout_s,
                         where[0] ? "start more with DISTC_JOIN=" :
                                    "open a door with distc_listen() or "
                                    "distc-launch --listen for workers to "
                                    "join",
                         where);
      break;
    }
    /* Woken by every join; the slice bounds a missed wake-up. */
    double until = now + 100e6 < deadline ? now + 100e6 : deadline;
    distc__cond_wait_ns(&C->changed, &C->lock, until - now);
  }
  pthread_mutex_unlock(&C->lock);
  return rc;
}

/* ---- the door, master side ---- */

/* Hands fd to the I/O thread (under door.mu). */
static void door_open(int fd, const char *addr) {
  distc__set_nonblock(fd, true);
  door.fd = fd;
  snprintf(door.addr, sizeof door.addr, "%s", addr);
  door.pending = true;
}

void distc__join_on_wake(uv_loop_t *loop) {
  pthread_mutex_lock(&door.mu);
  if (door.pending) {
    door.pending = false;
    if (uv_poll_init(loop, &door.poll, door.fd) == 0) {
      /* No data: master.c's shutdown walk closes it as a plain handle. */
      door.poll.data = NULL;
      uv_poll_start(&door.poll, UV_READABLE, distc__master_on_listen);
      door.polling = true;
    } else {
      distc__log(DISTC__LOG_ERROR, "cannot watch the join socket; workers "
                                   "cannot join");
    }
  }
  pthread_mutex_unlock(&door.mu);
}

uv_poll_t *distc__join_poll(void) { return door.polling ? &door.poll : NULL; }

int distc__join_adopt(void) {
  const char *s = getenv(DISTC_ENV_JOIN_FD);
  const char *addr = getenv(DISTC_ENV_JOIN_ADDR);
  const char *key = getenv(DISTC_ENV_JOIN_KEY_FILE);
  if (s == NULL || addr == NULL)
    return 0;
  char *end;
  long fd = strtol(s, &end, 10);
  if (*end != '\0' || fd < 0)
    return distc__seterr(DISTC_EINVAL, "%s=%s is not a descriptor",
                         DISTC_ENV_JOIN_FD, s);
  fcntl((int)fd, F_SETFD, FD_CLOEXEC);
  pthread_mutex_lock(&door.mu);
  door_open((int)fd, addr);
  /* The launcher wrote the key and removes it. */
  snprintf(door.key, sizeof door.key, "%s", key ? key : "");
  pthread_mutex_unlock(&door.mu);
  return 0;
}

int distc_listen(const char *listen, const char *key_file,
                 distc_join_info *info) {
  distc__cluster *C = &distc__C;
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "only the master takes in "
                                           "joining workers");
  int rc = 0, fd = -1;
  char addr[256], key[PATH_MAX];
  pthread_mutex_lock(&door.mu);
  if (door.fd >= 0) {
    /* One door per master: asking again (or after distc-launch --listen)
     * just says where it is, unless another address is wanted. */
    if (listen != NULL || key_file != NULL)
      rc = distc__seterr(DISTC_ESTATE, "workers already join at %s (key "
                         "file %s); call distc_listen(NULL, NULL, &info) "
                         "to learn it", door.addr, door.key);
    goto fill;
  }
  if ((rc = distc__join_listen(listen, &fd, addr, sizeof addr)) < 0)
    goto unlock;
  if (key_file != NULL) {
    if ((size_t)snprintf(key, sizeof key, "%s", key_file) >= sizeof key) {
      rc = distc__seterr(DISTC_EINVAL, "join key path too long");
      goto close_fd;
    }
  } else if ((rc = distc__join_key_default(key, sizeof key)) < 0) {
    goto close_fd;
  }
  if ((rc = distc__join_key_write(key, C->secret)) < 0)
    goto close_fd;
  door_open(fd, addr);
  snprintf(door.key, sizeof door.key, "%s", key);
  door.own_key = true;
  pthread_mutex_unlock(&door.mu);
  uv_async_send(&C->wake);
  distc__log(DISTC__LOG_INFO, "workers join at %s with key file %s", addr,
             key);
  pthread_mutex_lock(&door.mu);
fill:
  if (info != NULL && rc == 0) {
    snprintf(info->addr, sizeof info->addr, "%s", door.addr);
    snprintf(info->key_file, sizeof info->key_file, "%s", door.key);
  }
  pthread_mutex_unlock(&door.mu);
  return rc;
close_fd:
  close(fd);
unlock:
  pthread_mutex_unlock(&door.mu);
  return rc;
}

void distc__join_stop(void) {
  pthread_mutex_lock(&watch.mu);
  watch.fn = NULL;
  pthread_mutex_unlock(&watch.mu);
}

void distc__join_close(void) {
  pthread_mutex_lock(&door.mu);
  /* The I/O thread has ended and closed the poll handle. */
  if (door.fd >= 0)
    close(door.fd);
  door.fd = -1;
  door.pending = door.polling = false;
  if (door.own_key && door.key[0])
    unlink(door.key);
  door.own_key = false;
  door.key[0] = '\0';
  pthread_mutex_unlock(&door.mu);
  pthread_mutex_lock(&watch.mu);
  free(watch.q);
  watch.q = NULL;
  watch.n = watch.cap = 0;
  pthread_mutex_unlock(&watch.mu);
}

/* ---- joining, worker side ---- */

#define join_die(...) distc__log_fatal("joining worker", __VA_ARGS__)

int distc__join_main(void) {
  const char *addr = getenv(DISTC_ENV_JOIN);
  const char *key = getenv(DISTC_ENV_JOIN_KEY);
  if (addr == NULL || addr[0] == '\0')
    join_die("%s is empty; set it to the address the master published",
             DISTC_ENV_JOIN);
  if (key == NULL || key[0] == '\0')
    join_die("%s=%s is set but %s is not: give the path of the master's key "
             "file", DISTC_ENV_JOIN, addr, DISTC_ENV_JOIN_KEY);
  unsigned char secret[DISTC_SECRET_LEN];
  if (distc__join_key_read(key, secret) < 0)
    join_die("%s", distc_errmsg());
  /* From here on this is a worker like a launched one, except that it asks
   * for an id (index -1) instead of bringing one: worker.c reads the
   * secret from a pipe as it always does. */
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    join_die("cannot create a pipe: %s", strerror(errno));
  bool ok = write(p[1], secret, sizeof secret) == (ssize_t)sizeof secret;
  explicit_bzero(secret, sizeof secret);
  close(p[1]);
  if (!ok)
    join_die("cannot pass the key on: %s", strerror(errno));
  char fd[16];
  snprintf(fd, sizeof fd, "%d", p[0]);
  if (setenv(DISTC_ENV_MASTER, addr, 1) != 0 ||
      setenv(DISTC_ENV_SECRET_FD, fd, 1) != 0 ||
      setenv(DISTC_ENV_INDEX, "-1", 1) != 0)
    join_die("out of memory");
  unsetenv(DISTC_ENV_JOIN);
  unsetenv(DISTC_ENV_JOIN_KEY);
  unsetenv(DISTC_ENV_MASTER_LOCAL);
  unsetenv(DISTC_ENV_PARENT);
  return distc__worker_main();
}

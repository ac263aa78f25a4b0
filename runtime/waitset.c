/* waitset.c — one thread waiting for whichever of many futures completes
 * first (pmap's batches, a reduction's chunks).
 *
 * A completed future hands its node to the set through the completion hook,
 * on the thread that completed it.  The owner takes nodes back.  On the
 * master the owner reads the connections of its outstanding calls itself,
 * keeping them out of the I/O thread's epoll set (distc__conn_quiet) from
 * its first wait until it says it has other work (distc__waitset_release):
 * an answer then wakes one thread, not the I/O thread and then the owner.
 * The owner must release them before anything that may block — a send,
 * user code — or a worker blocked writing to it would never be read.
 * A ring link leaves the epoll set only when the owner goes to sleep: while
 * it looks, the writer rings no doorbell, so the I/O thread is not woken
 * anyway, and a batch loop that holds and releases around every send would
 * otherwise pay two epoll_ctl calls per batch.
 *
 * While answers have been coming quickly the owner spins reading them, for
 * an adaptive budget: hard while the machine has a core for it beside the
 * busy workers, else yielding between reads, since on an oversubscribed
 * machine a hard-spinning master takes the core a worker needs to produce
 * the very answer it waits for (and waking a sleeping one costs tens of
 * microseconds).  Past the budget it sleeps in poll() on the connections
 * and on an eventfd that the hook rings for a completion that some other
 * thread read. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"

#define SPIN_MIN_NS 2000.0
#define SPIN_MAX_NS 200000.0
#define POLL_MAX 256

int distc__ncores(void) {
  static atomic_int cached;
  int n = atomic_load(&cached);
  if (n > 0)
    return n;
  cpu_set_t set;
  n = sched_getaffinity(0, sizeof set, &set) == 0
          ? CPU_COUNT(&set)
          : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1)
    n = 1;
  atomic_store(&cached, n);
  return n;
}

bool distc__spare_core(void) {
  static atomic_int fd = -2;
  int f = atomic_load(&fd);
  if (f == -2) {
    int nf = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (!atomic_compare_exchange_strong(&fd, &f, nf) && nf >= 0)
      close(nf); /* another thread opened it first */
    f = atomic_load(&fd);
  }
  char buf[128];
  ssize_t n = f >= 0 ? pread(f, buf, sizeof buf - 1, 0) : -1;
  if (n <= 0)
    return true; /* no /proc: the caller's own count decides */
  buf[n] = '\0';
  /* "0.52 0.58 0.59 3/467 12345": the fourth field is running/total. */
  const char *p = buf;
  for (int field = 0; field < 3 && p; field++)
    if ((p = strchr(p, ' ')))
      p++;
  return !p || atoi(p) <= distc__ncores();
}

/* One eventfd per waiting thread, made on first need and kept: a waitset
 * lives for one reduction, often far shorter than making one costs.  A
 * thread owns one waitset at a time that sleeps, so sharing is safe. */
static pthread_key_t efd_key;
static pthread_once_t efd_once = PTHREAD_ONCE_INIT;

static void efd_close(void *p) { close((int)(intptr_t)p - 1); }
static void efd_key_make(void) { pthread_key_create(&efd_key, efd_close); }

static int thread_efd(void) {
  pthread_once(&efd_once, efd_key_make);
  intptr_t v = (intptr_t)pthread_getspecific(efd_key);
  if (v)
    return (int)v - 1;
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd >= 0)
    pthread_setspecific(efd_key, (void *)(intptr_t)(fd + 1));
  return fd;
}

void distc__waitset_init(distc__waitset *ws) {
  pthread_mutex_init(&ws->mu, NULL);
  pthread_cond_init(&ws->cond, NULL);
  ws->sleeping = false;
  atomic_init(&ws->ndone, 0);
  ws->head = ws->tail = NULL;
  ws->outstanding = 0;
  ws->spin_ns = 50000.0;
  ws->efd = -1;
  ws->conns = NULL;
  ws->nconns = ws->capconns = 0;
  ws->quiet = false;
}

static void set_quiet(distc__wsconn *w, bool on) {
  if (w->quiet != on) {
    distc__conn_quiet(w->c, on);
    w->quiet = on;
  }
}

/* Held: a socket link leaves the I/O thread's hands (a ring link only when
 * the owner sleeps, poll_wait). */
static void hold_one(distc__wsconn *w) {
  if (!distc__conn_on_ring(w->c))
    set_quiet(w, true);
}

static void conn_release(distc__waitset *ws, int i) {
  set_quiet(&ws->conns[i], false);
  distc__conn_unref(ws->conns[i].c);
  ws->conns[i] = ws->conns[--ws->nconns];
}

void distc__waitset_release(distc__waitset *ws) {
  if (!ws->quiet)
    return;
  for (int i = 0; i < ws->nconns; i++)
    set_quiet(&ws->conns[i], false);
  ws->quiet = false;
}

/* While the owner waits, it alone reads its connections. */
void distc__waitset_hold(distc__waitset *ws) {
  if (ws->quiet)
    return;
  for (int i = 0; i < ws->nconns; i++)
    hold_one(&ws->conns[i]);
  ws->quiet = true;
}

void distc__waitset_destroy(distc__waitset *ws) {
  while (ws->nconns > 0)
    conn_release(ws, ws->nconns - 1);
  free(ws->conns);
  pthread_mutex_destroy(&ws->mu);
  pthread_cond_destroy(&ws->cond);
}

/* The completion hook: must not block, and must not touch the node after
 * unlocking (the owner may free it at once). */
static void on_done(distc_future *f, void *arg) {
  (void)f;
  distc__wsnode *n = arg;
  distc__waitset *ws = n->ws;
  pthread_mutex_lock(&ws->mu);
  n->next = NULL;
  if (ws->tail)
    ws->tail->next = n;
  else
    ws->head = n;
  ws->tail = n;
  atomic_fetch_add_explicit(&ws->ndone, 1, memory_order_release);
  if (ws->sleeping) {
    /* The owner sleeps in poll() or on the condition. */
    if (ws->efd >= 0) {
      uint64_t one = 1;
      if (write(ws->efd, &one, sizeof one) < 0) {
        /* The counter is already non-zero: the owner wakes anyway. */
      }
    }
    pthread_cond_signal(&ws->cond);
  }
  pthread_mutex_unlock(&ws->mu);
}

/* Counts node n's connection in: the first outstanding call on it takes it
 * out of the I/O thread's hands. */
static void conn_hold(distc__waitset *ws, distc__conn *c) {
  for (int i = 0; i < ws->nconns; i++) {
    if (ws->conns[i].c == c) {
      ws->conns[i].n++;
      return;
    }
  }
  if (ws->nconns == ws->capconns) {
    int cap = ws->capconns ? ws->capconns * 2 : 8;
    distc__wsconn *a = realloc(ws->conns, sizeof *a * (size_t)cap);
    if (!a)
      return; /* left to the I/O thread: slower, still correct */
    ws->conns = a;
    ws->capconns = cap;
  }
  atomic_fetch_add(&c->refs, 1);
  ws->conns[ws->nconns] = (distc__wsconn){c, 1, false};
  if (ws->quiet)
    hold_one(&ws->conns[ws->nconns]);
  ws->nconns++;
}

static void conn_drop(distc__waitset *ws, distc__conn *c) {
  for (int i = 0; i < ws->nconns; i++) {
    if (ws->conns[i].c == c) {
      if (--ws->conns[i].n == 0)
        conn_release(ws, i);
      return;
    }
  }
}

void distc__waitset_add(distc__waitset *ws, distc__wsnode *n) {
  n->ws = ws;
  ws->outstanding++;
  if (n->conn && distc__C.is_master)
    conn_hold(ws, n->conn);
  distc__future_on_done(n->f, on_done, n);
}

static distc__wsnode *pop(distc__waitset *ws) {
  distc__wsnode *n = ws->head;
  if (n) {
    ws->head = n->next;
    if (!ws->head)
      ws->tail = NULL;
    atomic_fetch_sub_explicit(&ws->ndone, 1, memory_order_relaxed);
  }
  return n;
}

static bool any_done(distc__waitset *ws) {
  return atomic_load_explicit(&ws->ndone, memory_order_acquire) > 0;
}

static void abs_time(struct timespec *ts, double deadline) {
  double left = deadline - distc__now();
  if (left < 0)
    left = 0;
  clock_gettime(CLOCK_REALTIME, ts);
  long long ns = (long long)ts->tv_nsec + (long long)left;
  ts->tv_sec += ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
}

static void pump_all(distc__waitset *ws) {
  for (int i = 0; i < ws->nconns; i++)
    if (!atomic_load(&ws->conns[i].c->dead))
      distc__master_pump(ws->conns[i].c, false);
}

/* Reads the held connections that have something to read: a ring is
 * looked at in memory, the sockets with one poll() for all of them. */
static void pump_ready(distc__waitset *ws) {
  struct pollfd pf[POLL_MAX];
  distc__conn *which[POLL_MAX];
  int n = 0;
  for (int i = 0; i < ws->nconns && n < POLL_MAX; i++) {
    distc__conn *c = ws->conns[i].c;
    if (atomic_load(&c->dead))
      continue;
    if (distc__conn_on_ring(c)) {
      if (distc__conn_ring_unread(c) > 0)
        distc__master_pump(c, false);
      continue;
    }
    pf[n] = (struct pollfd){.fd = c->fd, .events = POLLIN};
    which[n++] = c;
  }
  if (n == 0 || poll(pf, (nfds_t)n, 0) <= 0)
    return;
  for (int k = 0; k < n; k++)
    if (pf[k].revents)
      distc__master_pump(which[k], false);
}

/* Sleeps in poll() on the held connections and the eventfd until a node is
 * queued or the deadline passes.  A readable connection is read with its
 * lock taken blocking: the I/O thread may be finishing a read it began
 * before the connection went quiet. */
static void poll_wait(distc__waitset *ws, double deadline) {
  struct pollfd pf[POLL_MAX + 1];
  distc__conn *which[POLL_MAX];
  for (int i = 0; ws->quiet && i < ws->nconns; i++)
    set_quiet(&ws->conns[i], true); /* the ring links too, now */
  while (!any_done(ws)) {
    int npf = 0;
    for (int i = 0; i < ws->nconns && npf < POLL_MAX; i++) {
      distc__conn *c = ws->conns[i].c;
      if (atomic_load(&c->dead))
        continue; /* its calls are failing; the hook will say so */
      pf[npf] = (struct pollfd){.fd = c->fd, .events = POLLIN};
      which[npf++] = c;
    }
    pf[npf] = (struct pollfd){.fd = ws->efd, .events = POLLIN};

    pthread_mutex_lock(&ws->mu);
    bool done = ws->head != NULL;
    ws->sleeping = !done;
    pthread_mutex_unlock(&ws->mu);
    if (done)
      return;
    struct timespec ts, *tsp = NULL;
    if (deadline > 0) {
      double left = deadline - distc__now();
      if (left < 0)
        left = 0;
      ts.tv_sec = (time_t)(left / 1e9);
      ts.tv_nsec = (long)(left - (double)ts.tv_sec * 1e9);
      tsp = &ts;
    }
    int r = ppoll(pf, (nfds_t)npf + 1, tsp, NULL);
    pthread_mutex_lock(&ws->mu);
    ws->sleeping = false;
    pthread_mutex_unlock(&ws->mu);
    if (r < 0 && errno != EINTR)
      return; /* cannot poll: the caller falls back to the condition */
    if (r > 0) {
      if (pf[npf].revents) {
        uint64_t v;
        if (read(ws->efd, &v, sizeof v) < 0) {
          /* Already drained. */
        }
      }
      for (int k = 0; k < npf; k++)
        if (pf[k].revents)
          distc__master_pump(which[k], true);
    }
    if (deadline > 0 && distc__now() >= deadline)
      return;
  }
}

distc__wsnode *distc__waitset_take(distc__waitset *ws) {
  if (!any_done(ws))
    return NULL;
  pthread_mutex_lock(&ws->mu);
  distc__wsnode *n = pop(ws);
  pthread_mutex_unlock(&ws->mu);
  if (n) {
    ws->outstanding--;
    if (n->conn && distc__C.is_master)
      conn_drop(ws, n->conn);
  }
  return n;
}

distc__wsnode *distc__waitset_next(distc__waitset *ws, int busy,
                                   double deadline) {
  if (ws->outstanding == 0)
    return NULL;
  double t0 = distc__now(), budget = ws->spin_ns;
  bool reader = distc__C.is_master && ws->nconns > 0;
  bool hard = busy + 1 <= distc__ncores();
  if (reader && !any_done(ws)) {
    distc__waitset_hold(ws);
    /* Looking, hard or between yields, nobody needs the writers'
     * doorbells on the rings: a bell is a system call on each side. */
    int nspin = ws->nconns;
    for (int i = 0; i < nspin; i++)
      distc__conn_spinning(ws->conns[i].c, true);
    while (!any_done(ws)) {
      if (hard)
        pump_all(ws);
      else
        pump_ready(ws); /* one syscall to look, a read only where needed */
      if (any_done(ws))
        break;
      double now = distc__now();
      if (now - t0 >= budget || (deadline > 0 && now >= deadline))
        break;
      if (hard)
        distc__cpu_relax();
      else
        sched_yield(); /* the workers it waits for go first */
    }
    for (int i = 0; i < nspin && i < ws->nconns; i++)
      distc__conn_spinning(ws->conns[i].c, false);
    if (!any_done(ws) && ws->efd < 0)
      ws->efd = thread_efd();
    if (!any_done(ws) && ws->efd >= 0)
      poll_wait(ws, deadline);
  }

  distc__wsnode *n;
  pthread_mutex_lock(&ws->mu);
  while (!(n = pop(ws))) {
    if (deadline > 0 && distc__now() >= deadline)
      break;
    ws->sleeping = true;
    if (deadline > 0) {
      struct timespec ts;
      abs_time(&ts, deadline);
      pthread_cond_timedwait(&ws->cond, &ws->mu, &ts);
    } else {
      pthread_cond_wait(&ws->cond, &ws->mu);
    }
    ws->sleeping = false;
  }
  pthread_mutex_unlock(&ws->mu);
  if (!n)
    return NULL;
  ws->outstanding--;
  if (n->conn && distc__C.is_master)
    conn_drop(ws, n->conn);

  /* Adapt as call.c does: spin long enough to catch answers that come within
   * SPIN_MAX, and stop spinning for work whose answers take longer. */
  if (reader) {
    double took = distc__now() - t0, s = budget;
    if (took <= SPIN_MAX_NS)
      s = took * 1.5 > s ? took * 1.5 : s;
    else
      s = s / 2;
    ws->spin_ns = s < SPIN_MIN_NS ? SPIN_MIN_NS : s > SPIN_MAX_NS ? SPIN_MAX_NS : s;
  }
  return n;
}

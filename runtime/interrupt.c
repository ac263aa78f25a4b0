/* interrupt.c — distc_interrupt (Julia's interrupt(pids)) and what makes it
 * work while a worker is busy in a program's function.
 *
 * The master sends an INTERRUPT frame; the worker marks the call it is
 * running as interrupted.  That is cooperative, as in Julia for code that
 * never yields: a function sees the mark through distc_interrupted(), a
 * wait in the library (distc_fetch, a channel take) gives up by itself,
 * and a SIGINT aimed at the worker's main thread makes a sleeping or
 * polling system call return early.  Nothing is unwound by force: a C
 * function cannot be stopped safely halfway (its locks, its heap).
 *
 * The worker's main thread is the only reader of the master connection and
 * it runs calls inline, so while a function computes nobody would read the
 * INTERRUPT.  The main thread therefore holds the connection's rlock except
 * while a registered function runs; then the I/O thread can take it (a
 * trylock that fails whenever the main thread is in the library) and read
 * what arrived itself: an INTERRUPT takes effect at once, anything else
 * waits in call.c's held queue for the main thread, in order.  The I/O
 * thread looks every IO_LOOK_MS while a call runs, and watches the socket
 * only while it holds the reader's role, so an idle or quick worker pays
 * nothing but that timer.
 *
 * The master turns its first SIGINT (Ctrl-C, or distc-launch forwarding
 * one) into an interrupt of every worker, when the program left SIGINT at
 * its default action; the handler resets itself (SA_RESETHAND), so a second
 * SIGINT ends the master as before. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define IO_LOOK_MS 50

/* ---- worker: which call is interrupted ---- */

/* The generation of the top-level call running (0: none) and the one last
 * interrupted.  Lock-free, so a signal handler may set them. */
static _Atomic uint64_t running, hit;
/* Under the reader's role (only its holder runs calls). */
static uint64_t gen;
static int depth;

static pthread_t main_thread;
static bool sigint_ours; /* the worker's SIGINT handler is installed */
static _Thread_local bool tl_reader;

bool distc_interrupted(void) {
  uint64_t g = atomic_load(&running);
  return g != 0 && atomic_load(&hit) == g;
}

void distc__interrupt_call_begin(void) {
  if (distc__C.is_master)
    return;
  if (depth++ == 0)
    atomic_store(&running, ++gen);
}

bool distc__interrupt_call_end(void) {
  if (distc__C.is_master)
    return false;
  bool was = distc_interrupted();
  if (--depth == 0)
    atomic_store(&running, 0);
  return was;
}

static void mark(void) {
  uint64_t g = atomic_load(&running);
  if (g != 0)
    atomic_store(&hit, g);
}

void distc__interrupt_deliver(bool signal_main) {
  if (atomic_load(&running) == 0)
    return; /* an idle worker: nothing to interrupt */
  mark();
  if (signal_main && sigint_ours)
    pthread_kill(main_thread, SIGINT);
}

/* A SIGINT sent to the worker (by distc or by hand, as Julia's interrupt
 * does for local workers) interrupts its call.  SA_RESTART: reads and
 * writes of the library and of stdio resume; sleeps and polls return
 * EINTR, which is what lets a function blocked in one look at the flag. */
static void on_worker_sigint(int sig) {
  (void)sig;
  mark();
}

void distc__interrupt_worker_init(void) {
  main_thread = pthread_self();
  pthread_mutex_lock(&distc__C.master->rlock);
  tl_reader = true;
  struct sigaction cur;
  if (sigaction(SIGINT, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
      cur.sa_handler == SIG_DFL) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_worker_sigint;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigint_ours = sigaction(SIGINT, &sa, NULL) == 0;
  }
}

/* ---- worker: the reader's role ---- */

bool distc__reader_release(void) {
  if (distc__C.is_master || !tl_reader)
    return false;
  tl_reader = false;
  pthread_mutex_unlock(&distc__C.master->rlock);
  return true;
}

void distc__reader_take(bool had) {
  if (!had)
    return;
  pthread_mutex_lock(&distc__C.master->rlock);
  tl_reader = true;
}

bool distc__reader_acquire(void) {
  if (distc__C.is_master || tl_reader || !distc__C.master)
    return false;
  distc__reader_take(true);
  return true;
}

void distc__reader_drop(bool took) {
  if (took)
    distc__reader_release();
}

/* ---- worker: the I/O thread reads while a function runs ---- */

static uv_timer_t io_timer;
static uv_poll_t *hup;
static uv_poll_cb hup_cb;
static bool watching;

static void watch(bool on) {
  if (on == watching)
    return;
  watching = on;
  uv_poll_start(hup, on ? UV_READABLE | UV_DISCONNECT : UV_DISCONNECT, hup_cb);
}

/* Reads what the master sent while the main thread runs a function. */
static void io_read(void) {
  distc__conn *c = distc__C.master;
  if (atomic_load(&running) == 0 || pthread_mutex_trylock(&c->rlock) != 0) {
    watch(false); /* the main thread reads again */
    return;
  }
  for (;;) {
    distc__frame fr;
    int r = distc__conn_read_frame(c, &fr);
    if (r < 0) {
      /* The master is gone (see worker.c's on_hangup). */
      distc__shared_orphaned();
      _exit(1);
    }
    if (r == 0)
      break;
    if (fr.h.type == DISTC__F_INTERRUPT) {
      distc__interrupt_deliver(true);
    } else if (fr.h.type != DISTC__F_PING) {
      if (distc__worker_hold(&fr))
        continue; /* the main thread owns it now */
      distc__log(DISTC__LOG_ERROR, "out of memory holding a frame");
    }
    distc__free(fr.payload);
  }
  pthread_mutex_unlock(&c->rlock);
  watch(true);
}

static void on_io_timer(uv_timer_t *t) {
  (void)t;
  if (atomic_load(&running) != 0 || watching)
    io_read();
}

void distc__interrupt_io_start(uv_loop_t *loop, uv_poll_t *poll,
                               uv_poll_cb on_hangup) {
  hup = poll;
  hup_cb = on_hangup;
  uv_timer_init(loop, &io_timer);
  uv_timer_start(&io_timer, on_io_timer, IO_LOOK_MS, IO_LOOK_MS);
}

bool distc__interrupt_io_readable(int status, int events) {
  if (status < 0 || (events & UV_DISCONNECT) || !(events & UV_READABLE))
    return false;
  io_read();
  return true;
}

/* ---- master ---- */

static atomic_bool sigint_pending;
static bool sigint_installed;

static void on_master_sigint(int sig) {
  (void)sig;
  int saved = errno;
  atomic_store(&sigint_pending, true);
  uv_async_send(&distc__C.wake); /* async-signal-safe */
  errno = saved;
}

void distc__interrupt_sigint_install(void) {
  struct sigaction cur;
  if (sigaction(SIGINT, NULL, &cur) != 0 || (cur.sa_flags & SA_SIGINFO) ||
      cur.sa_handler != SIG_DFL)
    return; /* the program's own choice (or SIG_IGN) stands */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_master_sigint;
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigint_installed = sigaction(SIGINT, &sa, NULL) == 0;
}

void distc__interrupt_sigint_stop(void) {
  if (!sigint_installed)
    return;
  sigint_installed = false;
  struct sigaction cur;
  if (sigaction(SIGINT, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
      cur.sa_handler == on_master_sigint) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGINT, &sa, NULL);
  }
}

/* Sends an INTERRUPT to each live id; never waits (the master's I/O thread
 * calls it too).  Returns how many were sent. */
static int send_interrupts(const int *ids, int n) {
  int sent = 0;
  for (int i = 0; i < n; i++) {
    distc__conn *c = distc__conn_get(ids[i]);
    if (!c)
      continue; /* left meanwhile: nothing runs there any more */
    if (distc__conn_send_nowait(c, DISTC__F_INTERRUPT, 0, 0, NULL, 0) == 0)
      sent++;
    distc__conn_unref(c);
  }
  return sent;
}

/* The live worker ids, malloc'd (NULL when out of memory), count in *n. */
static int *all_workers(int *n) {
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->lock);
  int *ids = malloc(((size_t)C->nids + 1) * sizeof *ids);
  *n = 0;
  if (ids) {
    memcpy(ids, C->ids, (size_t)C->nids * sizeof *ids);
    *n = C->nids;
  }
  pthread_mutex_unlock(&C->lock);
  return ids;
}

void distc__interrupt_on_wake(void) {
  if (!atomic_exchange(&sigint_pending, false))
    return;
  int n;
  int *ids = all_workers(&n);
  if (!ids)
    return;
  send_interrupts(ids, n);
  free(ids);
  distc__log(DISTC__LOG_WARN,
             "interrupt: interrupting the calls running on %d worker%s "
             "(a second interrupt ends the run)",
             n, n == 1 ? "" : "s");
}

int distc_interrupt(const int *ids, int n) {
  distc__cluster *C = &distc__C;
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() before "
                                       "distc_interrupt");
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "distc_interrupt: only the master "
                                           "interrupts workers");
  if (n < 0 || (n > 0 && !ids))
    return distc__seterr(DISTC_EINVAL, "distc_interrupt: wants n >= 0 ids "
                                       "(NULL and 0: every worker)");
  if (n == 0) {
    int all;
    int *every = all_workers(&all);
    if (!every)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    send_interrupts(every, all);
    free(every);
    return 0;
  }
  pthread_mutex_lock(&C->lock);
  for (int i = 0; i < n; i++) {
    int id = ids[i];
    if (id <= DISTC_MASTER || id >= C->conncap || !C->conns[id]) {
      pthread_mutex_unlock(&C->lock);
      return distc__seterr(DISTC_ENOENT,
                           "distc_interrupt: %d is not a worker's id (see "
                           "distc_workers())",
                           id);
    }
  }
  pthread_mutex_unlock(&C->lock);
  send_interrupts(ids, n);
  return 0;
}

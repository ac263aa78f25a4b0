/* call.c — remote calls and futures.
 *
 * A call is one CALL frame written by the caller's own thread and one
 * RESULT or ERROR frame back.  Waking a blocked thread on the other core
 * costs 35-55 us on machines whose idle cores sleep deeply, more than a
 * whole round trip, so a waiter first spins and reads the connection itself;
 * only when the answer is slow does it block and leave reading to the I/O
 * thread.  How long it spins adapts to how long answers have been taking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "ring.h"
#include "parallel.h"

#define SPIN_MIN_NS 2000.0
#define SPIN_MAX_NS 200000.0

static _Atomic uint64_t next_callid = 1;
static _Atomic double spin_ns = 50000.0;

double distc__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

void distc__cond_wait_ns(pthread_cond_t *c, pthread_mutex_t *m, double ns) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long t = (long long)ts.tv_nsec + (long long)ns;
  ts.tv_sec += t / 1000000000;
  ts.tv_nsec = t % 1000000000;
  pthread_cond_timedwait(c, m, &ts);
}

/* ---- futures ---- */

/* Each thread keeps the memory of the last future it freed for the next
 * one it makes: a caller making one call after another then never goes to
 * the allocator (a tenth of a same-host round trip's instructions). */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_key_make(void) {
  if (pthread_key_create(&spare_key, free) != 0)
    spare_key = (pthread_key_t)-1;
}

distc_future *distc__future_new(int pid) {
  pthread_once(&spare_once, spare_key_make);
  distc_future *f = NULL;
  if (spare_key != (pthread_key_t)-1 && (f = pthread_getspecific(spare_key))) {
    pthread_setspecific(spare_key, NULL);
    memset(f, 0, sizeof *f);
  } else if (!(f = calloc(1, sizeof *f))) {
    return NULL;
  }
  atomic_init(&f->state, DISTC__FUT_PENDING);
  atomic_init(&f->refs, 1);
  f->pid = pid;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cond, NULL);
  return f;
}

void distc__future_unref(distc_future *f) {
  if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
    return;
  if (f->exported)
    distc__future_unexport(f);
  distc_value_free(f->value);
  free(f->errmsg);
  free(f->trace_fn);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cond);
  pthread_once(&spare_once, spare_key_make);
  if (spare_key == (pthread_key_t)-1 || pthread_getspecific(spare_key) ||
      pthread_setspecific(spare_key, f) != 0)
    free(f);
}

void distc_future_free(distc_future *f) { distc__future_unref(f); }

void distc__future_complete(distc_future *f, int err, distc_value *v,
                            char *errmsg) {
  f->err = err;
  f->value = v;
  f->errmsg = errmsg;
  pthread_mutex_lock(&f->mu);
  atomic_store_explicit(&f->state, DISTC__FUT_DONE, memory_order_release);
  if (f->sleepers) {
    pthread_cond_broadcast(&f->cond);
    if (f->wake_ring)
      distc__ring_wake(f->wake_ring);
  }
  void (*cb)(distc_future *, void *) = f->notify;
  void *arg = f->notify_arg;
  pthread_mutex_unlock(&f->mu);
  if (cb)
    cb(f, arg);
  if (f->exported)
    distc__future_exported_done(f);
}

void distc__future_on_done(distc_future *f,
                           void (*cb)(distc_future *f, void *arg), void *arg) {
  pthread_mutex_lock(&f->mu);
  bool done = atomic_load(&f->state) == DISTC__FUT_DONE;
  if (!done) {
    f->notify = cb;
    f->notify_arg = arg;
  }
  pthread_mutex_unlock(&f->mu);
  if (done)
    cb(f, arg);
}

static bool is_done(distc_future *f) {
  return atomic_load_explicit(&f->state, memory_order_acquire) ==
         DISTC__FUT_DONE;
}

bool distc_isready(distc_future *f) {
  if (!f)
    return false;
  if (is_done(f))
    return true;
  if (distc__C.is_master) {
    distc__conn *c = distc__conn_get(f->pid);
    if (c) {
      distc__master_pump(c, false);
      distc__conn_unref(c);
    }
  } else if (distc__C.master) {
    /* On a worker nobody else reads the connection. */
    bool took = distc__reader_acquire();
    while (!is_done(f) && distc__peers_pump() > 0)
      ;
    distc__reader_drop(took);
  }
  return is_done(f);
}

int distc_future_where(const distc_future *f) { return f ? f->pid : 0; }

/* Worker side: the waiting thread is the connection's only reader, so it
 * keeps reading (and running calls that arrive meanwhile, which is what
 * makes a call back into this worker work) until its answer is in. */
/* Worker: frames that arrived while a lent result was being copied by the
 * master, handled in order once it is done (see await_release). */
static struct {
  distc__frame *f;
  size_t head, n, cap;
} held;

static bool hold(distc__frame *fr) {
  if (held.n == held.cap) {
    if (held.head > 0) {
      memmove(held.f, held.f + held.head, (held.n - held.head) * sizeof *fr);
      held.n -= held.head;
      held.head = 0;
    } else {
      size_t cap = held.cap ? held.cap * 2 : 16;
      distc__frame *f = realloc(held.f, cap * sizeof *f);
      if (!f)
        return false;
      held.f = f;
      held.cap = cap;
    }
  }
  held.f[held.n++] = *fr;
  return true;
}

bool distc__worker_hold(distc__frame *fr) { return hold(fr); }

/* Worker: calls abandoned by an interrupted wait; their answers, when they
 * come, are dropped without a warning. */
static uint64_t abandoned[16];
static unsigned nabandoned;

static bool was_abandoned(uint64_t id) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(abandoned); i++)
    if (abandoned[i] == id)
      return true;
  return false;
}

/* Worker, in a wait interrupted by distc_interrupt: completes f with
 * DISTC_EINTERRUPTED if it is still waiting for the master's answer. */
static bool abandon(distc_future *f) {
  distc__conn *c = distc__conn_get(f->pid);
  distc_future *p = c ? distc__pending_take(c, f->callid) : NULL;
  distc__conn_unref(c);
  if (!p)
    return false;
  abandoned[nabandoned++ % DISTC__ARRAY_LEN(abandoned)] = p->callid;
  char *msg = NULL;
  if (asprintf(&msg, "On worker %d: interrupted while waiting for process %d",
               distc__C.myid, p->pid) < 0)
    msg = NULL;
  distc__future_complete(p, DISTC_EINTERRUPTED, NULL, msg);
  distc__future_unref(p);
  return true;
}

int distc__worker_pump_once(distc__conn *c) {
  distc__frame fr;
  int r = 1;
  if (held.head < held.n) {
    fr = held.f[held.head++];
    if (held.head == held.n)
      held.head = held.n = 0;
  } else {
    /* The reader keeps its ring's no-doorbell mark while a call runs: the
     * I/O thread reads the ring every IO_LOOK_MS meanwhile (interrupt.c),
     * bell or none, and clearing the mark for every call cost the master
     * a cache miss on every frame it sent. */
    r = distc__conn_read_frame(c, &fr);
  }
  if (r <= 0)
    return r;
  distc__worker_dispatch(c, &fr);
  return 1;
}

void distc__worker_dispatch(distc__conn *c, distc__frame *fr) {
  bool master = c == distc__C.master;
  switch (fr->h.type) {
  case DISTC__F_CALL:
    distc__run_call(c, fr);
    break;
  case DISTC__F_RESULT:
  case DISTC__F_ERROR:
    distc__complete_call(c, fr);
    break;
  case DISTC__F_PING:
    break;
  case DISTC__F_EXIT:
    if (!master)
      goto unexpected;
    distc__output_drain(c);
    fflush(NULL);
    _exit(0);
  case DISTC__F_INTERRUPT:
    if (!master)
      goto unexpected;
    distc__interrupt_deliver(false); /* this thread is the one to stop */
    break;
  default:
  unexpected:
    distc__log(DISTC__LOG_WARN, "unexpected frame type %u from %s%.0d",
               fr->h.type, master ? "the master" : "worker ",
               master ? 0 : c->id);
  }
  distc__free(fr->payload);
}

/* Lost master on a worker: nothing it could do would reach anyone. */
static void worker_orphaned(void) {
  distc__log(DISTC__LOG_ERROR, "lost the connection to the master; exiting");
  distc__shared_orphaned();
  _exit(1);
}

/* Worker, after sending a result with lent arrays: the master copies them
 * out of our memory, so nothing may change them until it says it is done.
 * Calls that arrive meanwhile wait their turn in `held`. */
static void await_release(distc__conn *c, uint64_t id) {
  for (;;) {
    distc__frame fr;
    int r = distc__conn_read_frame(c, &fr);
    if (r < 0)
      worker_orphaned();
    if (r == 0) {
      distc__conn_poll(c, 1000);
      continue;
    }
    if (fr.h.type == DISTC__F_PING || fr.h.type == DISTC__F_INTERRUPT) {
      if (fr.h.type == DISTC__F_INTERRUPT)
        distc__interrupt_deliver(false);
      distc__free(fr.payload);
    } else if (fr.h.type == DISTC__F_RELEASE) {
      distc__free(fr.payload);
      if (fr.h.id == id)
        return;
    } else if (fr.h.type == DISTC__F_RESULT || fr.h.type == DISTC__F_ERROR) {
      distc__complete_call(c, &fr);
      distc__free(fr.payload);
    } else if (!hold(&fr)) {
      distc__free(fr.payload);
      distc__log(DISTC__LOG_ERROR, "out of memory holding a call");
    }
  }
}

/* How long one sleep of a wait until deadline (monotonic ns, 0: none) may
 * last: a second at most (a bound, not a poll: every event wakes the
 * sleeper), and 0 once the deadline has passed. */
static int sleep_ms(double deadline) {
  if (deadline <= 0)
    return 1000;
  double left = deadline - distc__now();
  if (left <= 0)
    return 0;
  return left / 1e6 + 1 < 1000 ? (int)(left / 1e6) + 1 : 1000;
}

/* Master: sleeps on the futex of c's ring, as its reader, until f is done
 * or the deadline passes.  The answer then wakes this thread alone, where
 * sleeping on the condition takes two wake-ups (the I/O thread's, then
 * ours); whoever else completes f (the I/O thread, another waiter, the loss
 * of the worker) wakes us through f->wake_ring. */
static void ring_sleep(distc_future *f, distc__conn *c, double deadline) {
  distc__ring *r = c->rx;
  pthread_mutex_lock(&f->mu);
  f->sleepers++;
  f->wake_ring = r;
  pthread_mutex_unlock(&f->mu);
  while (!is_done(f) && !atomic_load(&c->dead)) {
    int ms = sleep_ms(deadline);
    if (ms == 0)
      break;
    uint32_t seq = distc__ring_sleep_begin(r);
    if (distc__master_pump(c, false) == 0 && !is_done(f))
      distc__ring_sleep_wait(r, seq, ms);
    distc__ring_sleep_end(r);
  }
  pthread_mutex_lock(&f->mu);
  f->sleepers--;
  f->wake_ring = NULL;
  pthread_mutex_unlock(&f->mu);
  distc__conn_drain_unbelled(c);
}

/* Until f is done or the deadline (monotonic ns, 0: none) passes. */
static void future_wait_until(distc_future *f, double deadline) {
  if (is_done(f))
    return;
  distc__conn *c = NULL;
  bool worker = !distc__C.is_master;
  if (worker)
    c = distc__C.master;
  else
    c = distc__conn_get(f->pid);

  double t0 = distc__now(), budget = atomic_load(&spin_ns);
  bool spun_ok = false, reading = worker && distc__reader_acquire();
  /* On the rings a spinning reader gets no doorbell, so the I/O thread is
   * not woken anyway: only a socket link leaves its epoll set (two system
   * calls a round trip). */
  bool quiet = c && !worker && !distc__conn_on_ring(c);
  if (quiet)
    distc__conn_quiet(c, true);
  if (c && !worker)
    distc__conn_spinning(c, true);
  if (worker)
    distc__peers_spin(true); /* our peers ring no doorbell while we look */
  if (deadline > 0 && t0 + budget > deadline)
    budget = deadline > t0 ? deadline - t0 : 0;
  /* The clock every 8 looks: a look is tens of nanoseconds. */
  for (unsigned k = 0; (k & 7) || distc__now() - t0 < budget; k++) {
    if (is_done(f)) {
      spun_ok = true;
      break;
    }
    if (c) {
      int r = worker ? distc__peers_pump() : distc__master_pump(c, false);
      if (r < 0 && worker)
        worker_orphaned();
      if (worker && distc_interrupted() && abandon(f))
        continue;
      if (r > 0)
        continue;
    }
    distc__cpu_relax();
  }
  if (c && !worker)
    distc__conn_spinning(c, false);
  if (quiet)
    distc__conn_quiet(c, false);
  /* Frames that came while we spun rang no doorbell: read them now, or an
   * INTERRUPT among them would wait for the next wait. */
  while (worker && distc__peers_spin(false) && distc__peers_pump() > 0)
    ;

  if (!spun_ok) {
    if (worker) {
      while (!is_done(f) && !(deadline > 0 && distc__now() >= deadline)) {
        int r = distc__peers_pump(); /* every link: calls back must run */
        if (r < 0)
          worker_orphaned();
        if (distc_interrupted() && abandon(f))
          break;
        if (r == 0)
          distc__peers_poll(sleep_ms(deadline));
      }
    } else if (c && c->rx) {
      ring_sleep(f, c, deadline);
    } else {
      pthread_mutex_lock(&f->mu);
      f->sleepers++;
      while (!is_done(f)) {
        if (deadline <= 0) {
          pthread_cond_wait(&f->cond, &f->mu);
          continue;
        }
        double left = deadline - distc__now();
        if (left <= 0)
          break;
        distc__cond_wait_ns(&f->cond, &f->mu, left);
      }
      f->sleepers--;
      pthread_mutex_unlock(&f->mu);
    }
  }
  if (!worker)
    distc__conn_unref(c);
  distc__reader_drop(reading);

  /* Adapt: spin long enough to catch answers that come within SPIN_MAX,
   * and stop spinning for work whose answers take longer than that. */
  double took = distc__now() - t0, s = budget;
  if (took <= SPIN_MAX_NS)
    s = took * 1.5 > s ? took * 1.5 : s;
  else
    s = s / 2;
  if (s < SPIN_MIN_NS)
    s = SPIN_MIN_NS;
  if (s > SPIN_MAX_NS)
    s = SPIN_MAX_NS;
  atomic_store(&spin_ns, s);
}

void distc__future_wait(distc_future *f) { future_wait_until(f, 0); }

static int future_result(distc_future *f, distc_value **result) {
  if (f->err) {
    distc__seterr(f->err, "%s", f->errmsg ? f->errmsg : distc_strerror(f->err));
    return f->err;
  }
  if (result)
    *result = distc_value_ref(f->value);
  return 0;
}

int distc_fetch(distc_future *f, distc_value **result) {
  if (result)
    *result = NULL;
  if (!f)
    return distc__seterr(DISTC_EINVAL, "distc_fetch: NULL future");
  distc__future_wait(f);
  return future_result(f, result);
}

int distc_wait(distc_future *f) { return distc_fetch(f, NULL); }

int distc_fetch_timeout(distc_future *f, double timeout_s,
                        distc_value **result) {
  if (!f)
    return distc__seterr(DISTC_EINVAL, "distc_fetch_timeout: NULL future");
  if (!(timeout_s >= 0))
    return distc__seterr(DISTC_EINVAL, "distc_fetch_timeout: the timeout "
                                       "must be >= 0 seconds");
  /* 0 still looks at the connection once, like distc_isready. */
  future_wait_until(f, distc__now() + (timeout_s > 0 ? timeout_s * 1e9 : 1));
  if (!is_done(f))
    return distc__seterr(DISTC_ETIMEDOUT,
                         "the call on process %d did not complete in %g s "
                         "(it is still running; fetch again, or wait longer)",
                         f->pid, timeout_s);
  return future_result(f, result);
}

int distc_wait_timeout(distc_future *f, double timeout_s) {
  return distc_fetch_timeout(f, timeout_s, NULL);
}

int distc_wait_all(distc_future *const *fs, size_t n) {
  int first = 0;
  char *msg = NULL;
  for (size_t i = 0; i < n; i++) {
    int rc = distc_wait(fs[i]);
    if (rc && !first) {
      first = rc;
      msg = strdup(distc_errmsg());
    }
  }
  if (first)
    distc__seterr(first, "%s", msg ? msg : distc_strerror(first));
  free(msg);
  return first;
}

/* ---- running calls ---- */

/* Runs fn(args) here with ctx (which says where the answer goes); on
 * failure *err and *msg say why (msg owned).  When the function deferred its
 * answer (ctx->deferred), what it returned is dropped and NULL comes back
 * with *err 0. */
static distc_value *invoke(const char *name, const distc_value *args,
                           distc_ctx *ctx, int *err, char **msg) {
  distc_fn fn = distc__lookup(name);
  *err = 0;
  *msg = NULL;
  if (!fn) {
    *err = DISTC_ENOTREG;
    if (asprintf(msg,
                 "function '%s' is not registered (define it with "
                 "DISTC_FUNCTION in the program, or load the shared object "
                 "that defines it with distc_load_everywhere)",
                 name) < 0)
      *msg = NULL;
    return NULL;
  }
  distc_value *empty = NULL;
  if (!args)
    args = empty = distc_list(0);
  distc_value *v = fn(args, ctx);
  distc_value_free(empty);
  if (ctx->deferred) {
    distc_value_free(v);
    v = NULL;
  } else if (!v) {
    *err = DISTC_EREMOTE;
    if (asprintf(msg, "in function '%s': %s", name,
                 ctx->errmsg ? ctx->errmsg : "failed without a message") < 0)
      *msg = NULL;
  }
  free(ctx->errmsg);
  ctx->errmsg = NULL;
  return v;
}

/* flags DISTC__F_WHERE: msg already says which process failed. */
static void send_error(distc__conn *c, uint64_t id, int err, const char *msg,
                       uint8_t flags) {
  distc__enc e;
  distc__enc_init(&e);
  msgpack_pack_array(&e.pk, 2);
  msgpack_pack_int(&e.pk, err);
  size_t n = msg ? strlen(msg) : 0;
  msgpack_pack_str(&e.pk, n);
  msgpack_pack_str_body(&e.pk, msg ? msg : "", n);
  distc__send_encoded(c, DISTC__F_ERROR, flags, id, &e);
  distc__enc_destroy(&e);
}

/* The payload bytes an encoder makes: its head (distc__enc_finish), the
 * msgpack part and the raw segments. */
static size_t enc_bytes(const distc__enc *e) {
  size_t n = 8 + 8 * e->nsegs + e->sb.size;
  for (size_t i = 0; i < e->nsegs; i++)
    n += e->segs[i].iov_len;
  return n;
}

/* A pmap batch is a call like any other; its own category lets the
 * timeline tell batches from the program's calls. */
static const char *call_cat(const char *fn) {
  return strcmp(fn, DISTC__BATCH_FN) == 0 ? "pmap" : "call";
}

void distc__run_call(distc__conn *c, distc__frame *f) {
  distc__dec d;
  distc_value *args = NULL, *result = NULL;
  char *msg = NULL, name[DISTC__NAME_MAX + 1];
  uint64_t t0 = distc__tracing() ? distc__trace_now() : 0;
  size_t out_bytes = 0;
  name[0] = '\0';
  distc__stat_add(&c->st.calls_in, 1);
  int err = distc__dec_open(&d, f->payload, f->h.len);
  if (err) {
    msg = strdup("malformed call");
    goto answer;
  }
  const msgpack_object *root = distc__dec_root(&d);
  if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 2 ||
      root->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
      root->via.array.ptr[0].via.str.size >= sizeof name) {
    err = DISTC_EPROTO;
    msg = strdup("malformed call");
    goto close_dec;
  }
  memcpy(name, root->via.array.ptr[0].via.str.ptr,
         root->via.array.ptr[0].via.str.size);
  name[root->via.array.ptr[0].via.str.size] = '\0';
  err = distc__dec_value(&d, &root->via.array.ptr[1], &args);
  if (err) {
    if (asprintf(&msg, "malformed arguments for '%s': %s", name,
                 distc_errmsg()) < 0)
      msg = NULL;
    goto close_dec;
  }
  distc_ctx ctx = {.conn = c, .callid = f->h.id,
                   .noresult = (f->h.flags & DISTC__F_NORESULT) != 0};
  distc__interrupt_call_begin();
  /* While the function runs, the I/O thread may read the connection (an
   * interrupt must reach a busy function: interrupt.c). */
  bool reader = distc__reader_release();
  distc__C.worker_depth++;
  result = invoke(name, args, &ctx, &err, &msg);
  distc__C.worker_depth--;
  distc__reader_take(reader);
  if (distc__interrupt_call_end() && !ctx.deferred) {
    /* Whatever it returned, the caller learns it was interrupted. */
    distc_value_free(result);
    result = NULL;
    free(msg);
    err = DISTC_EINTERRUPTED;
    if (asprintf(&msg, "interrupted (in function '%s')", name) < 0)
      msg = NULL;
  }
  if (ctx.deferred) {
    /* The function answers later through its distc__reply. */
    distc__dec_close(&d);
    distc_value_free(args);
    return;
  }
close_dec:
  distc__dec_close(&d);
answer:
  distc_value_free(args);
  /* Whatever the function printed goes out before its answer, so the
   * caller sees a call's output before fetch returns. */
  distc__output_drain(c);
  /* The run ends before the answer goes: once it is sent, the caller may
   * close its span before this thread runs again (a large answer's sending
   * is a transfer span of its own). */
  uint64_t t_end = distc__tracing() ? distc__trace_now() : 0;
  if (f->h.flags & DISTC__F_NORESULT) {
    if (err)
      distc__log(DISTC__LOG_ERROR, "remote_do: %s", msg ? msg : "failed");
  } else if (err) {
    send_error(c, f->h.id, err, msg, 0);
  } else {
    distc__enc e;
    distc__enc_init(&e);
    e.lend = !distc__C.is_master && c->cma;
    int rc = distc__enc_value(&e, result);
    if (!rc)
      rc = distc__send_encoded(c, DISTC__F_RESULT,
                               e.lent ? DISTC__F_LENT : 0, f->h.id, &e);
    if (!rc)
      out_bytes = enc_bytes(&e);
    bool lent = e.lent;
    distc__enc_destroy(&e);
    if (!rc && lent)
      await_release(c, f->h.id);
    if (rc && rc != DISTC_EPROCEXIT)
      send_error(c, f->h.id, rc, distc_errmsg(), 0);
  }
  if (t_end)
    distc__trace_span_at(call_cat(name), name[0] ? name : "malformed call", t0,
                         t_end,
                         "\"from\":%d,\"bytes_in\":%u,\"bytes_out\":%zu,"
                         "\"error\":%d",
                         c->id, f->h.len, out_bytes, err);
  distc_value_free(result);
  free(msg);
}

/* The worker waits, frozen, until its lent arrays are copied. */
static void release(distc__conn *c, distc__frame *f) {
  if (f->h.flags & DISTC__F_LENT)
    distc__conn_send(c, DISTC__F_RELEASE, 0, f->h.id, NULL, 0);
}

void distc__complete_call(distc__conn *c, distc__frame *f) {
  distc_future *fut = distc__pending_take(c, f->h.id);
  if (!fut) {
    if (distc__C.is_master || !was_abandoned(f->h.id))
      distc__log(DISTC__LOG_WARN, "answer from process %d to unknown call %llu",
                 c->id, (unsigned long long)f->h.id);
    release(c, f);
    return;
  }
  distc__dec d;
  distc_value *v = NULL;
  char *msg = NULL;
  size_t copied = 0;
  int err = distc__dec_open(&d, f->payload, f->h.len);
  if (!err) {
    d.lender = c->cma ? (int)c->ospid : 0;
    d.copied = &copied;
    const msgpack_object *root = distc__dec_root(&d);
    if (f->h.type == DISTC__F_RESULT) {
      err = distc__dec_value(&d, root, &v);
      if (err && asprintf(&msg, "On worker %d: malformed result: %s", c->id,
                          distc_errmsg()) < 0)
        msg = NULL;
    } else if (root->type == MSGPACK_OBJECT_ARRAY &&
               root->via.array.size == 2 &&
               root->via.array.ptr[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
               root->via.array.ptr[1].type == MSGPACK_OBJECT_STR) {
      err = (int)root->via.array.ptr[0].via.i64;
      if (err >= 0 || err <= DISTC__ERR_FIRST || err >= DISTC__ERR_END)
        err = DISTC_EREMOTE;
      /* A forwarded error already names the process it came from. */
      int n = (int)root->via.array.ptr[1].via.str.size;
      const char *m = root->via.array.ptr[1].via.str.ptr;
      int w = (f->h.flags & DISTC__F_WHERE)
                  ? asprintf(&msg, "%.*s", n, m)
                  : asprintf(&msg, "On worker %d: %.*s", c->id, n, m);
      if (w < 0)
        msg = NULL;
    } else {
      err = DISTC_EPROTO;
    }
    distc__stat_add(&c->st.bytes_copied, copied);
    distc__dec_close(&d);
  }
  release(c, f);
  if (fut->trace_fn)
    distc__trace_async(call_cat(fut->trace_fn), fut->trace_fn, fut->callid,
                       fut->trace_t0, distc__trace_now(),
                       "\"to\":%d,\"bytes_out\":%zu,\"bytes_in\":%u,"
                       "\"error\":%d",
                       c->id, fut->trace_out, f->h.len, err);
  if (err && !msg && asprintf(&msg, "On worker %d: %s", c->id,
                              distc_strerror(err)) < 0)
    msg = NULL;
  distc__future_complete(fut, err, v, msg);
  distc__future_unref(fut);
}

/* ---- deferred answers ----
 * A function that cannot answer yet (a take from an empty channel) must not
 * hold the thread that runs calls: on a worker that thread is also the
 * connection's only reader, so waiting there would stop the very call that
 * could unblock it.  It takes the call's reply with distc__call_defer and
 * returns; whoever completes the work later answers through the reply. */

struct distc__reply {
  distc__conn *conn;   /* the caller's connection (ref), NULL for a local call */
  uint64_t callid;
  bool noresult;       /* remote_do: nothing goes back */
  distc_future *local; /* local call: the caller's future (ref) */
  distc_future *fwd;   /* distc__forward: the forwarded call's future */
};

distc__reply *distc__call_defer(distc_ctx *ctx) {
  distc__reply *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->conn = ctx->conn;
  if (r->conn)
    atomic_fetch_add(&r->conn->refs, 1);
  r->callid = ctx->callid;
  r->noresult = ctx->noresult;
  r->local = ctx->local;
  if (r->local)
    atomic_fetch_add(&r->local->refs, 1);
  ctx->deferred = true;
  return r;
}

/* where: msg already names the process that failed. */
static void reply_send(distc__reply *r, int err, distc_value *v,
                       const char *msg, bool where) {
  if (!msg)
    msg = distc_strerror(err);
  if (r->local) {
    char *full = NULL;
    if (err && (where ? (full = strdup(msg)) == NULL
                      : asprintf(&full, "On worker %d: %s", distc__C.myid,
                                 msg) < 0))
      full = NULL;
    if (err) {
      distc_value_free(v);
      v = NULL;
    }
    distc__future_complete(r->local, err, v, full);
    distc__future_unref(r->local);
  } else {
    /* Output printed while the work was parked goes out first, as with an
     * answer given at once. */
    distc__output_drain(r->conn);
    if (r->noresult) {
      if (err)
        distc__log(DISTC__LOG_ERROR, "remote_do: %s", msg);
    } else if (err) {
      send_error(r->conn, r->callid, err, msg, where ? DISTC__F_WHERE : 0);
    } else {
      distc__enc e;
      distc__enc_init(&e);
      int rc = distc__enc_value(&e, v);
      if (!rc)
        rc = distc__send_encoded(r->conn, DISTC__F_RESULT, 0, r->callid, &e);
      distc__enc_destroy(&e);
      if (rc && rc != DISTC_EPROCEXIT)
        send_error(r->conn, r->callid, rc, distc_errmsg(), 0);
    }
    distc_value_free(v);
    distc__conn_unref(r->conn);
  }
  free(r);
}

void distc__reply_send(distc__reply *r, int err, distc_value *v,
                       const char *msg) {
  reply_send(r, err, v, msg, false);
}

void distc__reply_send_where(distc__reply *r, int err, distc_value *v,
                             const char *msg) {
  reply_send(r, err, v, msg, true);
}

/* ---- forwarding: a worker's call to another worker, through the master ----
 * Workers are connected to the master only, so the master runs the call for
 * them.  It never waits for the answer on the service thread (the answer may
 * hang on another call the service thread has yet to run): the reply is
 * deferred and sent, from the service thread, once the forwarded call
 * completes. */

static void forward_reply(void *arg) {
  distc__reply *r = arg;
  distc_future *f = r->fwd;
  reply_send(r, f->err, f->err ? NULL : distc_value_ref(f->value), f->errmsg,
             true);
  distc__future_unref(f);
}

/* Runs on whichever thread completed f (often the I/O thread): hand over. */
static void forward_done(distc_future *f, void *arg) {
  (void)f;
  if (distc__service_post(forward_reply, arg) < 0)
    forward_reply(arg);
}

/* [pid, fn, args]: fn(args) on worker pid, answered with its answer. */
DISTC_FUNCTION(distc__forward) {
  int pid = (int)distc_value_int(distc_list_at(args, 0));
  const char *fn = distc_value_str(distc_list_at(args, 1), NULL);
  const distc_value *fargs = distc_list_at(args, 2);
  if (!distc__C.is_master)
    return distc_fail(ctx, "only the master forwards calls");
  if (!fn || distc_value_type(fargs) != DISTC_LIST)
    return distc_fail(ctx, "distc__forward wants [pid, function, args]");
  distc__reply *r = distc__call_defer(ctx);
  if (!r)
    return distc_fail(ctx, "out of memory");
  int rc = distc_remotecall(pid, fn, fargs, &r->fwd);
  if (rc < 0)
    reply_send(r, rc, NULL, distc_errmsg(), true); /* names the process */
  else
    distc__future_on_done(r->fwd, forward_done, r);
  return distc_nil();
}

int distc__remotecall_routed(int pid, const char *fn, const distc_value *args,
                             distc_future **out) {
  distc__cluster *C = &distc__C;
  if (C->is_master || pid == C->myid || pid == DISTC_MASTER ||
      distc__topology == DISTC__TOPO_ALL_TO_ALL)
    return distc_remotecall(pid, fn, args, out);
  distc_value *fa = distc_listv(
      3, distc_int(pid), distc_string(fn ? fn : ""),
      args ? distc_value_ref((distc_value *)args) : distc_list(0));
  if (!fa)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  int rc = distc_remotecall(DISTC_MASTER, "distc__forward", fa, out);
  distc_value_free(fa);
  return rc;
}

/* ---- the public calls ---- */

/* The master deals round robin over the workers; a worker, which can only
 * call the master, runs "anywhere" work itself. */
static int pick_any(void) {
  distc__cluster *C = &distc__C;
  int pid = C->myid;
  if (!C->is_master)
    return pid;
  pthread_mutex_lock(&C->lock);
  if (C->nids > 0)
    pid = C->ids[C->rr++ % C->nids];
  pthread_mutex_unlock(&C->lock);
  return pid;
}

static int call_local(distc_future *f, const char *fn, const distc_value *args,
                      uint8_t flags) {
  int err;
  char *msg = NULL, *full = NULL;
  distc_ctx ctx = {.local = f};
  distc_value *v = invoke(fn, args, &ctx, &err, &msg);
  if (ctx.deferred)
    return 0; /* the function's distc__reply completes f */
  if (err && asprintf(&full, "On worker %d: %s", distc__C.myid,
                      msg ? msg : distc_strerror(err)) < 0)
    full = NULL;
  if (err && (flags & DISTC__F_NORESULT))
    distc__log(DISTC__LOG_ERROR, "remote_do: %s", full ? full : "failed");
  free(msg);
  distc__future_complete(f, err, v, full);
  return 0;
}

static int start_call(int pid, const char *fn, const distc_value *args,
                      uint8_t flags, distc_future **out) {
  distc__cluster *C = &distc__C;
  int rc = 0;
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() before making calls");
  if (!fn || !*fn || strlen(fn) > DISTC__NAME_MAX)
    return distc__seterr(DISTC_EINVAL, "a function name of 1 to %d bytes is "
                                       "needed", DISTC__NAME_MAX);
  if (args && distc_value_type(args) != DISTC_LIST)
    return distc__seterr(DISTC_EINVAL, "arguments must be a list (distc_listv)");
  if (pid == DISTC_ANY)
    pid = pick_any();
  distc_future *f = distc__future_new(pid);
  if (!f)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  if (pid == C->myid) {
    call_local(f, fn, args, flags);
    *out = f;
    return 0;
  }
  /* Every connection comes with a reference: the master's table, a
   * worker's link to its master, or its link to another worker (made on
   * first use: peers.c). */
  distc__conn *c = NULL;
  if (C->is_master) {
    c = distc__conn_get(pid);
  } else if ((rc = distc__peer_link(pid, &c)) < 0) {
    distc__future_unref(f);
    return rc;
  }
  if (!c) {
    distc__future_unref(f);
    pthread_mutex_lock(&C->lock);
    bool left = pid > 0 && pid < C->conncap && C->conns[pid] == DISTC__GONE;
    pthread_mutex_unlock(&C->lock);
    if (left)
      return distc__seterr(DISTC_EPROCEXIT, "On worker %d: process exited "
                                            "(or was removed by "
                                            "distc_rmprocs)", pid);
    return distc__seterr(DISTC_ENOENT,
                         "there is no process %d (see distc_workers())", pid);
  }
  f->callid = atomic_fetch_add(&next_callid, 1);
  if (!(flags & DISTC__F_NORESULT) && (rc = distc__pending_put(c, f)) < 0)
    goto fail;
  distc__enc e;
  distc__enc_init(&e);
  size_t n = strlen(fn);
  msgpack_pack_array(&e.pk, 2);
  msgpack_pack_str(&e.pk, n);
  msgpack_pack_str_body(&e.pk, fn, n);
  if (args)
    rc = distc__enc_value(&e, args);
  else
    rc = msgpack_pack_array(&e.pk, 0) ? DISTC_ENOMEM : 0;
  if (distc__tracing() && !(flags & DISTC__F_NORESULT)) {
    /* Before the frame goes: the answer may complete f at once. */
    f->trace_t0 = distc__trace_now();
    f->trace_out = enc_bytes(&e);
    f->trace_fn = strdup(fn);
  }
  if (flags & DISTC__F_NORESULT)
    distc__stat_add(&c->st.calls_out, 1); /* others: distc__pending_put */
  if (!rc)
    rc = distc__send_encoded(c, DISTC__F_CALL, flags, f->callid, &e);
  distc__enc_destroy(&e);
  if (rc) {
    char *keep = strdup(distc_errmsg());
    distc_future *p = distc__pending_take(c, f->callid);
    distc__future_unref(p);
    /* Only a lost connection is the worker's doing; a message too large
     * to send is the caller's. */
    if (rc == DISTC_EPROCEXIT)
      distc__seterr(rc, "On worker %d: %s", pid, keep ? keep : "");
    else
      distc__seterr(rc, "%s", keep ? keep : distc_strerror(rc));
    free(keep);
    goto fail;
  }
  if (flags & DISTC__F_NORESULT)
    distc__future_complete(f, 0, NULL, NULL);
  distc__conn_unref(c);
  *out = f;
  return 0;
fail:
  distc__conn_unref(c);
  distc__future_unref(f);
  return rc;
}

int distc_remotecall(int pid, const char *fn, const distc_value *args,
                     distc_future **out) {
  if (out)
    *out = NULL;
  if (pid == DISTC_ANY)
    return distc__seterr(DISTC_EINVAL, "remotecall wants a process id; use "
                                       "distc_spawnat(DISTC_ANY, ...) for any");
  return start_call(pid, fn, args, 0, out);
}

int distc_spawnat(int pid, const char *fn, const distc_value *args,
                  distc_future **out) {
  if (out)
    *out = NULL;
  return start_call(pid, fn, args, 0, out);
}

int distc_remotecall_fetch(int pid, const char *fn, const distc_value *args,
                           distc_value **result) {
  if (result)
    *result = NULL;
  distc_future *f;
  int rc = distc_remotecall(pid, fn, args, &f);
  if (rc)
    return rc;
  rc = distc_fetch(f, result);
  distc__future_unref(f);
  return rc;
}

int distc_remotecall_wait(int pid, const char *fn, const distc_value *args) {
  return distc_remotecall_fetch(pid, fn, args, NULL);
}

int distc_remote_do(int pid, const char *fn, const distc_value *args) {
  distc_future *f;
  int rc = start_call(pid, fn, args, DISTC__F_NORESULT, &f);
  if (!rc)
    distc__future_unref(f);
  return rc;
}

static int gather(distc_future **fs, size_t n) {
  int first = 0;
  char *all = NULL;
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    int rc = distc_wait(fs[i]);
    if (!rc)
      continue;
    if (!first)
      first = rc;
    const char *m = distc_errmsg();
    size_t k = strlen(m);
    char *p = realloc(all, len + k + 2);
    if (!p)
      continue;
    all = p;
    if (len)
      all[len++] = '\n';
    memcpy(all + len, m, k + 1);
    len += k;
  }
  if (first)
    distc__seterr(first, "%s", all ? all : distc_strerror(first));
  free(all);
  return first;
}

int distc__gather(distc_future **fs, size_t n) { return gather(fs, n); }

int distc_everywhere(const char *fn, const distc_value *args) {
  distc__cluster *C = &distc__C;
  if (!C->initialised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  /* From a worker: the master and the workers it knew of at joining
   * (distc_workers() there), straight over links made on first use. */
  int n = distc_workers(NULL, 0) + (C->is_master ? 0 : 1), rc = 0;
  int *ids = calloc((size_t)n + 1, sizeof *ids);
  distc_future **fs = calloc((size_t)n + 1, sizeof *fs);
  size_t nf = 0;
  if (!ids || !fs) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto out;
  }
  /* Workers may join or leave meanwhile: take what is there now. */
  int now = C->is_master ? 0 : 1;
  if (!C->is_master)
    ids[0] = DISTC_MASTER;
  now += distc_workers(ids + now, n - now);
  if (now < n)
    n = now;
  /* The master runs last so the workers are already busy meanwhile.  A
   * worker that cannot be reached gets a failed future of its own, so its
   * error is gathered with the others. */
  for (int i = 0; i <= n; i++) {
    int pid = i < n ? ids[i] : C->myid;
    if (i < n && pid == C->myid)
      continue;
    int e = distc_remotecall(pid, fn, args, &fs[nf]);
    if (e < 0) {
      fs[nf] = distc__future_new(pid);
      if (!fs[nf])
        continue;
      distc__future_complete(fs[nf], e, NULL, strdup(distc_errmsg()));
    }
    nf++;
  }
  rc = gather(fs, nf);
out:
  for (size_t i = 0; i < nf; i++)
    distc__future_unref(fs[i]);
  free(fs);
  free(ids);
  return rc;
}

int distc_load_everywhere(const char *path) {
  if (!path)
    return distc__seterr(DISTC_EINVAL, "distc_load_everywhere: no path");
  distc_value *args = distc_listv(1, distc_string(path));
  int rc = distc_everywhere("distc__load", args);
  distc_value_free(args);
  if (rc == DISTC_EREMOTE)
    rc = DISTC_ELOAD;
  return rc;
}

/* pmap.c — parallel map: the caller's side, which hands out batches of
 * items, collects their results in input order, and deals with failures.
 *
 * Scheduling.  Every participating process has a slot; the least loaded
 * slot with room takes the next batch, so fast workers take more, and
 * equally loaded slots take turns.  A batch
 * is one call of the worker-side batch function (pmap_batch.c), which
 * reports how long its items took to run.  From that the map learns the
 * time per item and, unless the caller fixed the batch size, sizes batches
 * to about TARGET_NS of work, so a round trip is amortised; the size grows
 * at most RAMP-fold per measurement (the first batches have one item, so
 * slow items are never lumped together), and is capped by the guided rule
 * (what is left over twice the number of workers), so batches shrink
 * towards the end and no worker holds a long batch while others idle.
 *
 * Pipelining.  When batches are short next to a round trip, a slot keeps
 * several in flight (its depth) so its worker never waits for the master,
 * and is refilled only once half of them are answered: the master then
 * wakes and writes once per several answers, and the batches for one
 * worker leave corked into one segment (the worker corks its answers the
 * same way, see worker.c).  Batches that outlast many round trips go one
 * at a time, so load balancing stays exact.
 *
 * Failures.  An item's error comes back on its own (the batch still
 * answers for its other items): on_error sees it first and may replace it;
 * else it is retried after a delay if the options say so, on another slot
 * than the one that failed it (item_failed, leave_retry); else it is
 * replaced by error_value, else it fails the map.  A worker that exits
 * fails its calls with DISTC_EPROCEXIT: its slot closes and its unfinished
 * items go back to the queue for the others, at no cost in retries.  A
 * batch too large for a frame goes again one item at a time.
 *
 * Copies.  A batch is sent from a borrowed view of the input (or, for runs
 * of ints or doubles, a packed array: next_range); results are moved, not
 * referenced, out of the decoded answers into the result list. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "parallel.h"

#define TARGET_NS 1e6        /* work per automatic batch */
#define LATENCY_NS 50e3      /* a loaded round trip, which pipelining hides */
#define RAMP 8               /* automatic batch growth per measurement */
#define MAX_DEPTH 32         /* batches in flight per worker */
#define BATCH_BYTES (4u << 20) /* input per automatic batch, one item at least */

typedef struct range {
  size_t first, n;
  double not_before; /* distc__now() scale; 0: at once */
  int avoid;         /* a retry: the slot that failed it last; else -1 */
  distc_type packed; /* DISTC_INT / DOUBLE: the items are packed in the */
  size_t packed_at;  /* dispatch's scratch from here; else DISTC_NIL */
} range;

typedef struct slot {
  int pid;
  distc__conn *conn; /* NULL for this process */
  int inflight;
  int room, nplan;   /* dispatch's bookkeeping */
  bool dead, has_arg;
} slot;

typedef struct planned {
  int slot;
  range r;
} planned;

typedef struct task {
  distc__wsnode node; /* first: a node is its task */
  int slot;
  size_t first, n;
} task;

typedef struct map {
  const char *fn;
  const distc_value *in;
  bool is_array;
  size_t n;
  distc_pmap_opts o;
  int64_t mapid; /* 0 when there is no extra argument */
  distc_value *vmapid, *vfn;

  slot *slots;
  int nslots, nlive;
  planned *plan;       /* dispatch's plan: up to MAX_DEPTH per slot */
  uint64_t *scratch;   /* one dispatch's packed items (see next_range) */
  size_t scratch_used, scratch_cap;
  distc__waitset ws;

  size_t next;             /* first item never handed out */
  range *q;                /* items handed back, in order */
  size_t qn, qcap;
  distc_value **res;       /* the result list's items, by index */
  size_t ndone;
  int *attempts;           /* by index, when retries are on */
  uint64_t *failed_on;     /* by index, with attempts: slots (bit s % 64)
                              that failed the item */
  int rr;                  /* the slot that takes the next tie */
  bool elastic;            /* workers that join mid-map take part */
  unsigned gen;            /* distc__members_gen() when last looked */

  double t_item;           /* ns per item on a worker; 0: not measured */
  size_t largest;          /* largest batch measured */
  int rc;                  /* the error that stops the map */
  char *msg;
  distc__progress bar;
} map;

static _Atomic int64_t next_mapid = 1;
static _Atomic int next_rr; /* the slot a map's first tie goes to */

static void fail_map(map *m, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_map(map *m, int rc, const char *fmt, ...) {
  if (m->rc)
    return;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&m->msg, fmt, ap) < 0)
    m->msg = NULL;
  va_end(ap);
  m->rc = rc;
}

/* ---- the queue of items handed back ---- */

static int push_range(map *m, size_t first, size_t n, double not_before,
                      int avoid, bool front) {
  if (m->qn == m->qcap) {
    size_t cap = m->qcap ? m->qcap * 2 : 16;
    range *q = realloc(m->q, cap * sizeof *q);
    if (!q) {
      fail_map(m, DISTC_ENOMEM, "pmap: out of memory requeueing items");
      return DISTC_ENOMEM;
    }
    m->q = q;
    m->qcap = cap;
  }
  range r = {first, n, not_before, avoid, DISTC_NIL, 0};
  if (front) {
    memmove(m->q + 1, m->q, m->qn * sizeof *m->q);
    m->q[0] = r;
  } else {
    m->q[m->qn] = r;
  }
  m->qn++;
  return 0;
}

/* The earliest time a waiting retry may go (0: none waits). */
static double next_retry_time(const map *m) {
  double t = 0;
  for (size_t i = 0; i < m->qn; i++)
    if (m->q[i].not_before > 0 && (t == 0 || m->q[i].not_before < t))
      t = m->q[i].not_before;
  return t;
}

/* Whether a handed-back item may go now. */
static bool ready_now(const map *m) {
  double now = distc__now();
  for (size_t i = 0; i < m->qn; i++)
    if (m->q[i].not_before <= now)
      return true;
  return false;
}

static size_t undispatched(const map *m) {
  size_t k = m->n - m->next;
  for (size_t i = 0; i < m->qn; i++)
    k += m->q[i].n;
  return k;
}

/* ---- batch sizing ---- */

static size_t value_bytes(const distc_value *v, int depth) {
  switch (v->type) {
  case DISTC_STRING:
  case DISTC_BYTES:
    return v->u.s.n + 5;
  case DISTC_ARRAY:
    return v->u.a.len * distc_dtype_size(v->u.a.dtype) + 16;
  case DISTC_LIST: {
    size_t b = 5;
    for (size_t i = 0; i < v->u.l.n; i++)
      b += depth < 4 ? value_bytes(v->u.l.items[i], depth + 1) : 9;
    return b;
  }
  default:
    return 9;
  }
}

static size_t batch_size(const map *m) {
  if (m->o.batch_size)
    return m->o.batch_size;
  size_t b = 1;
  if (m->t_item > 0) {
    double want = TARGET_NS / m->t_item;
    double ramp = (double)RAMP * (double)(m->largest ? m->largest : 1);
    b = want < 1 ? 1 : want > ramp ? (size_t)ramp : (size_t)want;
  }
  size_t left = undispatched(m), live = m->nlive > 0 ? (size_t)m->nlive : 1;
  size_t guided = (left + 2 * live - 1) / (2 * live);
  if (b > guided)
    b = guided;
  return b ? b : 1;
}

/* Batches a slot may have in flight: enough to hide a round trip behind
 * the work already queued there, one when a batch outlasts many round
 * trips. */
static int depth(const map *m, size_t b) {
  if (m->t_item <= 0)
    return 2;
  double tb = m->t_item * (double)b;
  if (tb >= 50 * LATENCY_NS)
    return 1;
  /* Refilled at half depth, a slot then still holds a round trip's work. */
  double d = 2 + 2 * LATENCY_NS / (tb > 1 ? tb : 1);
  return d > MAX_DEPTH ? MAX_DEPTH : (int)d;
}

/* Room for n packed items in the scratch, or NULL. */
static uint64_t *scratch_reserve(map *m, size_t n) {
  if (m->scratch_used + n > m->scratch_cap) {
    size_t cap = (m->scratch_used + n) * 2;
    uint64_t *p = realloc(m->scratch, cap * sizeof *p);
    if (!p)
      return NULL;
    m->scratch = p;
    m->scratch_cap = cap;
  }
  return m->scratch + m->scratch_used;
}

/* Whether slot s should leave retry r to another slot.  Julia's pool
 * hands a retry to the next free worker, so a worker that fails an item
 * (a broken host, a missing file) does not get it back while others could
 * run it: never the slot that failed it last while another slot is live
 * (the retry waits for one to have room), and not a slot that failed it
 * before while one that never did has room in this dispatch. */
static bool leave_retry(const map *m, const range *r, int s) {
  if (r->avoid < 0)
    return false;
  if (r->avoid == s)
    return m->nlive > 1;
  uint64_t failed = m->failed_on[r->first];
  if (!(failed >> (s % 64) & 1))
    return false;
  for (int t = 0; t < m->nslots; t++) {
    const slot *sl = &m->slots[t];
    if (t != s && !sl->dead && sl->nplan < sl->room &&
        !(failed >> (t % 64) & 1))
      return true;
  }
  return false;
}

/* Takes up to want items that may go now to slot s: handed-back items
 * first, but a retry goes elsewhere when it should (leave_retry).
 *
 * A run of fresh list items that are all ints, or all doubles, is packed
 * into the dispatch's scratch as it is measured, in the same pass: it then
 * travels as one typed array, with nothing to encode here per item and
 * nothing to decode there, and the worker hands fn each element as the
 * same int or double value, so fn sees no difference. */
static bool next_range(map *m, size_t want, int s, range *out) {
  double now = 0;
  for (size_t i = 0; i < m->qn; i++) {
    range *r = &m->q[i];
    if (r->not_before > 0) {
      if (now == 0)
        now = distc__now();
      if (r->not_before > now)
        continue;
    }
    if (leave_retry(m, r, s))
      continue;
    *out = (range){r->first, r->n < want ? r->n : want, 0, -1, DISTC_NIL, 0};
    r->first += out->n;
    r->n -= out->n;
    if (r->n == 0) {
      memmove(r, r + 1, (m->qn - i - 1) * sizeof *r);
      m->qn--;
    }
    return true;
  }
  if (m->next >= m->n)
    return false;
  size_t k = m->n - m->next < want ? m->n - m->next : want;
  bool cap = !m->o.batch_size; /* large items travel a few at a time */
  *out = (range){m->next, k, 0, -1, DISTC_NIL, 0};
  if (m->is_array) {
    size_t es = distc_dtype_size(m->in->u.a.dtype);
    if (cap && k * es > BATCH_BYTES)
      out->n = BATCH_BYTES / es ? BATCH_BYTES / es : 1;
  } else {
    distc_value *const *it = m->in->u.l.items + m->next;
    uint64_t *dst = k >= 2 ? scratch_reserve(m, k) : NULL;
    distc_type pt = DISTC_NIL;
    size_t bytes = 0, j = 0;
    for (; j < k; j++) {
      const distc_value *v = it[j];
      bool scalar = v->type == DISTC_INT || v->type == DISTC_DOUBLE;
      if (cap) {
        bytes += scalar ? 9 : value_bytes(v, 0);
        if (bytes > BATCH_BYTES && j > 0)
          break;
      }
      if (dst && scalar && (j == 0 || v->type == pt)) {
        pt = v->type;
        memcpy(&dst[j], &v->u, sizeof dst[j]); /* i and d share the bits */
      } else {
        dst = NULL;
      }
    }
    out->n = j;
    if (dst && j >= 2) {
      out->packed = pt;
      out->packed_at = m->scratch_used;
      m->scratch_used += j;
    }
  }
  m->next += out->n;
  return true;
}

/* ---- sending ---- */

static void slot_lost(map *m, int s) {
  slot *sl = &m->slots[s];
  if (sl->dead)
    return;
  sl->dead = true;
  m->nlive--;
  distc__conn_unref(sl->conn);
  sl->conn = NULL;
}

static void item_failed(map *m, int s, size_t i, int err, const char *msg);

/* Sends items r to slot s as one call of the batch function. */
static void send_batch(map *m, int s, range r) {
  slot *sl = &m->slots[s];
  /* Borrowed views of the input and of the argument list: the call only
   * encodes them (or, here, runs on them) before returning. */
  distc_value items, args;
  memset(&items, 0, sizeof items);
  memset(&args, 0, sizeof args);
  atomic_init(&items.refs, 1);
  atomic_init(&args.refs, 1);
  if (m->is_array) {
    const distc_value *a = m->in;
    size_t es = distc_dtype_size(a->u.a.dtype);
    items.type = DISTC_ARRAY;
    items.u.a.dtype = a->u.a.dtype;
    items.u.a.ndim = 1;
    items.u.a.dims[0] = items.u.a.len = r.n;
    items.u.a.data = (char *)a->u.a.data + r.first * es;
  } else if (r.packed != DISTC_NIL) {
    items.type = DISTC_ARRAY;
    items.u.a.dtype = r.packed == DISTC_INT ? DISTC_I64 : DISTC_F64;
    items.u.a.ndim = 1;
    items.u.a.dims[0] = items.u.a.len = r.n;
    items.u.a.data = m->scratch + r.packed_at;
  } else {
    items.type = DISTC_LIST;
    items.u.l.items = m->in->u.l.items + r.first;
    items.u.l.n = items.u.l.cap = r.n;
  }
  bool send_arg = m->o.arg && !sl->has_arg;
  distc_value *argv[4] = {m->vmapid, m->vfn, &items, (distc_value *)m->o.arg};
  args.type = DISTC_LIST;
  args.u.l.items = argv;
  args.u.l.n = args.u.l.cap = send_arg ? 4 : 3;

  task *t = calloc(1, sizeof *t);
  if (!t) {
    push_range(m, r.first, r.n, 0, -1, true);
    fail_map(m, DISTC_ENOMEM, "pmap: out of memory");
    return;
  }
  int rc = distc_remotecall(sl->pid, DISTC__BATCH_FN, &args, &t->node.f);
  if (rc < 0) {
    free(t);
    if (rc == DISTC_ENOENT || rc == DISTC_EPROCEXIT) {
      slot_lost(m, s);
      push_range(m, r.first, r.n, 0, -1, true);
    } else if (r.n > 1) {
      /* Too big to send as one, say: one at a time then. */
      for (size_t j = r.n; j-- > 0;)
        push_range(m, r.first + j, 1, 0, -1, true);
    } else {
      char *why = strdup(distc_errmsg()); /* on_error may make calls */
      item_failed(m, s, r.first, rc, why ? why : distc_strerror(rc));
      free(why);
    }
    return;
  }
  sl->has_arg |= send_arg;
  sl->inflight++;
  t->node.conn = sl->conn;
  t->slot = s;
  t->first = r.first;
  t->n = r.n;
  distc__waitset_add(&m->ws, &t->node);
}

static void cork(distc__conn *c, bool on) {
  int v = on;
  setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &v, sizeof v);
}

/* Hands out batches: slots at or below the low-water mark are filled up to
 * the depth, the least loaded first, so the master wakes up and writes once
 * per several answers rather than once per answer.  Equally loaded slots
 * take turns (round robin, carried from map to map), so idle workers share
 * the work as Julia's pool shares it, rather than the first one taking
 * every lone batch.  Each slot's batches then go out together, corked into
 * one segment when there are several. */
static void dispatch(map *m) {
  if (m->rc)
    return;
  m->scratch_used = 0; /* the previous dispatch's sends are all done */
  int d = depth(m, batch_size(m)), low = d >= 4 ? d / 2 : d - 1, nplan = 0;
  for (int s = 0; s < m->nslots; s++) {
    slot *sl = &m->slots[s];
    sl->room = !sl->dead && sl->inflight <= low ? d - sl->inflight : 0;
    sl->nplan = 0;
  }
  for (;;) {
    int best = -1;
    for (int k = 0; k < m->nslots; k++) {
      int s = (m->rr + k) % m->nslots;
      const slot *sl = &m->slots[s];
      if (sl->nplan < sl->room &&
          (best < 0 || sl->inflight + sl->nplan <
                           m->slots[best].inflight + m->slots[best].nplan))
        best = s;
    }
    if (best < 0)
      break;
    range r;
    if (!next_range(m, batch_size(m), best, &r)) {
      /* Nothing left, or only retries this slot should leave alone. */
      m->slots[best].room = m->slots[best].nplan;
      continue;
    }
    m->plan[nplan].slot = best;
    m->plan[nplan++].r = r;
    m->slots[best].nplan++;
    m->rr = (best + 1) % m->nslots;
  }
  /* Remote slots first: a batch for this process runs right here, and the
   * workers should not wait for it to be sent their own. */
  for (int i = 0; i < 2 * m->nslots; i++) {
    int s = i % m->nslots;
    slot *sl = &m->slots[s];
    if (!sl->nplan || (i < m->nslots) != (sl->pid != distc__C.myid))
      continue;
    distc__conn *c = sl->nplan > 1 ? sl->conn : NULL;
    if (c) {
      atomic_fetch_add(&c->refs, 1); /* the slot may be lost meanwhile */
      cork(c, true);
    }
    for (int k = 0; k < nplan; k++)
      if (m->plan[k].slot == s)
        send_batch(m, s, m->plan[k].r);
    if (c) {
      cork(c, false);
      distc__conn_unref(c);
    }
  }
}

/* ---- results ---- */

static double retry_delay(const map *m, int attempt) {
  double d = m->o.retry_delay_s;
  if (d <= 0)
    return 0;
  double f = m->o.retry_factor > 1 ? m->o.retry_factor : 1;
  for (int k = 1; k < attempt; k++)
    d *= f;
  if (m->o.retry_max_delay_s > 0 && d > m->o.retry_max_delay_s)
    d = m->o.retry_max_delay_s;
  return d;
}

/* Item i failed on slot s.  As in Julia, on_error sees the failure first:
 * a value from it ends the item; NULL (a rethrow) hands the failure to the
 * retry policy, and when that declines, fails the map.  error_value, a
 * stand-in that needs no hook, applies only once no retry is left. */
static void item_failed(map *m, int s, size_t i, int err, const char *msg) {
  if (m->rc)
    return;
  if (m->o.on_error) {
    distc_value *item = m->is_array ? distc__array_item(m->in, i)
                                    : distc_value_ref(m->in->u.l.items[i]);
    distc_value *v = m->o.on_error(i, item, err, msg, m->o.on_error_arg);
    distc_value_free(item);
    if (v) {
      m->res[i] = v;
      m->ndone++;
      return;
    }
  }
  if (m->attempts) {
    int a = ++m->attempts[i];
    if (a <= m->o.retries && err != DISTC_EINTERRUPTED &&
        (!m->o.retry_check ||
         m->o.retry_check(i, err, msg, a, m->o.retry_arg))) {
      double d = retry_delay(m, a);
      m->failed_on[i] |= (uint64_t)1 << (s % 64);
      push_range(m, i, 1, d > 0 ? distc__now() + d * 1e9 : 0, s, false);
      return;
    }
  }
  if (!m->o.on_error && m->o.error_value) {
    m->res[i] = distc_value_ref((distc_value *)m->o.error_value);
    m->ndone++;
    return;
  }
  fail_map(m, err, "pmap: item %zu failed: %s", i, msg);
}

static void measured(map *m, size_t n, int64_t elapsed_ns) {
  double per = (double)elapsed_ns / (double)n;
  if (per < 1)
    per = 1;
  m->t_item = m->t_item > 0 ? 0.7 * m->t_item + 0.3 * per : per;
  if (n > m->largest)
    m->largest = n;
}

static void completed(map *m, task *t) {
  distc_future *f = t->node.f;
  slot *sl = &m->slots[t->slot];
  sl->inflight--;
  if (f->err == DISTC_EPROCEXIT) {
    slot_lost(m, t->slot);
    push_range(m, t->first, t->n, 0, -1, true);
    return;
  }
  if (f->err) {
    if (t->n > 1) {
      for (size_t j = t->n; j-- > 0;)
        push_range(m, t->first + j, 1, 0, -1, true);
    } else {
      item_failed(m, t->slot, t->first, f->err,
                  f->errmsg ? f->errmsg : "failed");
    }
    return;
  }
  distc_value *v = f->value;
  distc_value *results = distc_list_at(v, 0), *errors = distc_list_at(v, 1);
  bool typed = distc_value_type(results) == DISTC_ARRAY;
  size_t got = typed ? distc_array_len(results) : distc_list_len(results);
  if (distc_list_len(v) != 3 || got != t->n ||
      (typed && results->u.a.dtype != DISTC_I64 &&
       results->u.a.dtype != DISTC_F64) ||
      (errors && errors->type != DISTC_NIL &&
       (typed || errors->type != DISTC_LIST))) {
    fail_map(m, DISTC_EPROTO, "pmap: worker %d answered a batch with a "
                              "malformed value", sl->pid);
    return;
  }
  measured(m, t->n, distc_value_int(distc_list_at(v, 2)));
  if (typed) {
    for (size_t j = 0; j < t->n; j++) {
      distc_value *r = distc__array_item(results, j);
      if (!r) {
        fail_map(m, DISTC_ENOMEM, "pmap: out of memory");
        return;
      }
      m->res[t->first + j] = r;
    }
    m->ndone += t->n;
    return;
  }
  size_t nerr = distc_list_len(errors);
  for (size_t k = 0; k < nerr; k++) {
    const distc_value *e = distc_list_at(errors, k);
    int64_t pos = distc_value_int(distc_list_at(e, 0));
    int code = (int)distc_value_int(distc_list_at(e, 1));
    const char *text = distc_value_str(distc_list_at(e, 2), NULL);
    if (pos < 0 || (size_t)pos >= t->n) {
      fail_map(m, DISTC_EPROTO, "pmap: worker %d answered a batch with a "
                                "malformed error", sl->pid);
      return;
    }
    if (code >= 0 || code <= DISTC__ERR_FIRST || code >= DISTC__ERR_END)
      code = DISTC_EREMOTE;
    /* Taken out of the answer, so the item reads as done below. */
    distc_value_free(results->u.l.items[pos]);
    results->u.l.items[pos] = NULL;
    char *msg = NULL;
    if (asprintf(&msg, "On worker %d: %s", sl->pid, text ? text : "failed") <
        0)
      msg = NULL;
    item_failed(m, t->slot, t->first + (size_t)pos, code,
                msg ? msg : "failed");
    free(msg);
  }
  for (size_t j = 0; j < t->n; j++) {
    distc_value *r = results->u.l.items[j];
    if (!r)
      continue;
    m->res[t->first + j] = r; /* moved: the answer is ours alone */
    results->u.l.items[j] = distc_nil();
    m->ndone++;
  }
  for (size_t j = 0; j < t->n; j++)
    if (!results->u.l.items[j])
      results->u.l.items[j] = distc_nil();
}

/* ---- the map ---- */

static void release_task(task *t) {
  distc__future_unref(t->node.f);
  free(t);
}

/* The members of the map's pool, or every worker: both report how many
 * there are, so the list grows until it holds them all (workers may join
 * in between). */
static int list_ids(const map *m, int **ids) {
  int cap = 64;
  for (;;) {
    int *p = malloc((size_t)cap * sizeof *p);
    if (p == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    int n = m->o.pool ? distc_pool_members(m->o.pool, p, cap)
                      : distc_workers(p, cap);
    if (n <= cap) {
      *ids = p;
      return n;
    }
    free(p);
    cap = n;
  }
}

/* Picks the participating processes. */
static int open_slots(map *m) {
  int *ids = NULL, n;
  m->gen = distc__members_gen(); /* before the list: see take_newcomers */
  if (m->o.local || !distc__C.is_master) {
    n = 1;
    if ((ids = malloc(sizeof *ids)) == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    ids[0] = distc__C.myid;
  } else {
    if ((n = list_ids(m, &ids)) < 0)
      return n;
    if (n == 0 && m->o.pool) {
      free(ids);
      return distc__seterr(DISTC_ENOENT, "pmap: the pool has no live member "
                                         "left (its workers exited)");
    }
  }
  m->slots = calloc((size_t)n, sizeof *m->slots);
  m->plan = calloc((size_t)n * MAX_DEPTH, sizeof *m->plan);
  if (!m->slots || !m->plan) {
    free(ids);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    m->slots[i].pid = ids[i];
    if (ids[i] != distc__C.myid)
      m->slots[i].conn = distc__conn_get(ids[i]);
  }
  free(ids);
  m->nslots = m->nlive = n;
  m->rr = n ? atomic_load(&next_rr) % n : 0;
  m->elastic = !m->o.local && distc__C.is_master &&
               (!m->o.pool || distc__pool_follows(m->o.pool));
  return 0;
}

/* Gives a slot to every worker that joined since the last look, for a map
 * over every worker or a default pool (Julia's default_worker_pool takes
 * in workers an ElasticManager adds).  Slots are only ever appended, so
 * the indices tasks and retries hold stay valid; ids are never reused, so
 * a slot that closed never comes back. */
static void take_newcomers(map *m) {
  unsigned g = distc__members_gen();
  if (!m->elastic || g == m->gen)
    return;
  m->gen = g;
  int room = distc_workers(NULL, 0) + 1;
  int *ids = malloc(sizeof *ids * (size_t)room), n;
  if (!ids)
    return; /* the map goes on with the workers it has */
  if (m->o.pool)
    n = distc_pool_members(m->o.pool, ids, room);
  else
    n = distc_workers(ids, room);
  if (n > room)
    n = room;
  for (int i = 0; i < n; i++) {
    bool known = ids[i] == distc__C.myid;
    for (int s = 0; s < m->nslots && !known; s++)
      known = m->slots[s].pid == ids[i];
    if (known)
      continue;
    distc__conn *c = distc__conn_get(ids[i]);
    if (!c)
      continue; /* left again already */
    slot *sl = realloc(m->slots, sizeof *sl * (size_t)(m->nslots + 1));
    if (sl)
      m->slots = sl;
    planned *pl = sl ? realloc(m->plan, sizeof *pl * (size_t)(m->nslots + 1) *
                                            MAX_DEPTH)
                     : NULL;
    if (pl)
      m->plan = pl;
    if (!pl) {
      distc__conn_unref(c);
      break;
    }
    m->slots[m->nslots] = (slot){.pid = ids[i], .conn = c};
    m->nslots++;
    m->nlive++;
    distc__log(DISTC__LOG_DEBUG, "pmap: worker %d joined the map", ids[i]);
  }
  free(ids);
}

static int busy_workers(const map *m) {
  int k = 0;
  for (int s = 0; s < m->nslots; s++)
    k += m->slots[s].inflight > 0 && m->slots[s].conn != NULL;
  return k;
}

static void run(map *m) {
  while (m->ndone < m->n && !m->rc) {
    take_newcomers(m);
    dispatch(m);
    if (m->rc)
      break;
    /* A retry whose time has come waits for room, that is, an answer. */
    double deadline = next_retry_time(m), now = distc__now();
    if (deadline > 0 && deadline <= now)
      deadline = 0;
    if (m->ws.outstanding == 0) {
      if (m->nlive == 0) {
        fail_map(m, DISTC_EPROCEXIT,
                 "pmap: no worker left to run the remaining %zu of %zu "
                 "items (every worker of the map exited)",
                 m->n - m->ndone, m->n);
        break;
      }
      if (ready_now(m))
        continue; /* a send failed and handed its items back */
      if (deadline == 0) {
        fail_map(m, DISTC_EPROTO, "pmap: internal error: %zu items neither "
                                  "done nor scheduled", m->n - m->ndone);
        break;
      }
      double left = deadline - now;
      if (left > 0) {
        long long ns = (long long)left;
        struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    distc__wsnode *node =
        distc__waitset_next(&m->ws, busy_workers(m), deadline);
    /* Sending and the caller's callbacks may block: the I/O thread reads
     * meanwhile.  Every answer already in is taken before sending more. */
    distc__waitset_release(&m->ws);
    for (; node; node = distc__waitset_take(&m->ws)) {
      completed(m, (task *)node);
      release_task((task *)node);
    }
    distc__progress_update(&m->bar, m->ndone);
  }
  /* Batches still running finish before the map returns: their answers
   * point back into it. */
  distc__wsnode *node;
  while ((node = distc__waitset_next(&m->ws, busy_workers(m), 0)))
    release_task((task *)node);
}

static void close_map(map *m) {
  if (m->nslots > 0)
    atomic_store(&next_rr, m->rr);
  for (int s = 0; s < m->nslots; s++) {
    slot *sl = &m->slots[s];
    if (!sl->dead && sl->has_arg) {
      distc_value *a = distc_listv(1, distc_int(m->mapid));
      if (a)
        distc_remote_do(sl->pid, DISTC__BATCH_END_FN, a);
      distc_value_free(a);
    }
    distc__conn_unref(sl->conn);
  }
  free(m->slots);
  free(m->plan);
  free(m->scratch);
  free(m->q);
  free(m->attempts);
  free(m->failed_on);
  distc_value_free(m->vmapid);
  distc_value_free(m->vfn);
  distc__waitset_destroy(&m->ws);
}

int distc_pmap(const char *fn, const distc_value *inputs,
               const distc_pmap_opts *opts, distc_value **results) {
  if (results)
    *results = NULL;
  distc__cluster *C = &distc__C;
  distc_pmap_opts none = {0};
  const distc_pmap_opts *o = opts ? opts : &none;
  if (!fn || !results)
    return distc__seterr(DISTC_EINVAL, "distc_pmap wants a function name and "
                                       "somewhere to put the results");
  distc_type t = distc_value_type(inputs);
  if (t != DISTC_LIST && t != DISTC_ARRAY)
    return distc__seterr(DISTC_EINVAL, "distc_pmap maps over a list or an "
                                       "array, got a value of type %d", t);
  if (o->retries < 0)
    return distc__seterr(DISTC_EINVAL, "pmap retries must be >= 0, got %d",
                         o->retries);
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() before distc_pmap");
  /* Its batches would go from this worker to the others. */
  if (!C->is_master && !o->local)
    return distc__seterr(DISTC_ENOTMASTER,
                         "pmap from worker %d: pmap is driven by the master "
                         "only in this version; call pmap on the master, set "
                         "opts.local to run the items on this worker, or "
                         "call other workers with distc_remotecall",
                         C->myid);

  map m;
  memset(&m, 0, sizeof m);
  m.fn = fn;
  m.in = inputs;
  m.is_array = t == DISTC_ARRAY;
  m.n = m.is_array ? inputs->u.a.len : inputs->u.l.n;
  m.o = *o;
  distc__waitset_init(&m.ws);
  *results = NULL;
  int rc;
  distc_value *out = distc_list(m.n);
  if (!out) {
    rc = DISTC_ENOMEM;
    goto close;
  }
  if (m.n == 0) {
    *results = out;
    rc = 0;
    goto close;
  }
  m.mapid = o->arg ? atomic_fetch_add(&next_mapid, 1) : 0;
  m.vmapid = distc_int(m.mapid);
  m.vfn = distc_string(fn);
  /* Results go straight into the list, which starts out full of the
   * immortal nil; each index is written once. */
  m.res = out->u.l.items;
  if (o->retries > 0) {
    m.attempts = calloc(m.n, sizeof *m.attempts);
    m.failed_on = calloc(m.n, sizeof *m.failed_on);
  }
  if (!m.vmapid || !m.vfn ||
      (o->retries > 0 && (!m.attempts || !m.failed_on))) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto free_out;
  }
  if ((rc = open_slots(&m)) < 0)
    goto free_out;

  distc__progress_start(&m.bar, "pmap", m.n, o->no_progress);
  run(&m);
  distc__progress_end(&m.bar, m.ndone);
  if (m.rc) {
    rc = distc__seterr(m.rc, "%s", m.msg ? m.msg : distc_strerror(m.rc));
    goto free_out;
  }
  *results = out;
  out = NULL;
  rc = 0;
free_out:
  distc_value_free(out); /* with whatever results it holds */
close:
  close_map(&m);
  free(m.msg);
  return rc;
}

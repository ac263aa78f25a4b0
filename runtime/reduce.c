/* reduce.c — distributed loops: the range [lo, hi) split into one
 * contiguous chunk per worker, one call per chunk that handles the whole
 * chunk (so there is no message per iteration), and either a reduction of
 * the partial results on the caller's side (Julia's `@distributed (op)
 * for`) or nothing but waiting (`@distributed for`). */
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

struct forloop;

typedef struct chunk {
  distc__wsnode node; /* first: a node is its chunk */
  struct forloop *loop; /* the loop without a reducer it belongs to */
  int index, pid;
  int64_t lo, hi;
  int err;            /* could not be started */
  char *msg;
} chunk;

static int check_loop(const char *what, const char *fn) {
  distc__cluster *C = &distc__C;
  if (!fn)
    return distc__seterr(DISTC_EINVAL, "%s: no function name given", what);
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() before %s", what);
  /* Its chunks would go from this worker to the others. */
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER,
                         "%s from worker %d: reductions are driven by the "
                         "master only in this version; call %s on the master",
                         what, C->myid, what);
  return 0;
}

/* Splits [lo, hi) (not empty) over the workers: chunk k gets the k-th
 * share, sizes differing by one at most.  *out receives calloc'd chunks. */
static int split(int64_t lo, int64_t hi, chunk **out, int *nout) {
  /* However many workers there are (one may join between the two calls;
   * distc_workers never writes past its max). */
  int nw = distc_workers(NULL, 0);
  int *ids = calloc((size_t)nw, sizeof *ids);
  if (!ids)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  int now = distc_workers(ids, nw);
  nw = now < nw ? now : nw;
  uint64_t len = (uint64_t)hi - (uint64_t)lo;
  int n = (uint64_t)nw < len ? nw : (int)len;
  chunk *c = calloc((size_t)n, sizeof *c);
  if (!c) {
    free(ids);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  uint64_t base = len / (uint64_t)n, extra = len % (uint64_t)n, at = 0;
  for (int k = 0; k < n; k++) {
    uint64_t size = base + ((uint64_t)k < extra);
    c[k].index = k;
    c[k].pid = ids[k];
    c[k].lo = (int64_t)((uint64_t)lo + at);
    c[k].hi = (int64_t)((uint64_t)lo + at + size);
    at += size;
  }
  free(ids);
  *out = c;
  *nout = n;
  return 0;
}

/* Starts chunk c's call; a failure to start is kept in the chunk. */
static void start_chunk(chunk *c, const char *fn, const distc_value *arg) {
  distc_value *args = arg ? distc_listv(3, distc_int(c->lo), distc_int(c->hi),
                                        distc_value_ref((distc_value *)arg))
                          : distc_listv(2, distc_int(c->lo), distc_int(c->hi));
  int rc = args ? distc_remotecall(c->pid, fn, args, &c->node.f)
                : distc__seterr(DISTC_ENOMEM, "out of memory");
  distc_value_free(args);
  if (rc < 0) {
    c->node.f = NULL;
    c->err = rc;
    c->msg = strdup(distc_errmsg());
  }
}

/* Appends chunk c's failure to *all ("\n"-separated). */
static void note_failure(char **all, const chunk *c, int nchunks,
                         const char *msg) {
  char *line = NULL, *joined = NULL;
  if (asprintf(&line, "chunk %d of %d, [%lld, %lld) on worker %d, failed: %s",
               c->index + 1, nchunks, (long long)c->lo, (long long)c->hi,
               c->pid, msg ? msg : "failed") < 0)
    return;
  if (!*all) {
    *all = line;
    return;
  }
  if (asprintf(&joined, "%s\n%s", *all, line) >= 0) {
    free(*all);
    *all = joined;
  }
  free(line);
}

/* Runs fn over every chunk and waits for all of them.  The chunks'
 * futures stay in c for the caller. */
static void run_chunks(chunk *c, int n, const char *fn,
                       const distc_value *arg) {
  distc__waitset ws;
  distc__waitset_init(&ws);
  /* One call per worker: an answer that comes while later chunks are still
   * being sent waits for this thread rather than waking the I/O thread. */
  distc__waitset_hold(&ws);
  for (int k = 0; k < n; k++) {
    start_chunk(&c[k], fn, arg);
    if (!c[k].node.f)
      continue;
    /* The waitset hands nodes back; the futures stay referenced by c. */
    atomic_fetch_add(&c[k].node.f->refs, 1);
    c[k].node.conn = c[k].pid != distc__C.myid ? distc__conn_get(c[k].pid)
                                                : NULL;
    distc__waitset_add(&ws, &c[k].node);
    distc__conn_unref(c[k].node.conn); /* the waitset holds its own */
  }
  int busy = ws.outstanding;
  distc__wsnode *node;
  while ((node = distc__waitset_next(&ws, busy, 0))) {
    distc__future_unref(node->f);
    busy--;
  }
  distc__waitset_destroy(&ws);
}

static void free_chunks(chunk *c, int n) {
  for (int k = 0; k < n; k++) {
    distc__future_unref(c[k].node.f);
    free(c[k].msg);
  }
  free(c);
}

/* Gathers the failed chunks into distc_errmsg(); returns the first code. */
static int chunk_errors(const chunk *c, int n, const char *what) {
  int first = 0;
  char *all = NULL;
  for (int k = 0; k < n; k++) {
    int err = c[k].node.f ? c[k].node.f->err : c[k].err;
    if (!err)
      continue;
    if (!first)
      first = err;
    note_failure(&all, &c[k], n,
                 c[k].node.f ? c[k].node.f->errmsg : c[k].msg);
  }
  if (first)
    distc__seterr(first, "%s: %s", what, all ? all : distc_strerror(first));
  free(all);
  return first;
}

static int reduce(const char *fn, int64_t lo, int64_t hi, distc_op op,
                  const char *reducer, const distc_value *arg,
                  distc_value **result) {
  const char *what = reducer ? "distc_reduce_with" : "distc_reduce";
  int rc = check_loop(what, fn);
  if (rc < 0)
    return rc;
  if (!result)
    return distc__seterr(DISTC_EINVAL, "%s: no place for the result", what);
  *result = NULL;
  if (!reducer && (op < DISTC_OP_SUM || op > DISTC_OP_MAX))
    return distc__seterr(DISTC_EINVAL, "%s: unknown operator %d (use "
                                       "DISTC_OP_SUM, _PROD, _MIN or _MAX)",
                         what, op);
  if (reducer && !distc__lookup(reducer))
    return distc__seterr(DISTC_ENOTREG,
                         "%s: reducer '%s' is not registered (define it with "
                         "DISTC_FUNCTION)",
                         what, reducer);
  if (hi <= lo) {
    *result = distc_nil();
    return 0;
  }
  chunk *c;
  int n;
  if ((rc = split(lo, hi, &c, &n)) < 0)
    return rc;
  run_chunks(c, n, fn, arg);
  if ((rc = chunk_errors(c, n, what)) < 0)
    goto free;

  /* Combined in chunk order, so a floating-point result does not depend on
   * which worker answered first. */
  distc_value *acc = NULL;
  for (int k = 0; k < n && rc == 0; k++) {
    distc_value *part = c[k].node.f->value;
    if (!acc) {
      acc = distc_value_ref(part);
    } else if (!reducer) {
      rc = distc__op_combine(op, &acc, part);
    } else {
      distc_value *args = distc_listv(2, acc, distc_value_ref(part)), *out;
      acc = NULL;
      rc = args ? distc_remotecall_fetch(distc__C.myid, reducer, args, &out)
                : distc__seterr(DISTC_ENOMEM, "out of memory");
      distc_value_free(args);
      if (rc == 0) {
        acc = out;
      } else {
        char *why = strdup(distc_errmsg());
        distc__seterr(rc, "%s: reducer '%s' failed: %s", what, reducer,
                      why ? why : distc_strerror(rc));
        free(why);
      }
    }
  }
  if (rc == 0)
    *result = acc;
  else
    distc_value_free(acc);
free:
  free_chunks(c, n);
  return rc;
}

int distc_reduce(const char *fn, int64_t lo, int64_t hi, distc_op op,
                 const distc_value *arg, distc_value **result) {
  if (result)
    *result = NULL;
  return reduce(fn, lo, hi, op, NULL, arg, result);
}

int distc_reduce_with(const char *fn, int64_t lo, int64_t hi,
                      const char *reducer, const distc_value *arg,
                      distc_value **result) {
  if (result)
    *result = NULL;
  if (!reducer)
    return distc__seterr(DISTC_EINVAL, "distc_reduce_with: no reducer name "
                                       "given");
  return reduce(fn, lo, hi, 0, reducer, arg, result);
}

/* ---- the loop without a reducer ----
 * The future handed out completes from the chunks' completion hooks, on
 * whichever thread completes the last chunk; the loop's state lives until
 * then. */

typedef struct forloop {
  distc_future *done;  /* the loop's own reference */
  atomic_int left;     /* chunks still running, + 1 while starting */
  pthread_mutex_t mu;  /* first, all */
  int first;
  char *all;
  chunk *c;
  int n;
} forloop;

static void finish(forloop *L) {
  char *msg = NULL;
  if (L->first && asprintf(&msg, "distc_distributed_for: %s",
                           L->all ? L->all : distc_strerror(L->first)) < 0)
    msg = NULL;
  distc__future_complete(L->done, L->first, L->first ? NULL : distc_nil(),
                         msg);
  distc__future_unref(L->done);
  free_chunks(L->c, L->n);
  free(L->all);
  pthread_mutex_destroy(&L->mu);
  free(L);
}

static void chunk_done(distc_future *f, void *arg) {
  chunk *c = arg;
  forloop *L = c->loop;
  if (f->err) {
    pthread_mutex_lock(&L->mu);
    if (!L->first)
      L->first = f->err;
    note_failure(&L->all, c, L->n, f->errmsg);
    pthread_mutex_unlock(&L->mu);
  }
  if (atomic_fetch_sub(&L->left, 1) == 1)
    finish(L);
}

int distc_distributed_for_async(const char *fn, int64_t lo, int64_t hi,
                                const distc_value *arg, distc_future **out) {
  if (out)
    *out = NULL;
  int rc = check_loop("distc_distributed_for_async", fn);
  if (rc < 0)
    return rc;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_distributed_for_async: no "
                                       "place for the future");
  distc_future *done = distc__future_new(distc__C.myid);
  forloop *L = calloc(1, sizeof *L);
  if (!done || !L) {
    distc__future_unref(done);
    free(L);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  if (hi <= lo) {
    free(L);
    distc__future_complete(done, 0, distc_nil(), NULL);
    *out = done;
    return 0;
  }
  if ((rc = split(lo, hi, &L->c, &L->n)) < 0) {
    free(L);
    distc__future_unref(done);
    return rc;
  }
  pthread_mutex_init(&L->mu, NULL);
  atomic_fetch_add(&done->refs, 1);
  L->done = done;
  atomic_init(&L->left, L->n + 1);
  for (int k = 0; k < L->n; k++) {
    chunk *c = &L->c[k];
    start_chunk(c, fn, arg);
    if (!c->node.f) {
      pthread_mutex_lock(&L->mu);
      if (!L->first)
        L->first = c->err;
      note_failure(&L->all, c, L->n, c->msg);
      pthread_mutex_unlock(&L->mu);
      atomic_fetch_sub(&L->left, 1);
      continue;
    }
    c->loop = L;
    distc__future_on_done(c->node.f, chunk_done, c);
  }
  *out = done;
  if (atomic_fetch_sub(&L->left, 1) == 1)
    finish(L);
  return 0;
}

int distc_distributed_for(const char *fn, int64_t lo, int64_t hi,
                          const distc_value *arg) {
  distc_future *f;
  int rc = check_loop("distc_distributed_for", fn); /* named as called */
  if (rc < 0)
    return rc;
  if ((rc = distc_distributed_for_async(fn, lo, hi, arg, &f)) < 0)
    return rc;
  rc = distc_wait(f);
  distc__future_unref(f);
  return rc;
}

/* future_ref.c — a future passed as a value (Julia's Future semantics).
 *
 * distc_future_value turns a future into the pair [owner pid, reference]
 * any process can be sent; distc_future_from_value turns the pair back into
 * a future that is fetched from its owner: the owner answers once its own
 * future completes (at once when it already has), so the value comes from
 * where it lives, however many processes fetch it.  The owner keeps the
 * reference only while its own future lives: a fetch after the owner freed
 * it fails, saying so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct distc__export {
  struct distc__export *next;
  uint64_t id;
  distc_future *f;       /* no reference: it leaves when f is freed */
  distc__reply **waiting; /* fetches to answer when f completes */
  size_t nwaiting, cap;
} distc__export;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static distc__export *exports;
static uint64_t next_id = 1;

/* Under mu: a new reference to the exported future id, or NULL when it is
 * unknown or being freed (its count already reached 0). */
static distc_future *lookup(uint64_t id) {
  for (distc__export *e = exports; e; e = e->next) {
    if (e->id != id)
      continue;
    int r = atomic_load(&e->f->refs);
    while (r > 0 && !atomic_compare_exchange_weak(&e->f->refs, &r, r + 1))
      ;
    return r > 0 ? e->f : NULL;
  }
  return NULL;
}

int distc_future_value(distc_future *f, distc_value **out) {
  if (out)
    *out = NULL;
  if (!f || !out)
    return distc__seterr(DISTC_EINVAL, "distc_future_value: NULL future or "
                                       "out pointer");
  pthread_mutex_lock(&mu);
  distc__export *e = f->exported;
  if (!e && (e = calloc(1, sizeof *e))) {
    e->id = next_id++;
    e->f = f;
    e->next = exports;
    exports = e;
    f->exported = e;
  }
  uint64_t id = e ? e->id : 0;
  pthread_mutex_unlock(&mu);
  if (!e || !(*out = distc_listv(2, distc_int(distc_myid()),
                                 distc_int((int64_t)id))))
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  return 0;
}

int distc_future_from_value(const distc_value *v, distc_future **out) {
  if (out)
    *out = NULL;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_future_from_value: NULL out");
  const distc_value *p = distc_list_at(v, 0), *i = distc_list_at(v, 1);
  if (distc_value_type(v) != DISTC_LIST || distc_list_len(v) != 2 ||
      distc_value_type(p) != DISTC_INT || distc_value_type(i) != DISTC_INT ||
      distc_value_int(p) < 1 || distc_value_int(i) < 1)
    return distc__seterr(DISTC_EINVAL,
                         "distc_future_from_value wants the [pid, reference] "
                         "pair distc_future_value made");
  int owner = (int)distc_value_int(p);
  if (owner != distc_myid()) {
    distc_value *a = distc_listv(1, distc_value_ref((distc_value *)i));
    if (!a)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    int rc = distc_remotecall(owner, "distc__future_fetch", a, out);
    distc_value_free(a);
    return rc;
  }
  pthread_mutex_lock(&mu);
  distc_future *f = lookup((uint64_t)distc_value_int(i));
  pthread_mutex_unlock(&mu);
  if (!f)
    return distc__seterr(DISTC_ENOENT,
                         "future %lld of process %d was freed by its owner "
                         "(keep it until every process has fetched it)",
                         (long long)distc_value_int(i), owner);
  *out = f;
  return 0;
}

/* Answers one fetch with f's outcome. */
static void answer(distc__reply *r, distc_future *f) {
  if (f->err)
    distc__reply_send_where(r, f->err, NULL,
                            f->errmsg ? f->errmsg : distc_strerror(f->err));
  else
    distc__reply_send(r, 0, distc_value_ref(f->value), NULL);
}

typedef struct answers {
  distc_future *f; /* a reference */
  distc__reply **r;
  size_t n;
} answers;

static void answer_all(void *arg) {
  answers *a = arg;
  for (size_t i = 0; i < a->n; i++)
    answer(a->r[i], a->f);
  distc__future_unref(a->f);
  free(a->r);
  free(a);
}

void distc__future_exported_done(distc_future *f) {
  pthread_mutex_lock(&mu);
  distc__export *e = f->exported;
  answers *a = e && e->nwaiting ? calloc(1, sizeof *a) : NULL;
  if (a) {
    a->f = f;
    atomic_fetch_add(&f->refs, 1);
    a->r = e->waiting;
    a->n = e->nwaiting;
    e->waiting = NULL;
    e->nwaiting = e->cap = 0;
  }
  pthread_mutex_unlock(&mu);
  if (!a)
    return;
  /* On the master the future completes on the I/O thread, which must
   * never wait on a send: the service thread answers. */
  if (!distc__C.is_master || distc__service_post(answer_all, a) < 0)
    answer_all(a);
}

void distc__future_unexport(distc_future *f) {
  pthread_mutex_lock(&mu);
  distc__export **pp = &exports;
  while (*pp && *pp != f->exported)
    pp = &(*pp)->next;
  distc__export *e = *pp;
  if (e)
    *pp = e->next;
  f->exported = NULL;
  pthread_mutex_unlock(&mu);
  if (!e)
    return;
  /* A pending future holds a reference of its pending table, so none can
   * wait here; but never leave a fetcher hanging. */
  for (size_t i = 0; i < e->nwaiting; i++)
    distc__reply_send(e->waiting[i], DISTC_ENOENT, NULL,
                      "the future was freed by its owner");
  free(e->waiting);
  free(e);
}

/* [reference]: the exported future's value, once it has one. */
DISTC_FUNCTION(distc__future_fetch) {
  uint64_t id = (uint64_t)distc_value_int(distc_list_at(args, 0));
  pthread_mutex_lock(&mu);
  distc_future *f = lookup(id);
  pthread_mutex_unlock(&mu);
  if (!f)
    return distc_fail(ctx, "future %llu of process %d was freed by its owner "
                      "(keep it until every process has fetched it)",
                      (unsigned long long)id, distc_myid());
  distc__reply *r = distc__call_defer(ctx);
  if (!r) {
    distc__future_unref(f);
    return distc_fail(ctx, "out of memory");
  }
  bool now = false;
  pthread_mutex_lock(&mu);
  distc__export *e = f->exported;
  if (atomic_load(&f->state) == DISTC__FUT_DONE || !e) {
    now = true;
  } else if (e->nwaiting == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 4;
    distc__reply **w = realloc(e->waiting, sizeof *w * cap);
    if (w) {
      e->waiting = w;
      e->cap = cap;
    }
  }
  if (!now && e->nwaiting < e->cap)
    e->waiting[e->nwaiting++] = r;
  else
    now = true;
  pthread_mutex_unlock(&mu);
  /* Completed before we queued (or no room to queue): wait here instead. */
  if (now) {
    if (atomic_load(&f->state) != DISTC__FUT_DONE)
      distc__future_wait(f);
    answer(r, f);
  }
  distc__future_unref(f);
  return distc_nil();
}

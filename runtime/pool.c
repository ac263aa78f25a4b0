/* pool.c — worker pools: a set of processes that calls go to as a group,
 * one call per member at a time (Julia's WorkerPool).
 *
 * A member is busy from the moment a pool call is sent to it until that
 * call completes.  Completion is noticed lazily, by looking at the futures
 * the pool still holds whenever a member is wanted, rather than through a
 * completion hook: the future belongs to the caller, who may hand it to
 * code that needs its one hook slot.  Exited members are dropped the same
 * way, so a worker that dies leaves every pool without anyone telling the
 * pools. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define WAIT_MIN_NS 20e3
#define WAIT_MAX_NS 1e6

typedef struct held {
  distc_future *f; /* the pool's reference */
  int id;
} held;

struct distc_pool {
  pthread_mutex_t mu;
  pthread_cond_t freed; /* a member became free */
  int *ids;             /* live members, ascending */
  int *busy;            /* pool calls running on each member */
  int n, rr;
  held *held;           /* remotecall_pool futures still running */
  size_t nheld, capheld;
  /* The default pool: its members are distc_workers(), re-read whenever a
   * worker joined since the last look (gen). */
  bool follows;
  unsigned gen;
};

static bool alive(int id) {
  if (id == distc__C.myid)
    return true;
  distc__conn *c = distc__conn_get(id);
  distc__conn_unref(c);
  return c != NULL;
}

static int index_of(const distc_pool *p, int id) {
  for (int i = 0; i < p->n; i++)
    if (p->ids[i] == id)
      return i;
  return -1;
}

/* Under mu: takes in the workers that joined since the last look (a
 * default pool), keeping the busy counts of those already in. */
static void follow(distc_pool *p) {
  unsigned g = distc__members_gen();
  if (!p->follows || (g == p->gen && p->n > 0))
    return;
  int room = distc_workers(NULL, 0) + 1;
  int *ids = malloc(sizeof *ids * (size_t)room);
  int *busy = calloc((size_t)room, sizeof *busy);
  if (!ids || !busy) {
    free(ids);
    free(busy);
    return; /* keep the members we have; the next look tries again */
  }
  /* One that joins after g was read moves the generation again, so the
   * next look takes it in even if there was no room for it now. */
  int n = distc_workers(ids, room);
  if (n > room)
    n = room;
  for (int i = 0; i < n; i++) {
    int j = index_of(p, ids[i]);
    busy[i] = j >= 0 ? p->busy[j] : 0;
  }
  free(p->ids);
  free(p->busy);
  p->ids = ids;
  p->busy = busy;
  p->n = n;
  p->gen = g;
}

/* Under mu: frees members whose calls completed, then drops exited ones. */
static void refresh(distc_pool *p) {
  follow(p);
  for (size_t k = 0; k < p->nheld;) {
    held *h = &p->held[k];
    if (atomic_load_explicit(&h->f->state, memory_order_acquire) !=
        DISTC__FUT_DONE) {
      k++;
      continue;
    }
    int i = index_of(p, h->id);
    if (i >= 0 && p->busy[i] > 0)
      p->busy[i]--;
    distc__future_unref(h->f);
    *h = p->held[--p->nheld];
  }
  int w = 0;
  for (int i = 0; i < p->n; i++) {
    if (!alive(p->ids[i]))
      continue;
    p->ids[w] = p->ids[i];
    p->busy[w] = p->busy[i];
    w++;
  }
  p->n = w;
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

bool distc__pool_follows(distc_pool *p) { return p && p->follows; }

int distc_pool_new(const int *ids, int n, distc_pool **out) {
  if (out)
    *out = NULL;
  if (out && !ids && n == 0) {
    if (!distc__C.initialised || distc__C.finalised)
      return distc__seterr(DISTC_ESTATE, "call distc_init() first");
    if (!distc__C.is_master)
      return distc__seterr(DISTC_ENOTMASTER,
                           "distc_pool_new from worker %d: make the default "
                           "pool on the master", distc__C.myid);
    distc_pool *p = calloc(1, sizeof *p);
    if (!p)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->freed, NULL);
    p->follows = true;
    pthread_mutex_lock(&p->mu);
    follow(p);
    pthread_mutex_unlock(&p->mu);
    if (p->n == 0) {
      distc_pool_free(p);
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    }
    *out = p;
    return 0;
  }
  if (!out || !ids || n < 1)
    return distc__seterr(DISTC_EINVAL, "distc_pool_new wants at least one "
                                       "process id and somewhere to put the "
                                       "pool");
  if (!distc__C.initialised || distc__C.finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  /* Its calls would go from this worker to the others. */
  if (!distc__C.is_master)
    return distc__seterr(DISTC_ENOTMASTER,
                         "distc_pool_new from worker %d: pools are driven "
                         "by the master only in this version; make the pool "
                         "on the master, or call other workers with "
                         "distc_remotecall", distc__C.myid);
  distc_pool *p = calloc(1, sizeof *p);
  if (!p)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->freed, NULL);
  p->ids = malloc(sizeof *p->ids * (size_t)n);
  p->busy = calloc((size_t)n, sizeof *p->busy);
  if (!p->ids || !p->busy) {
    distc_pool_free(p);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  memcpy(p->ids, ids, sizeof *ids * (size_t)n);
  qsort(p->ids, (size_t)n, sizeof *p->ids, cmp_int);
  for (int i = 0; i < n; i++) {
    int rc = 0;
    if (i > 0 && p->ids[i] == p->ids[i - 1])
      rc = distc__seterr(DISTC_EINVAL, "process %d is in the pool twice",
                         p->ids[i]);
    else if (!alive(p->ids[i]))
      rc = distc__seterr(DISTC_ENOENT,
                         "there is no process %d to put in the pool (see "
                         "distc_workers())",
                         p->ids[i]);
    if (rc) {
      distc_pool_free(p);
      return rc;
    }
  }
  p->n = n;
  *out = p;
  return 0;
}

void distc_pool_free(distc_pool *p) {
  if (!p)
    return;
  for (size_t k = 0; k < p->nheld; k++)
    distc__future_unref(p->held[k].f);
  free(p->held);
  free(p->ids);
  free(p->busy);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->freed);
  free(p);
}

int distc_pool_size(distc_pool *p) {
  if (!p)
    return 0;
  pthread_mutex_lock(&p->mu);
  refresh(p);
  int n = p->n;
  pthread_mutex_unlock(&p->mu);
  return n;
}

int distc_pool_members(distc_pool *p, int *ids, int max) {
  if (!p)
    return 0;
  pthread_mutex_lock(&p->mu);
  refresh(p);
  for (int i = 0; ids && i < p->n && i < max; i++)
    ids[i] = p->ids[i];
  int n = p->n;
  pthread_mutex_unlock(&p->mu);
  return n;
}

/* Marks a free member busy and returns its id in *id; waits while every
 * member is busy.  DISTC_ENOENT when none is left. */
static int take(distc_pool *p, int *id) {
  double wait_ns = WAIT_MIN_NS;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    refresh(p);
    if (p->n == 0) {
      pthread_mutex_unlock(&p->mu);
      return distc__seterr(DISTC_ENOENT, "the pool has no live member left "
                                         "(its workers exited)");
    }
    for (int k = 0; k < p->n; k++) {
      int i = (p->rr + k) % p->n;
      if (p->busy[i] == 0) {
        p->busy[i]++;
        p->rr = i + 1;
        *id = p->ids[i];
        pthread_mutex_unlock(&p->mu);
        return 0;
      }
    }
    /* Fetches release through `freed`; the futures of remotecall_pool are
     * looked at again after a short, growing wait. */
    distc__cond_wait_ns(&p->freed, &p->mu, wait_ns);
    wait_ns = wait_ns * 2 > WAIT_MAX_NS ? WAIT_MAX_NS : wait_ns * 2;
  }
}

static void give_back(distc_pool *p, int id) {
  pthread_mutex_lock(&p->mu);
  int i = index_of(p, id);
  if (i >= 0 && p->busy[i] > 0)
    p->busy[i]--;
  pthread_cond_broadcast(&p->freed);
  pthread_mutex_unlock(&p->mu);
}

static int check_pool(distc_pool *p, const char *what) {
  if (!p)
    return distc__seterr(DISTC_EINVAL, "%s: NULL pool", what);
  return 0;
}

int distc_remotecall_pool(distc_pool *p, const char *fn,
                          const distc_value *args, distc_future **out) {
  if (out)
    *out = NULL;
  int rc, id;
  if ((rc = check_pool(p, "distc_remotecall_pool")) < 0)
    return rc;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_remotecall_pool: no place for "
                                       "the future");
  /* A member that exited since the last look is dropped and another tried. */
  do {
    if ((rc = take(p, &id)) < 0)
      return rc;
    rc = distc_remotecall(id, fn, args, out);
    if (rc < 0)
      give_back(p, id);
  } while ((rc == DISTC_ENOENT || rc == DISTC_EPROCEXIT) && !alive(id));
  if (rc < 0)
    return rc;
  pthread_mutex_lock(&p->mu);
  if (p->nheld == p->capheld) {
    size_t cap = p->capheld ? p->capheld * 2 : 8;
    held *h = realloc(p->held, cap * sizeof *h);
    if (!h) {
      pthread_mutex_unlock(&p->mu);
      give_back(p, id);
      return 0; /* the call runs; the member is just not counted busy */
    }
    p->held = h;
    p->capheld = cap;
  }
  atomic_fetch_add(&(*out)->refs, 1);
  p->held[p->nheld++] = (held){*out, id};
  pthread_mutex_unlock(&p->mu);
  return 0;
}

int distc_remotecall_fetch_pool(distc_pool *p, const char *fn,
                                const distc_value *args, distc_value **result) {
  if (result)
    *result = NULL;
  int rc, id;
  if ((rc = check_pool(p, "distc_remotecall_fetch_pool")) < 0)
    return rc;
  do {
    if ((rc = take(p, &id)) < 0)
      return rc;
    rc = distc_remotecall_fetch(id, fn, args, result);
    give_back(p, id);
  } while ((rc == DISTC_ENOENT || rc == DISTC_EPROCEXIT) && !alive(id));
  return rc;
}

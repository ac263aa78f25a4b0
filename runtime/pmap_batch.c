/* pmap_batch.c — the side of pmap that runs where the items go: one call
 * runs a whole batch of items and answers with every item's result or
 * error, so a failed item costs its neighbours nothing and the caller can
 * retry or replace just that one.
 *
 * The map's constant extra argument travels once per process: with the
 * first batch of the map that the process gets, which stores it here under
 * the map's id until the caller says the map is over.  Calls on one
 * connection run in the order sent, so every later batch finds it. */
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

typedef struct map_arg {
  int64_t id;
  distc_value *arg;
} map_arg;

/* A few maps at most are live at once; a worker serves one master. */
static pthread_mutex_t args_lock = PTHREAD_MUTEX_INITIALIZER;
static map_arg *args_tab;
static size_t args_n, args_cap;

static int arg_put(int64_t id, distc_value *arg) {
  int rc = 0;
  pthread_mutex_lock(&args_lock);
  for (size_t i = 0; i < args_n; i++) {
    if (args_tab[i].id == id) {
      distc_value_free(args_tab[i].arg);
      args_tab[i].arg = distc_value_ref(arg);
      goto unlock;
    }
  }
  if (args_n == args_cap) {
    size_t cap = args_cap ? args_cap * 2 : 4;
    map_arg *t = realloc(args_tab, cap * sizeof *t);
    if (!t) {
      rc = DISTC_ENOMEM;
      goto unlock;
    }
    args_tab = t;
    args_cap = cap;
  }
  args_tab[args_n].id = id;
  args_tab[args_n].arg = distc_value_ref(arg);
  args_n++;
unlock:
  pthread_mutex_unlock(&args_lock);
  return rc;
}

/* A new reference, or NULL when the map left nothing here. */
static distc_value *arg_get(int64_t id) {
  distc_value *v = NULL;
  pthread_mutex_lock(&args_lock);
  for (size_t i = 0; i < args_n && !v; i++)
    if (args_tab[i].id == id)
      v = distc_value_ref(args_tab[i].arg);
  pthread_mutex_unlock(&args_lock);
  return v;
}

static void arg_drop(int64_t id) {
  distc_value *v = NULL;
  pthread_mutex_lock(&args_lock);
  for (size_t i = 0; i < args_n; i++) {
    if (args_tab[i].id == id) {
      v = args_tab[i].arg;
      args_tab[i] = args_tab[--args_n];
      break;
    }
  }
  if (args_n == 0) {
    free(args_tab);
    args_tab = NULL;
    args_cap = 0;
  }
  pthread_mutex_unlock(&args_lock);
  distc_value_free(v);
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* A CALL frame of the batch function: the payload's msgpack part starts
 * with [fn, ...] (see value.h for the layout), fn a fixstr. */
static bool is_batch_frame(const unsigned char *p, size_t n) {
  static const char name[] = DISTC__BATCH_FN;
  const size_t len = sizeof name - 1;
  if (n < DISTC__HDR_LEN + 8 || p[4] != DISTC__F_CALL)
    return false;
  const unsigned char *pl = p + DISTC__HDR_LEN;
  uint64_t at = 8 + 8 * (uint64_t)le32(pl + 4);
  return n >= DISTC__HDR_LEN + at + 2 + len && pl[at] == 0x92 &&
         pl[at + 1] == (0xa0 | len) && memcmp(pl + at + 2, name, len) == 0;
}

bool distc__batches_ahead(const char *buf, size_t n) {
  const unsigned char *p = (const unsigned char *)buf;
  if (n < DISTC__HDR_LEN || !is_batch_frame(p, n))
    return false;
  uint64_t first = DISTC__HDR_LEN + (uint64_t)le32(p);
  return n > first && is_batch_frame(p + first, n - first);
}

distc_value *distc__array_item(const distc_value *a, size_t i) {
  const void *p = a->u.a.data;
  switch (a->u.a.dtype) {
  case DISTC_F64:
    return distc_double(((const double *)p)[i]);
  case DISTC_F32:
    return distc_double(((const float *)p)[i]);
  case DISTC_I64:
    return distc_int(((const int64_t *)p)[i]);
  case DISTC_I32:
    return distc_int(((const int32_t *)p)[i]);
  case DISTC_U8:
    return distc_int(((const uint8_t *)p)[i]);
  }
  return NULL;
}

/* Appends [pos, code, message] to *errors (created on first use). */
static int add_error(distc_value **errors, size_t pos, int code,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int add_error(distc_value **errors, size_t pos, int code,
                     const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  if (!*errors && !(*errors = distc_list(0))) {
    free(msg);
    return DISTC_ENOMEM;
  }
  distc_value *e = distc_listv(3, distc_int((int64_t)pos), distc_int(code),
                               distc_string(msg ? msg : "out of memory"));
  free(msg);
  return e ? distc_list_push(*errors, e) : DISTC_ENOMEM;
}

/* Results collect as a typed array while every one so far is an int (or
 * every one a double): each is copied out and freed at once, so fn's next
 * result reuses its memory, and the answer needs no per-item encoding.  The
 * first result of another kind turns the collection into a list. */
typedef struct collect {
  distc_value *list; /* NULL while typed */
  distc_type type;   /* of the typed results: DISTC_INT or DISTC_DOUBLE */
  uint64_t *typed;
  size_t n, len;
} collect;

static int collect_init(collect *c, size_t n) {
  memset(c, 0, sizeof *c);
  c->len = n;
  if (n >= 2)
    c->typed = malloc(n * sizeof *c->typed);
  if (!c->typed)
    c->list = distc_list(n);
  return c->typed || c->list ? 0 : DISTC_ENOMEM;
}

/* Turns the typed results so far into list items. */
static int collect_untype(collect *c) {
  distc_value *l = distc_list(c->len);
  if (!l)
    return DISTC_ENOMEM;
  for (size_t j = 0; j < c->n; j++) {
    distc_value *v = c->type == DISTC_INT ? distc_int((int64_t)c->typed[j])
                                          : distc_double(0);
    if (!v) {
      distc_value_free(l);
      return DISTC_ENOMEM;
    }
    if (c->type == DISTC_DOUBLE)
      memcpy(&v->u.d, &c->typed[j], sizeof v->u.d);
    l->u.l.items[j] = v;
  }
  free(c->typed);
  c->typed = NULL;
  c->list = l;
  return 0;
}

/* Stores result j (takes v; NULL: item j failed). */
static int collect_put(collect *c, size_t j, distc_value *v) {
  if (c->typed) {
    distc_type t = distc_value_type(v);
    if (v && (t == DISTC_INT || t == DISTC_DOUBLE) && (j == 0 || t == c->type)) {
      c->type = t;
      memcpy(&c->typed[j], t == DISTC_INT ? (void *)&v->u.i : (void *)&v->u.d,
             sizeof c->typed[j]);
      c->n = j + 1;
      distc_value_free(v);
      return 0;
    }
    int rc = collect_untype(c);
    if (rc < 0) {
      distc_value_free(v);
      return rc;
    }
  }
  if (v)
    c->list->u.l.items[j] = v; /* replaces the immortal nil */
  return 0;
}

/* The results as a value: an I64 or F64 array, or a list. */
static distc_value *collect_take(collect *c) {
  distc_value *out = c->list;
  if (c->typed) {
    out = distc_array(c->type == DISTC_INT ? DISTC_I64 : DISTC_F64, 1,
                      &c->len);
    if (out)
      memcpy(out->u.a.data, c->typed, c->len * sizeof *c->typed);
  }
  free(c->typed);
  c->typed = NULL;
  c->list = NULL;
  return out;
}

static void collect_free(collect *c) {
  free(c->typed);
  distc_value_free(c->list);
}

/* Item j of the batch as a value placed in call[0]: a fresh reference for a
 * list item; for an array element, the previous item's value rewritten in
 * place when fn kept no reference to it, else a new one. */
static int set_item(distc_value *call, const distc_value *items, size_t j) {
  if (items->type == DISTC_LIST)
    return distc_list_set(call, 0, distc_value_ref(items->u.l.items[j]));
  distc_value *cur = call->u.l.items[0];
  distc_type want = items->u.a.dtype == DISTC_F64 ||
                            items->u.a.dtype == DISTC_F32
                        ? DISTC_DOUBLE
                        : DISTC_INT;
  if (cur->type == want &&
      atomic_load_explicit(&cur->refs, memory_order_acquire) == 1) {
    const void *p = items->u.a.data;
    switch (items->u.a.dtype) {
    case DISTC_F64: cur->u.d = ((const double *)p)[j]; break;
    case DISTC_F32: cur->u.d = ((const float *)p)[j]; break;
    case DISTC_I64: cur->u.i = ((const int64_t *)p)[j]; break;
    case DISTC_I32: cur->u.i = ((const int32_t *)p)[j]; break;
    case DISTC_U8: cur->u.i = ((const uint8_t *)p)[j]; break;
    }
    return 0;
  }
  distc_value *v = distc__array_item(items, j);
  return v ? distc_list_set(call, 0, v) : DISTC_ENOMEM;
}

DISTC_FUNCTION(distc__pmap_batch) {
  size_t na = distc_list_len(args);
  const distc_value *vid = distc_list_at(args, 0),
                    *vfn = distc_list_at(args, 1),
                    *items = distc_list_at(args, 2);
  distc_type it = distc_value_type(items);
  if (na < 3 || na > 4 || distc_value_type(vid) != DISTC_INT ||
      distc_value_type(vfn) != DISTC_STRING ||
      (it != DISTC_LIST && it != DISTC_ARRAY))
    return distc_fail(ctx, "malformed pmap batch");
  int64_t mapid = vid->u.i;
  const char *name = vfn->u.s.p;
  distc_value *arg = NULL;
  if (na == 4) {
    arg = distc_value_ref(distc_list_at(args, 3));
    if (arg_put(mapid, arg) < 0) {
      distc_value_free(arg);
      return distc_fail(ctx, "out of memory keeping the map's argument");
    }
  } else if (mapid != 0 && !(arg = arg_get(mapid))) {
    return distc_fail(ctx, "pmap batch of map %lld arrived without the map's "
                           "argument", (long long)mapid);
  }

  size_t n = it == DISTC_LIST ? items->u.l.n : items->u.a.len;
  distc_value *errors = NULL, *call = NULL, *out = NULL, *results = NULL;
  collect res;
  distc_fn fn = distc__lookup(name);
  double t0 = distc__now();
  if (collect_init(&res, n) < 0)
    goto fail;
  for (size_t j = 0; j < n; j++) {
    /* The argument list is reused from item to item unless fn kept a
     * reference to it. */
    if (!call || atomic_load_explicit(&call->refs, memory_order_acquire) > 1) {
      distc_value_free(call);
      call = distc_list(arg ? 2 : 1);
      if (!call)
        goto fail;
      if (arg)
        distc_list_set(call, 1, distc_value_ref(arg));
    }
    int rc = 0;
    if (set_item(call, items, j) < 0) {
      rc = add_error(&errors, j, DISTC_ENOMEM, "out of memory");
    } else if (!fn) {
      rc = add_error(&errors, j, DISTC_ENOTREG,
                     "function '%s' is not registered (define it with "
                     "DISTC_FUNCTION in the program, or load the shared "
                     "object that defines it with distc_load_everywhere)",
                     name);
    } else {
      distc_ctx c = {NULL};
      distc_value *v = fn(call, &c);
      if (!v)
        rc = add_error(&errors, j, DISTC_EREMOTE, "in function '%s': %s",
                       name, c.errmsg ? c.errmsg : "failed without a message");
      free(c.errmsg);
      if (rc == 0)
        rc = collect_put(&res, j, v);
    }
    if (rc == 0 && errors && res.typed)
      rc = collect_untype(&res); /* a failed item reads nil in a list */
    if (rc < 0)
      goto fail;
  }
  double took = distc__now() - t0;
  results = collect_take(&res);
  if (!results)
    goto fail;
  out = distc_listv(3, results, errors ? errors : distc_nil(),
                    distc_int((int64_t)took));
  results = errors = NULL; /* owned by out, or freed by distc_listv */
fail:
  collect_free(&res);
  distc_value_free(results);
  distc_value_free(errors);
  distc_value_free(call);
  distc_value_free(arg);
  if (!out)
    return distc_fail(ctx, "out of memory running a pmap batch of %zu items",
                      n);
  return out;
}

DISTC_FUNCTION(distc__pmap_end) {
  (void)ctx;
  const distc_value *vid = distc_list_at(args, 0);
  if (distc_value_type(vid) == DISTC_INT)
    arg_drop(vid->u.i);
  return distc_nil();
}

/* darray.c — distributed arrays: an n-d array cut into a grid of chunks,
 * each held by its owner in a table on that process.
 *
 * A darray is named by a handle value that carries its whole layout (dims,
 * the cuts along each dimension, the owner of each chunk), so any process
 * holding one can answer layout questions and find its own chunk without
 * asking anyone; the handle is small next to the data.  Handles are plain
 * descriptions: copying, sending or freeing one touches no chunk.  The chunks
 * live in each owner's table until distc_darray_free releases them.
 *
 * Everything that moves chunks goes master -> owner, so it works with owners
 * on any host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "parallel.h"

/* ---- layout ---- */

typedef struct dlayout {
  uint64_t id;
  distc_dtype dtype;
  int ndim;
  size_t dims[DISTC_MAXDIM];
  int grid[DISTC_MAXDIM];    /* chunks along each dimension */
  size_t *cuts[DISTC_MAXDIM]; /* grid[k] + 1 boundaries, 0 .. dims[k] */
  size_t nchunks;
  int *owners;               /* one per chunk, column-major over the grid */
  size_t *cutmem;            /* where cuts point */
} dlayout;

static _Atomic uint64_t next_id = 1;
static const distc__handle_ops darray_ops;

static void layout_free(void *obj) {
  dlayout *l = obj;
  if (!l)
    return;
  free(l->owners);
  free(l->cutmem);
  free(l);
}

/* A layout with room for its cuts and owners; the caller fills them. */
static dlayout *layout_alloc(int ndim, const int *grid) {
  dlayout *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  size_t ncuts = 0, nchunks = 1;
  for (int k = 0; k < ndim; k++) {
    ncuts += (size_t)grid[k] + 1;
    nchunks *= (size_t)grid[k];
  }
  l->ndim = ndim;
  l->nchunks = nchunks;
  l->cutmem = calloc(ncuts ? ncuts : 1, sizeof *l->cutmem);
  l->owners = calloc(nchunks, sizeof *l->owners);
  if (!l->cutmem || !l->owners) {
    layout_free(l);
    return NULL;
  }
  size_t off = 0;
  for (int k = 0; k < ndim; k++) {
    l->grid[k] = grid[k];
    l->cuts[k] = l->cutmem + off;
    off += (size_t)grid[k] + 1;
  }
  return l;
}

/* Chunk i's position in the grid. */
static void chunk_coords(const dlayout *l, size_t i, int *c) {
  for (int k = 0; k < l->ndim; k++) {
    c[k] = (int)(i % (size_t)l->grid[k]);
    i /= (size_t)l->grid[k];
  }
}

static void chunk_box(const dlayout *l, size_t i, size_t *lo, size_t *hi) {
  int c[DISTC_MAXDIM];
  chunk_coords(l, i, c);
  for (int k = 0; k < l->ndim; k++) {
    if (lo)
      lo[k] = l->cuts[k][c[k]];
    if (hi)
      hi[k] = l->cuts[k][c[k] + 1];
  }
}

/* The chunk this process owns, or -1. */
static long my_chunk(const dlayout *l) {
  for (size_t i = 0; i < l->nchunks; i++)
    if (l->owners[i] == distc__C.myid)
      return (long)i;
  return -1;
}

/* ---- the handle ----
 * u64 id | u8 dtype | u8 ndim | u16 0 | u32 nchunks |
 * per dimension: u64 dim, u32 chunks | every cut (u64) | owners (u32) */

static void put(unsigned char **p, const unsigned char *end, uint64_t x,
                int n) {
  for (int i = 0; i < n; i++, (*p)++)
    if (*p < end)
      **p = (unsigned char)(x >> (8 * i));
}

static uint64_t get(const unsigned char **p, int n) {
  uint64_t x = 0;
  for (int i = n - 1; i >= 0; i--)
    x = x << 8 | (*p)[i];
  *p += n;
  return x;
}

static size_t body_len(int ndim, size_t ncuts, size_t nchunks) {
  return 16 + 12 * (size_t)ndim + 8 * ncuts + 4 * nchunks;
}

static size_t darray_encode(const void *obj, unsigned char *buf, size_t cap) {
  const dlayout *l = obj;
  size_t ncuts = 0;
  for (int k = 0; k < l->ndim; k++)
    ncuts += (size_t)l->grid[k] + 1;
  size_t n = body_len(l->ndim, ncuts, l->nchunks);
  if (!buf || cap < n)
    return n;
  unsigned char *p = buf, *end = buf + cap;
  put(&p, end, l->id, 8);
  put(&p, end, l->dtype, 1);
  put(&p, end, (uint64_t)l->ndim, 1);
  put(&p, end, 0, 2);
  put(&p, end, l->nchunks, 4);
  for (int k = 0; k < l->ndim; k++) {
    put(&p, end, l->dims[k], 8);
    put(&p, end, (uint64_t)l->grid[k], 4);
  }
  for (int k = 0; k < l->ndim; k++)
    for (int j = 0; j <= l->grid[k]; j++)
      put(&p, end, l->cuts[k][j], 8);
  for (size_t i = 0; i < l->nchunks; i++)
    put(&p, end, (uint64_t)l->owners[i], 4);
  return n;
}

static int darray_decode(const unsigned char *p, size_t n, distc_value **out) {
  const unsigned char *end = p + n;
  if (n < 16)
    return distc__seterr(DISTC_EPROTO, "darray handle of %zu bytes", n);
  uint64_t id = get(&p, 8);
  unsigned dtype = (unsigned)get(&p, 1), ndim = (unsigned)get(&p, 1);
  get(&p, 2);
  uint64_t nchunks = get(&p, 4);
  if (distc_dtype_size((distc_dtype)dtype) == 0 || ndim < 1 ||
      ndim > DISTC_MAXDIM || (size_t)(end - p) < 12 * (size_t)ndim)
    return distc__seterr(DISTC_EPROTO, "malformed darray handle");
  size_t dims[DISTC_MAXDIM], ncuts = 0;
  int grid[DISTC_MAXDIM];
  uint64_t prod = 1;
  for (unsigned k = 0; k < ndim; k++) {
    dims[k] = (size_t)get(&p, 8);
    uint64_t g = get(&p, 4);
    if (g < 1 || g > nchunks || (prod *= g) > nchunks)
      return distc__seterr(DISTC_EPROTO, "malformed darray grid");
    grid[k] = (int)g;
    ncuts += g + 1;
  }
  if (prod != nchunks || n != body_len((int)ndim, ncuts, nchunks))
    return distc__seterr(DISTC_EPROTO, "darray handle of the wrong length");
  dlayout *l = layout_alloc((int)ndim, grid);
  if (!l)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  l->id = id;
  l->dtype = (distc_dtype)dtype;
  memcpy(l->dims, dims, sizeof dims);
  for (unsigned k = 0; k < ndim; k++)
    for (int j = 0; j <= grid[k]; j++) {
      size_t c = (size_t)get(&p, 8);
      bool ok = j == 0 ? c == 0
                       : c >= l->cuts[k][j - 1] &&
                             (j < grid[k] ? c <= dims[k] : c == dims[k]);
      if (!ok) {
        layout_free(l);
        return distc__seterr(DISTC_EPROTO, "malformed darray cuts");
      }
      l->cuts[k][j] = c;
    }
  for (size_t i = 0; i < l->nchunks; i++)
    l->owners[i] = (int)get(&p, 4);
  *out = distc__handle_value(&darray_ops, l);
  return *out ? 0 : DISTC_ENOMEM;
}

static const distc__handle_ops darray_ops = {
    .kind = DISTC__HK_DARRAY,
    .name = "distributed array",
    .encode = darray_encode,
    .decode = darray_decode,
    .release = layout_free,
};

__attribute__((constructor)) static void darray_register(void) {
  distc__handle_register(&darray_ops);
}

static dlayout *as_darray(const distc_value *v) {
  return distc__handle_obj(v, DISTC__HK_DARRAY);
}

static dlayout *layout_copy(const dlayout *src) {
  dlayout *l = layout_alloc(src->ndim, src->grid);
  if (!l)
    return NULL;
  l->id = src->id;
  l->dtype = src->dtype;
  memcpy(l->dims, src->dims, sizeof l->dims);
  for (int k = 0; k < src->ndim; k++)
    memcpy(l->cuts[k], src->cuts[k], sizeof(size_t) * ((size_t)src->grid[k] + 1));
  memcpy(l->owners, src->owners, sizeof(int) * src->nchunks);
  return l;
}

/* ---- the chunk table of this process ---- */

typedef struct chunk {
  struct chunk *next;
  uint64_t id;
  size_t index;
  distc_value *value;
} chunk;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk *table;

/* Takes over the reference to v; replaces an older chunk of (id, index). */
static int table_put(uint64_t id, size_t index, distc_value *v) {
  pthread_mutex_lock(&table_lock);
  for (chunk *c = table; c; c = c->next) {
    if (c->id == id) {
      distc_value *old = c->value;
      c->value = v;
      c->index = index;
      pthread_mutex_unlock(&table_lock);
      distc_value_free(old);
      return 0;
    }
  }
  chunk *c = malloc(sizeof *c);
  if (!c) {
    pthread_mutex_unlock(&table_lock);
    distc_value_free(v);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  *c = (chunk){table, id, index, v};
  table = c;
  pthread_mutex_unlock(&table_lock);
  return 0;
}

/* A new reference to this process's chunk of id, or NULL. */
static distc_value *table_get(uint64_t id) {
  distc_value *v = NULL;
  pthread_mutex_lock(&table_lock);
  for (chunk *c = table; c; c = c->next)
    if (c->id == id) {
      v = distc_value_ref(c->value);
      break;
    }
  pthread_mutex_unlock(&table_lock);
  return v;
}

static void table_drop(uint64_t id) {
  distc_value *v = NULL;
  pthread_mutex_lock(&table_lock);
  for (chunk **p = &table; *p; p = &(*p)->next) {
    if ((*p)->id == id) {
      chunk *c = *p;
      *p = c->next;
      v = c->value;
      free(c);
      break;
    }
  }
  pthread_mutex_unlock(&table_lock);
  distc_value_free(v);
}

static int no_chunk(const dlayout *l) {
  return distc__seterr(DISTC_ENOENT,
                       "process %d holds no chunk of distributed array %llu "
                       "(it is not an owner, or the array was freed)",
                       distc__C.myid, (unsigned long long)l->id);
}

/* ---- copying blocks between a whole array and a chunk ---- */

/* Copies the box [lo, hi) of the array with dims `dims` (data `whole`) to or
 * from the dense chunk `part`, column-major both. */
static void copy_box(char *whole, const size_t *dims, char *part,
                     const size_t *lo, const size_t *hi, int ndim,
                     size_t esize, bool to_part) {
  size_t run = (hi[0] - lo[0]) * esize;
  for (int k = 0; k < ndim; k++)
    if (hi[k] == lo[k])
      return;
  size_t idx[DISTC_MAXDIM];
  memcpy(idx, lo, sizeof(size_t) * (size_t)ndim);
  for (;;) {
    size_t off = 0, stride = 1;
    for (int k = 0; k < ndim; k++) {
      off += idx[k] * stride;
      stride *= dims[k];
    }
    char *w = whole + off * esize;
    if (to_part)
      memcpy(part, w, run);
    else
      memcpy(w, part, run);
    part += run;
    int k = 1;
    for (; k < ndim; k++) {
      if (++idx[k] < hi[k])
        break;
      idx[k] = lo[k];
    }
    if (k >= ndim)
      return;
  }
}

/* ---- the owners' side ---- */

/* Fails the running call with code (and distc_errmsg() as its text) rather
 * than distc_fail's DISTC_EREMOTE, so a missing chunk reads as DISTC_ENOENT
 * and an unknown function as DISTC_ENOTREG at the caller. */
static distc_value *fail_with(distc_ctx *ctx, int code) {
  distc__reply *r = distc__call_defer(ctx);
  if (!r)
    return distc_fail(ctx, "%s", distc_errmsg());
  distc__reply_send(r, code, NULL, distc_errmsg());
  return distc_nil();
}

static distc_value *new_chunk(const dlayout *l, size_t i) {
  size_t lo[DISTC_MAXDIM], hi[DISTC_MAXDIM], d[DISTC_MAXDIM];
  chunk_box(l, i, lo, hi);
  for (int k = 0; k < l->ndim; k++)
    d[k] = hi[k] - lo[k];
  return distc_array(l->dtype, l->ndim, d);
}

/* [D, i, chunk]: keep chunk i of D (distribute). */
DISTC_FUNCTION(distc__darray_store) {
  dlayout *l = as_darray(distc_list_at(args, 0));
  size_t i = (size_t)distc_value_int(distc_list_at(args, 1));
  distc_value *v = distc_list_at(args, 2);
  if (!l || i >= l->nchunks || l->owners[i] != distc__C.myid ||
      distc_value_type(v) != DISTC_ARRAY || distc_array_dtype(v) != l->dtype ||
      distc_array_ndim(v) != l->ndim)
    return distc_fail(ctx, "malformed darray store");
  size_t lo[DISTC_MAXDIM], hi[DISTC_MAXDIM];
  chunk_box(l, i, lo, hi);
  for (int k = 0; k < l->ndim; k++)
    if (distc_array_dims(v)[k] != hi[k] - lo[k])
      return distc_fail(ctx, "chunk %zu does not fit its place in the "
                        "layout", i);
  if (table_put(l->id, i, distc_value_ref(v)) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  return distc_nil();
}

/* Calls fn([first, second?, rest...]) here, with the usual error text. */
static int call_here(const char *fn, distc_value *first, distc_value *second,
                     const distc_value *rest, distc_value **out) {
  size_t nrest = distc_list_len(rest), n = 1 + (second != NULL);
  distc_value *a = distc_list(n + nrest);
  int rc = a ? 0 : DISTC_ENOMEM;
  if (!rc)
    rc = distc_list_set(a, 0, distc_value_ref(first));
  if (!rc && second)
    rc = distc_list_set(a, 1, distc_value_ref(second));
  for (size_t j = 0; !rc && j < nrest; j++)
    rc = distc_list_set(a, n + j, distc_value_ref(distc_list_at(rest, j)));
  if (!rc)
    rc = distc_remotecall_fetch(distc__C.myid, fn, a, out);
  distc_value_free(a);
  /* The answer to our own caller names this process already. */
  const char *m = distc_errmsg(), *colon = strstr(m, ": ");
  if (rc < 0 && strncmp(m, "On worker ", 10) == 0 && colon) {
    char *keep = strdup(colon + 2);
    if (keep) {
      distc__seterr(rc, "%s", keep);
      free(keep);
    }
  }
  return rc;
}

/* [D, init or nil, init_args]: make my chunk of D, zeroed, then run init. */
DISTC_FUNCTION(distc__darray_init) {
  distc_value *d = distc_list_at(args, 0);
  dlayout *l = as_darray(d);
  const char *init = distc_value_str(distc_list_at(args, 1), NULL);
  long i = l ? my_chunk(l) : -1;
  if (i < 0)
    return distc_fail(ctx, "malformed darray init");
  distc_value *v = new_chunk(l, (size_t)i);
  if (!v || table_put(l->id, (size_t)i, v) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  if (init) {
    distc_value *r = NULL;
    int rc = call_here(init, d, NULL, distc_list_at(args, 2), &r);
    distc_value_free(r);
    if (rc < 0) {
      table_drop(l->id);
      return fail_with(ctx, rc);
    }
  }
  return distc_nil();
}

/* [D]: my chunk of D (gather). */
DISTC_FUNCTION(distc__darray_get) {
  dlayout *l = as_darray(distc_list_at(args, 0));
  distc_value *v = l ? table_get(l->id) : NULL;
  if (!l)
    return distc_fail(ctx, "malformed darray get");
  if (!v)
    return fail_with(ctx, no_chunk(l));
  return v;
}

/* [D, newid, fn, args]: my chunk of a new darray is fn([chunk, D, args...]);
 * answers [dtype, [dims]] of what fn made. */
DISTC_FUNCTION(distc__darray_map) {
  distc_value *d = distc_list_at(args, 0);
  dlayout *l = as_darray(d);
  uint64_t newid = (uint64_t)distc_value_int(distc_list_at(args, 1));
  const char *fn = distc_value_str(distc_list_at(args, 2), NULL);
  long i = l ? my_chunk(l) : -1;
  if (i < 0 || !fn)
    return distc_fail(ctx, "malformed darray map");
  distc_value *c = table_get(l->id);
  if (!c)
    return fail_with(ctx, no_chunk(l));
  distc_value *r = NULL;
  int rc = call_here(fn, c, d, distc_list_at(args, 3), &r);
  distc_value_free(c);
  if (rc < 0)
    return fail_with(ctx, rc);
  if (distc_value_type(r) != DISTC_ARRAY || distc_array_ndim(r) != l->ndim) {
    distc_value_free(r);
    return distc_fail(ctx, "'%s' must return an array of %d dimensions (a "
                      "chunk of the new distributed array)", fn, l->ndim);
  }
  distc_value *dims = distc_list((size_t)l->ndim);
  for (int k = 0; dims && k < l->ndim; k++)
    distc_list_set(dims, (size_t)k, distc_int((int64_t)distc_array_dims(r)[k]));
  distc_value *ans = distc_listv(2, distc_int(distc_array_dtype(r)), dims);
  if (!ans || table_put(newid, (size_t)i, r) < 0) {
    distc_value_free(ans);
    return distc_fail(ctx, "out of memory");
  }
  return ans;
}

/* Reduces the n elements of p with op: an int for integer dtypes, a double
 * for floating ones; nil when n is 0.  The operators are reduce_ops.c's, so
 * a chunk reduces as distc_reduce would (NaN included).  Narrow integers
 * are widened first: their sums and products wrap at 64 bits. */
#define REDUCE(T, ACC, OPFN, MK)                                              \
  do {                                                                        \
    const T *x = p;                                                           \
    ACC a = (ACC)x[0];                                                        \
    for (size_t j = 1; j < n; j++)                                            \
      a = OPFN(op, a, (ACC)x[j]);                                             \
    return MK(a);                                                             \
  } while (0)

static distc_value *reduce_elems(const void *p, distc_dtype t, size_t n,
                                 distc_op op) {
  if (n == 0)
    return distc_nil();
  switch (t) {
  case DISTC_F64:
    REDUCE(double, double, distc__op_f64, distc_double);
  case DISTC_F32:
    REDUCE(float, double, distc__op_f64, distc_double);
  case DISTC_I64:
    REDUCE(int64_t, int64_t, distc__op_i64, distc_int);
  case DISTC_I32:
    REDUCE(int32_t, int64_t, distc__op_i64, distc_int);
  case DISTC_U8:
    REDUCE(uint8_t, int64_t, distc__op_i64, distc_int);
  }
  return distc_nil();
}

/* [D, fn or nil, op]: my chunk reduced to one value. */
DISTC_FUNCTION(distc__darray_reduce) {
  distc_value *d = distc_list_at(args, 0);
  dlayout *l = as_darray(d);
  const char *fn = distc_value_str(distc_list_at(args, 1), NULL);
  distc_op op = (distc_op)distc_value_int(distc_list_at(args, 2));
  if (!l || op < DISTC_OP_SUM || op > DISTC_OP_MAX)
    return distc_fail(ctx, "malformed darray reduce");
  distc_value *c = table_get(l->id);
  if (!c)
    return fail_with(ctx, no_chunk(l));
  distc_value *r = NULL;
  if (fn) {
    int rc = call_here(fn, c, d, NULL, &r);
    if (rc < 0) {
      distc_value_free(c);
      return fail_with(ctx, rc);
    }
  } else {
    r = reduce_elems(distc_array_data(c), distc_array_dtype(c),
                     distc_array_len(c), op);
  }
  distc_value_free(c);
  return r;
}

/* [id]: let go of my chunk of darray id. */
DISTC_FUNCTION(distc__darray_release) {
  (void)ctx;
  table_drop((uint64_t)distc_value_int(distc_list_at(args, 0)));
  return distc_nil();
}

/* ---- built-in init functions ---- */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* [D, seed]: uniform [0, 1) (floating) or [0, 100) (integers). */
DISTC_FUNCTION(distc_darray_rand) {
  distc_value *c;
  dlayout *l = as_darray(distc_list_at(args, 0));
  if (!l)
    return distc_fail(ctx, "distc_darray_rand wants [D, seed]");
  if (distc_darray_localpart(distc_list_at(args, 0), &c) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  uint64_t s = (uint64_t)distc_value_int(distc_list_at(args, 1)) ^
               ((uint64_t)my_chunk(l) + 1) * 0xd1b54a32d192ed03ull;
  void *p = distc_array_data(c);
  for (size_t j = 0, n = distc_array_len(c); j < n; j++) {
    uint64_t r = splitmix(&s);
    double u = (double)(r >> 11) * 0x1p-53;
    switch (l->dtype) {
    case DISTC_F64: ((double *)p)[j] = u; break;
    case DISTC_F32: ((float *)p)[j] = (float)(r >> 40) * 0x1p-24f; break;
    case DISTC_I64: ((int64_t *)p)[j] = (int64_t)(r % 100); break;
    case DISTC_I32: ((int32_t *)p)[j] = (int32_t)(r % 100); break;
    case DISTC_U8: ((uint8_t *)p)[j] = (uint8_t)(r % 100); break;
    }
  }
  distc_value_free(c);
  return distc_nil();
}

/* [D, x]: every element x. */
DISTC_FUNCTION(distc_darray_fill) {
  distc_value *c;
  dlayout *l = as_darray(distc_list_at(args, 0));
  const distc_value *x = distc_list_at(args, 1);
  if (!l || (distc_value_type(x) != DISTC_INT &&
             distc_value_type(x) != DISTC_DOUBLE))
    return distc_fail(ctx, "distc_darray_fill wants [D, number]");
  if (distc_darray_localpart(distc_list_at(args, 0), &c) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  void *p = distc_array_data(c);
  double xd = distc_value_double(x);
  int64_t xi = distc_value_int(x);
  for (size_t j = 0, n = distc_array_len(c); j < n; j++) {
    switch (l->dtype) {
    case DISTC_F64: ((double *)p)[j] = xd; break;
    case DISTC_F32: ((float *)p)[j] = (float)xd; break;
    case DISTC_I64: ((int64_t *)p)[j] = xi; break;
    case DISTC_I32: ((int32_t *)p)[j] = (int32_t)xi; break;
    case DISTC_U8: ((uint8_t *)p)[j] = (uint8_t)xi; break;
    }
  }
  distc_value_free(c);
  return distc_nil();
}

/* ---- the master's side ---- */

static int need_master(const char *what) {
  if (!distc__C.initialised || distc__C.finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!distc__C.is_master)
    return distc__seterr(DISTC_ENOTMASTER, "only the master can %s a "
                         "distributed array", what);
  return 0;
}

/* Julia's defaultdist: the owner count's prime factors, largest first, each
 * given to the largest dimension (ties to the last). */
static void default_dist(int ndim, const size_t *dims, int np, int *dist) {
  size_t d[DISTC_MAXDIM];
  for (int k = 0; k < ndim; k++) {
    d[k] = dims[k];
    dist[k] = 1;
  }
  int f[32], nf = 0;
  for (int n = np, p = 2; n > 1 && nf < 32;) {
    if (n % p == 0) {
      f[nf++] = p;
      n /= p;
    } else {
      p++;
    }
  }
  for (int i = nf - 1; i >= 0; i--) { /* largest first */
    int best = 0;
    for (int k = 1; k < ndim; k++)
      if (d[k] >= d[best])
        best = k;
    if (d[best] >= (size_t)f[i]) {
      d[best] /= (size_t)f[i];
      dist[best] *= f[i];
    }
  }
}

/* Builds the layout for dims from opts: owners, grid, even cuts. */
static int plan(distc_dtype t, int ndim, const size_t *dims,
                const distc_darray_opts *o, dlayout **out) {
  if (distc_dtype_size(t) == 0 || ndim < 1 || ndim > DISTC_MAXDIM || !dims)
    return distc__seterr(DISTC_EINVAL, "distributed array: bad dtype %d or "
                         "ndim %d (1..%d, with dims)", (int)t, ndim,
                         DISTC_MAXDIM);
  int nall = distc_nprocs() + 1;
  int *pids = malloc(sizeof *pids * (size_t)(nall + (o ? o->npids : 0) + 1));
  if (!pids)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  int np, rc = 0;
  if (o && o->npids > 0) {
    if (!o->pids) {
      rc = distc__seterr(DISTC_EINVAL, "distc_darray_opts: npids without pids");
      goto free_pids;
    }
    np = o->npids;
    for (int i = 0; i < np; i++) {
      pids[i] = o->pids[i];
      for (int j = 0; j < i; j++)
        if (pids[j] == pids[i]) {
          rc = distc__seterr(DISTC_EINVAL, "process %d is listed twice among "
                             "the owners", pids[i]);
          goto free_pids;
        }
      distc__conn *c = pids[i] == distc__C.myid ? NULL
                                                : distc__conn_get(pids[i]);
      if (pids[i] != distc__C.myid && !c) {
        rc = distc__seterr(DISTC_ENOENT, "there is no process %d to own a "
                           "chunk (see distc_workers())", pids[i]);
        goto free_pids;
      }
      distc__conn_unref(c);
    }
  } else {
    np = distc_workers(pids, nall);
  }
  int grid[DISTC_MAXDIM];
  if (o && o->dist) {
    size_t prod = 1;
    for (int k = 0; k < ndim; k++) {
      grid[k] = o->dist[k];
      size_t most = dims[k] ? dims[k] : 1;
      if (grid[k] < 1 || (size_t)grid[k] > most) {
        rc = distc__seterr(DISTC_EINVAL, "dist[%d] = %d: each dimension needs "
                           "1 to %zu chunks", k, grid[k], most);
        goto free_pids;
      }
      prod *= (size_t)grid[k];
    }
    if (prod > (size_t)np) {
      rc = distc__seterr(DISTC_EINVAL, "dist asks for %zu chunks but there are "
                         "%d owners", prod, np);
      goto free_pids;
    }
  } else {
    default_dist(ndim, dims, np, grid);
  }
  dlayout *l = layout_alloc(ndim, grid);
  if (!l) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto free_pids;
  }
  l->id = atomic_fetch_add(&next_id, 1);
  l->dtype = t;
  for (int k = 0; k < ndim; k++) {
    l->dims[k] = dims[k];
    for (int j = 0; j <= grid[k]; j++)
      l->cuts[k][j] = (size_t)((unsigned __int128)dims[k] * (unsigned)j /
                               (unsigned)grid[k]);
  }
  memcpy(l->owners, pids, sizeof(int) * l->nchunks);
  *out = l;
free_pids:
  free(pids);
  return rc;
}

/* Calls fn([D, rest...]) on every owner, all at once; gathers the errors.
 * With vals, the answers are kept there (one per chunk). */
static int on_owners(const dlayout *l, distc_value *d, const char *fn,
                     const distc_value *rest, distc_value **vals) {
  size_t nrest = distc_list_len(rest);
  distc_value *a = distc_list(1 + nrest);
  distc_future **fs = calloc(l->nchunks, sizeof *fs);
  int rc = a && fs ? distc_list_set(a, 0, distc_value_ref(d))
                   : distc__seterr(DISTC_ENOMEM, "out of memory");
  for (size_t j = 0; !rc && j < nrest; j++)
    rc = distc_list_set(a, 1 + j, distc_value_ref(distc_list_at(rest, j)));
  size_t nf = 0;
  /* Remote owners first: a local one runs right here, inside remotecall. */
  for (int pass = 0; pass < 2 && !rc; pass++)
    for (size_t i = 0; i < l->nchunks && !rc; i++)
      if ((l->owners[i] == distc__C.myid) == (pass == 1)) {
        rc = distc_remotecall(l->owners[i], fn, a, &fs[i]);
        nf += !rc;
      }
  if (rc < 0) {
    char *msg = strdup(distc_errmsg());
    for (size_t i = 0; i < l->nchunks; i++)
      distc_wait(fs[i]);
    distc__seterr(rc, "%s", msg ? msg : distc_strerror(rc));
    free(msg);
  } else {
    rc = distc__gather(fs, l->nchunks);
  }
  /* Fetching a failed future would replace the gathered message. */
  char *msg = rc < 0 ? strdup(distc_errmsg()) : NULL;
  for (size_t i = 0; fs && i < l->nchunks; i++) {
    if (vals && fs[i] && distc_fetch(fs[i], &vals[i]) < 0)
      vals[i] = NULL;
    distc_future_free(fs[i]);
  }
  if (msg)
    distc__seterr(rc, "%s", msg);
  free(msg);
  free(fs);
  distc_value_free(a);
  return rc;
}

static void release_everywhere(const dlayout *l, uint64_t id) {
  distc_value *a = distc_listv(1, distc_int((int64_t)id));
  for (size_t i = 0; a && i < l->nchunks; i++) {
    if (l->owners[i] == distc__C.myid) {
      table_drop(id);
      continue;
    }
    distc__conn *c = distc__conn_get(l->owners[i]);
    if (c) /* a dead owner's chunk went with it */
      distc_remotecall_wait(l->owners[i], "distc__darray_release", a);
    distc__conn_unref(c);
  }
  distc_value_free(a);
}

int distc_darray_new(distc_dtype t, int ndim, const size_t *dims,
                     const distc_darray_opts *o, distc_value **out) {
  int rc;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_darray_new: NULL out");
  *out = NULL;
  if ((rc = need_master("create")) < 0)
    return rc;
  if (o && o->init_args && distc_value_type(o->init_args) != DISTC_LIST)
    return distc__seterr(DISTC_EINVAL, "init_args must be a list");
  dlayout *l;
  if ((rc = plan(t, ndim, dims, o, &l)) < 0)
    return rc;
  distc_value *d = distc__handle_value(&darray_ops, l);
  if (!d)
    return DISTC_ENOMEM;
  distc_value *rest = distc_listv(
      2, o && o->init ? distc_string(o->init) : distc_nil(),
      o && o->init_args ? distc_value_ref((distc_value *)o->init_args)
                        : distc_list(0));
  rc = rest ? on_owners(l, d, "distc__darray_init", rest, NULL)
            : distc__seterr(DISTC_ENOMEM, "out of memory");
  distc_value_free(rest);
  if (rc < 0) {
    char *msg = strdup(distc_errmsg());
    release_everywhere(l, l->id);
    distc_value_free(d);
    distc__seterr(rc, "creating a distributed array: %s", msg ? msg : "");
    free(msg);
    return rc;
  }
  *out = d;
  return 0;
}

int distc_darray_distribute(const distc_value *a, const distc_darray_opts *o,
                            distc_value **out) {
  int rc;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_darray_distribute: NULL out");
  *out = NULL;
  if ((rc = need_master("distribute")) < 0)
    return rc;
  if (distc_value_type(a) != DISTC_ARRAY)
    return distc__seterr(DISTC_ETYPE, "distc_darray_distribute wants an array");
  dlayout *l;
  if ((rc = plan(distc_array_dtype(a), distc_array_ndim(a),
                 distc_array_dims(a), o, &l)) < 0)
    return rc;
  distc_value *d = distc__handle_value(&darray_ops, l);
  if (!d)
    return DISTC_ENOMEM;
  distc_future **fs = calloc(l->nchunks, sizeof *fs);
  if (!fs) {
    distc_value_free(d);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  size_t esize = distc_dtype_size(l->dtype);
  /* One chunk exists at a time here: the call sends it before returning. */
  for (size_t i = 0; i < l->nchunks && rc == 0; i++) {
    size_t lo[DISTC_MAXDIM], hi[DISTC_MAXDIM];
    chunk_box(l, i, lo, hi);
    distc_value *c = new_chunk(l, i);
    if (!c) {
      rc = DISTC_ENOMEM;
      break;
    }
    copy_box(distc_array_data(a), l->dims, distc_array_data(c), lo, hi,
             l->ndim, esize, true);
    distc_value *args = distc_listv(3, distc_value_ref(d),
                                    distc_int((int64_t)i), c);
    rc = args ? distc_remotecall(l->owners[i], "distc__darray_store", args,
                                 &fs[i])
              : DISTC_ENOMEM;
    distc_value_free(args);
  }
  if (rc < 0) {
    char *msg = strdup(distc_errmsg());
    distc__gather(fs, l->nchunks);
    distc__seterr(rc, "%s", msg ? msg : distc_strerror(rc));
    free(msg);
  } else {
    rc = distc__gather(fs, l->nchunks);
  }
  for (size_t i = 0; i < l->nchunks; i++)
    distc_future_free(fs[i]);
  free(fs);
  if (rc < 0) {
    char *msg = strdup(distc_errmsg());
    release_everywhere(l, l->id);
    distc_value_free(d);
    distc__seterr(rc, "distributing an array: %s", msg ? msg : "");
    free(msg);
    return rc;
  }
  *out = d;
  return 0;
}

int distc_darray_gather(const distc_value *d, distc_value **out) {
  int rc;
  dlayout *l = as_darray(d);
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_darray_gather: NULL out");
  *out = NULL;
  if ((rc = need_master("gather")) < 0)
    return rc;
  if (!l)
    return distc__seterr(DISTC_ETYPE, "not a distributed array");
  distc_value *a = distc_array(l->dtype, l->ndim, l->dims);
  distc_value **parts = calloc(l->nchunks, sizeof *parts);
  if (!a || !parts) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = on_owners(l, (distc_value *)d, "distc__darray_get", NULL,
                      parts)) < 0)
    goto fail;
  size_t esize = distc_dtype_size(l->dtype);
  for (size_t i = 0; i < l->nchunks; i++) {
    size_t lo[DISTC_MAXDIM], hi[DISTC_MAXDIM], n = 1;
    chunk_box(l, i, lo, hi);
    for (int k = 0; k < l->ndim; k++)
      n *= hi[k] - lo[k];
    if (distc_value_type(parts[i]) != DISTC_ARRAY ||
        distc_array_dtype(parts[i]) != l->dtype ||
        distc_array_len(parts[i]) != n) {
      rc = distc__seterr(DISTC_EPROTO, "chunk %zu from process %d does not "
                         "fit the layout", i, l->owners[i]);
      goto fail;
    }
    copy_box(distc_array_data(a), l->dims, distc_array_data(parts[i]), lo, hi,
             l->ndim, esize, false);
  }
  *out = a;
  a = NULL;
fail:
  for (size_t i = 0; parts && i < l->nchunks; i++)
    distc_value_free(parts[i]);
  free(parts);
  distc_value_free(a);
  return rc;
}

int distc_darray_map(const distc_value *d, const char *fn,
                     const distc_value *args, distc_value **out) {
  int rc;
  dlayout *l = as_darray(d);
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_darray_map: NULL out");
  *out = NULL;
  if ((rc = need_master("map")) < 0)
    return rc;
  if (!l || !fn)
    return distc__seterr(!l ? DISTC_ETYPE : DISTC_EINVAL,
                         "distc_darray_map wants a distributed array and a "
                         "function name");
  if (args && distc_value_type(args) != DISTC_LIST)
    return distc__seterr(DISTC_EINVAL, "args must be a list");
  dlayout *nl = layout_copy(l);
  distc_value **shapes = calloc(l->nchunks, sizeof *shapes);
  distc_value *rest = distc_listv(
      3, distc_int(0), distc_string(fn),
      args ? distc_value_ref((distc_value *)args) : distc_list(0));
  if (!nl || !shapes || !rest) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto fail;
  }
  nl->id = atomic_fetch_add(&next_id, 1);
  distc_list_set(rest, 0, distc_int((int64_t)nl->id));
  if ((rc = on_owners(l, (distc_value *)d, "distc__darray_map", rest,
                      shapes)) < 0)
    goto fail;

  /* The new chunks must tile an array: one dtype, and one length per slab
   * of the grid along each dimension (lens[k][j], seen once set). */
  size_t total = 0, *lens[DISTC_MAXDIM];
  bool *seen[DISTC_MAXDIM];
  for (int k = 0; k < l->ndim; k++)
    total += (size_t)l->grid[k];
  size_t *lenmem = calloc(total, sizeof *lenmem);
  bool *seenmem = calloc(total, sizeof *seenmem);
  if (!lenmem || !seenmem) {
    free(lenmem);
    free(seenmem);
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto fail;
  }
  for (int k = 0, off = 0; k < l->ndim; off += l->grid[k], k++) {
    lens[k] = lenmem + off;
    seen[k] = seenmem + off;
  }
  for (size_t i = 0; i < l->nchunks && rc == 0; i++) {
    const distc_value *s = shapes[i];
    const distc_value *dl = distc_list_at(s, 1);
    distc_dtype t = (distc_dtype)distc_value_int(distc_list_at(s, 0));
    int c[DISTC_MAXDIM];
    chunk_coords(l, i, c);
    if (i == 0)
      nl->dtype = t;
    if (t != nl->dtype) {
      rc = distc__seterr(DISTC_EINVAL, "'%s' returned chunks of different "
                         "dtypes (chunk 0: %d, chunk %zu: %d)", fn,
                         (int)nl->dtype, i, (int)t);
      break;
    }
    for (int k = 0; k < l->ndim && rc == 0; k++) {
      size_t n = (size_t)distc_value_int(distc_list_at(dl, (size_t)k));
      if (!seen[k][c[k]]) {
        seen[k][c[k]] = true;
        lens[k][c[k]] = n;
      } else if (lens[k][c[k]] != n) {
        rc = distc__seterr(DISTC_EINVAL,
                           "'%s' returned chunks that do not tile an array: "
                           "along dimension %d, chunk %zu has %zu elements "
                           "where its neighbours have %zu",
                           fn, k + 1, i, n, lens[k][c[k]]);
      }
    }
  }
  if (rc == 0) {
    for (int k = 0; k < l->ndim; k++) {
      nl->cuts[k][0] = 0;
      for (int j = 0; j < l->grid[k]; j++)
        nl->cuts[k][j + 1] = nl->cuts[k][j] + lens[k][j];
      nl->dims[k] = nl->cuts[k][l->grid[k]];
    }
  }
  free(lenmem);
  free(seenmem);
  if (rc < 0)
    goto fail;
  *out = distc__handle_value(&darray_ops, nl);
  nl = NULL;
  rc = *out ? 0 : DISTC_ENOMEM;
  goto done;
fail:
  if (nl) {
    char *msg = strdup(distc_errmsg());
    release_everywhere(nl, nl->id);
    distc__seterr(rc, "%s", msg ? msg : distc_strerror(rc));
    free(msg);
  }
  layout_free(nl);
done:
  for (size_t i = 0; shapes && i < l->nchunks; i++)
    distc_value_free(shapes[i]);
  free(shapes);
  distc_value_free(rest);
  return rc;
}

int distc_darray_reduce(const distc_value *d, const char *fn, distc_op op,
                        distc_value **out) {
  int rc;
  dlayout *l = as_darray(d);
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_darray_reduce: NULL out");
  *out = NULL;
  if ((rc = need_master("reduce")) < 0)
    return rc;
  if (!l)
    return distc__seterr(DISTC_ETYPE, "not a distributed array");
  if (op < DISTC_OP_SUM || op > DISTC_OP_MAX)
    return distc__seterr(DISTC_EINVAL, "unknown reduction operator %d",
                         (int)op);
  distc_value **parts = calloc(l->nchunks, sizeof *parts);
  distc_value *rest = distc_listv(2, fn ? distc_string(fn) : distc_nil(),
                                  distc_int(op));
  distc_value *acc = NULL;
  if (!parts || !rest) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto done;
  }
  if ((rc = on_owners(l, (distc_value *)d, "distc__darray_reduce", rest,
                      parts)) < 0)
    goto done;
  /* Chunk order; empty chunks (nil) take no part. */
  for (size_t i = 0; i < l->nchunks && rc == 0; i++) {
    if (distc_value_type(parts[i]) == DISTC_NIL)
      continue;
    if (!acc)
      acc = distc_value_ref(parts[i]);
    else
      rc = distc__op_combine(op, &acc, parts[i]);
  }
done:
  for (size_t i = 0; parts && i < l->nchunks; i++)
    distc_value_free(parts[i]);
  free(parts);
  distc_value_free(rest);
  if (rc < 0) {
    distc_value_free(acc);
    return rc;
  }
  *out = acc ? acc : distc_nil();
  return 0;
}

int distc_darray_free(distc_value *d) {
  if (!d)
    return 0;
  dlayout *l = as_darray(d);
  int rc = l ? need_master("free") : distc__seterr(DISTC_ETYPE, "not a "
                                                   "distributed array");
  if (rc == 0)
    release_everywhere(l, l->id);
  distc_value_free(d);
  return rc;
}

/* ---- queries ---- */

bool distc_is_darray(const distc_value *v) { return as_darray(v) != NULL; }

int distc_darray_info(const distc_value *d, distc_dtype *t, int *ndim,
                      size_t *dims) {
  dlayout *l = as_darray(d);
  if (!l)
    return distc__seterr(DISTC_ETYPE, "not a distributed array");
  if (t)
    *t = l->dtype;
  if (ndim)
    *ndim = l->ndim;
  if (dims)
    memcpy(dims, l->dims, sizeof(size_t) * (size_t)l->ndim);
  return 0;
}

size_t distc_darray_nchunks(const distc_value *d) {
  dlayout *l = as_darray(d);
  return l ? l->nchunks : 0;
}

int distc_darray_chunk(const distc_value *d, size_t i, int *owner, size_t *lo,
                       size_t *hi) {
  dlayout *l = as_darray(d);
  if (!l)
    return distc__seterr(DISTC_ETYPE, "not a distributed array");
  if (i >= l->nchunks)
    return distc__seterr(DISTC_EINVAL, "chunk %zu of %zu", i, l->nchunks);
  if (owner)
    *owner = l->owners[i];
  chunk_box(l, i, lo, hi);
  return 0;
}

int distc_darray_procs(const distc_value *d, int *ids, int max) {
  dlayout *l = as_darray(d);
  if (!l)
    return distc__seterr(DISTC_ETYPE, "not a distributed array");
  for (size_t i = 0; ids && i < l->nchunks && i < (size_t)max; i++)
    ids[i] = l->owners[i];
  return (int)l->nchunks;
}

int distc_darray_localpart(const distc_value *d, distc_value **out) {
  dlayout *l = as_darray(d);
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_darray_localpart: NULL out");
  *out = NULL;
  if (!l)
    return distc__seterr(DISTC_ETYPE, "not a distributed array");
  if (!(*out = table_get(l->id)))
    return no_chunk(l);
  return 0;
}

int distc_darray_localindices(const distc_value *d, size_t *lo, size_t *hi) {
  dlayout *l = as_darray(d);
  if (!l)
    return distc__seterr(DISTC_ETYPE, "not a distributed array");
  long i = my_chunk(l);
  if (i < 0)
    return no_chunk(l);
  chunk_box(l, (size_t)i, lo, hi);
  return 0;
}

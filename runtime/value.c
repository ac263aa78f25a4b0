/* value.c — distc_value: constructors, accessors, refcounting, equality, and
 * the allocation indirection every value allocation goes through.
 *
 * Values are immutable once shared, except array data (filled in place by its
 * owner) and lists (filled with distc_list_set/push).  A list owns one
 * reference to each item; freeing the last reference to a value frees its
 * items recursively.  A list that contains itself is never freed: the
 * functions refuse the direct case, the encoder's depth limit catches the rest.
 *
 * Handles (value.h) are values whose identity lives elsewhere: a DISTC_HANDLE
 * value, or an array whose data is a shared mapping.  The value holds one
 * reference to its object and gives it back through the kind's release.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "value.h"

/* ---- allocation ---------------------------------------------------------- */

int distc__alloc_fail_after;

/* The test hook: counts down and fails the allocation that reaches zero. */
static bool alloc_should_fail(void) {
  return distc__alloc_fail_after > 0 && --distc__alloc_fail_after == 0;
}

/* malloc(0) may return NULL, which would read as a failure: never ask for 0. */
void *distc__alloc(size_t n) {
  return alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *distc__realloc(void *p, size_t n) {
  return alloc_should_fail() ? NULL : realloc(p, n ? n : 1);
}

/* 64 bytes: a cache line, and enough for any SIMD load on the data.
 * Large blocks get 2 MiB alignment and transparent huge pages: a fresh
 * 64 MiB buffer then takes 32 page faults instead of 16,384, which was a
 * third of the time of receiving it. */
#define HUGE_MIN ((size_t)4 << 20)
#define HUGE_ALIGN ((size_t)2 << 20)
void *distc__aligned_alloc(size_t n) {
  if (n > SIZE_MAX - HUGE_ALIGN || alloc_should_fail())
    return NULL;
  if (n >= HUGE_MIN) {
    size_t rounded = (n + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    void *p = aligned_alloc(HUGE_ALIGN, rounded);
    if (p)
      madvise(p, rounded, MADV_HUGEPAGE);
    return p;
  }
  /* C11 wants the size to be a multiple of the alignment. */
  size_t rounded = n ? (n + 63) & ~(size_t)63 : 64;
  return aligned_alloc(64, rounded);
}

/* Every allocator above is libc's underneath, so one free fits all. */
void distc__free(void *p) { free(p); }

/* ---- construction -------------------------------------------------------- */

/* nil is one immortal value: distc_list(n) fills lists with it for free and
 * distc_nil() never fails.  ref/free leave it alone. */
static distc_value nil_value = {.type = DISTC_NIL};

static distc_value *value_new(distc_type type) {
  distc_value *v = distc__alloc(sizeof *v);
  if (!v) {
    distc__seterr(DISTC_ENOMEM, "out of memory allocating a value");
    return NULL;
  }
  memset(v, 0, sizeof *v);
  atomic_init(&v->refs, 1);
  v->type = type;
  return v;
}

distc_value *distc_nil(void) { return &nil_value; }

distc_value *distc_bool(bool b) {
  distc_value *v = value_new(DISTC_BOOL);
  if (v)
    v->u.b = b;
  return v;
}

distc_value *distc_int(int64_t i) {
  distc_value *v = value_new(DISTC_INT);
  if (v)
    v->u.i = i;
  return v;
}

distc_value *distc_double(double d) {
  distc_value *v = value_new(DISTC_DOUBLE);
  if (v)
    v->u.d = d;
  return v;
}

/* Strings and bytes share a layout: n bytes plus a NUL nobody counts. */
static distc_value *buffer_new(distc_type type, const void *p, size_t n) {
  if (!p && n) {
    distc__seterr(DISTC_EINVAL, "NULL pointer with length %zu", n);
    return NULL;
  }
  if (n == SIZE_MAX) {
    distc__seterr(DISTC_ENOMEM, "string of %zu bytes is too large", n);
    return NULL;
  }
  distc_value *v = value_new(type);
  if (!v)
    return NULL;
  v->u.s.p = distc__alloc(n + 1);
  if (!v->u.s.p) {
    distc__free(v);
    distc__seterr(DISTC_ENOMEM, "out of memory allocating %zu bytes", n + 1);
    return NULL;
  }
  if (n)
    memcpy(v->u.s.p, p, n);
  v->u.s.p[n] = '\0';
  v->u.s.n = n;
  return v;
}

distc_value *distc_string(const char *s) {
  if (!s) {
    distc__seterr(DISTC_EINVAL, "distc_string: NULL string");
    return NULL;
  }
  return buffer_new(DISTC_STRING, s, strlen(s));
}

distc_value *distc_stringn(const char *s, size_t n) {
  return buffer_new(DISTC_STRING, s, n);
}

distc_value *distc_bytes(const void *p, size_t n) {
  return buffer_new(DISTC_BYTES, p, n);
}

distc_value *distc_array(distc_dtype t, int ndim, const size_t *dims) {
  distc_value *v = distc__array_uninit(t, ndim, dims);
  if (v)
    memset(v->u.a.data, 0, v->u.a.len * distc_dtype_size(t));
  return v;
}

distc_value *distc__array_uninit(distc_dtype t, int ndim, const size_t *dims) {
  size_t esize = distc_dtype_size(t);
  if (esize == 0) {
    distc__seterr(DISTC_EINVAL, "unknown array dtype %d", (int)t);
    return NULL;
  }
  if (ndim < 0 || ndim > DISTC_MAXDIM || (ndim > 0 && !dims)) {
    distc__seterr(DISTC_EINVAL, "array ndim must be 0..%d with dims given, "
                  "got %d", DISTC_MAXDIM, ndim);
    return NULL;
  }
  size_t len = 1; /* ndim 0 is a scalar: one element */
  for (int k = 0; k < ndim; k++)
    if (__builtin_mul_overflow(len, dims[k], &len)) {
      distc__seterr(DISTC_EINVAL, "array dims overflow the address space");
      return NULL;
    }
  size_t bytes;
  if (__builtin_mul_overflow(len, esize, &bytes)) {
    distc__seterr(DISTC_EINVAL, "array of %zu elements is too large", len);
    return NULL;
  }
  distc_value *v = value_new(DISTC_ARRAY);
  if (!v)
    return NULL;
  v->u.a.data = distc__aligned_alloc(bytes);
  if (!v->u.a.data) {
    distc__free(v);
    distc__seterr(DISTC_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return NULL;
  }
  v->u.a.dtype = t;
  v->u.a.ndim = ndim;
  for (int k = 0; k < ndim; k++)
    v->u.a.dims[k] = dims[k];
  v->u.a.len = len;
  return v;
}

/* ---- handles --------------------------------------------------------------- */

distc_value *distc__handle_value(const distc__handle_ops *ops, void *obj) {
  distc_value *v = value_new(DISTC_HANDLE);
  if (!v) {
    ops->release(obj);
    return NULL;
  }
  v->u.h.ops = ops;
  v->u.h.obj = obj;
  return v;
}

distc_value *distc__array_backed(distc_dtype t, int ndim, const size_t *dims,
                                 void *data, const distc__handle_ops *ops,
                                 void *obj) {
  size_t len = 1;
  bool ok = distc_dtype_size(t) > 0 && ndim >= 0 && ndim <= DISTC_MAXDIM;
  for (int k = 0; ok && k < ndim; k++)
    ok = !__builtin_mul_overflow(len, dims[k], &len);
  distc_value *v = ok ? value_new(DISTC_ARRAY) : NULL;
  if (!v) {
    if (!ok)
      distc__seterr(DISTC_EINVAL, "bad dtype or dims for a backed array");
    ops->release(obj);
    return NULL;
  }
  v->u.a.dtype = t;
  v->u.a.ndim = ndim;
  for (int k = 0; k < ndim; k++)
    v->u.a.dims[k] = dims[k];
  v->u.a.len = len;
  v->u.a.data = data;
  v->u.a.ops = ops;
  v->u.a.obj = obj;
  return v;
}

void *distc__handle_obj(const distc_value *v, unsigned kind) {
  if (v && v->type == DISTC_HANDLE && v->u.h.ops->kind == kind)
    return v->u.h.obj;
  if (v && v->type == DISTC_ARRAY && v->u.a.ops && v->u.a.ops->kind == kind)
    return v->u.a.obj;
  return NULL;
}

/* The wire body of a handle, for equality: heap copy, or NULL. */
static unsigned char *handle_body(const distc__handle_ops *ops, const void *obj,
                                  size_t *n) {
  *n = ops->encode(obj, NULL, 0);
  unsigned char *p = malloc(*n ? *n : 1);
  if (p)
    ops->encode(obj, p, *n);
  return p;
}

distc_value *distc_list(size_t n) {
  if (n > SIZE_MAX / sizeof(distc_value *)) {
    distc__seterr(DISTC_ENOMEM, "list of %zu items is too large", n);
    return NULL;
  }
  distc_value *v = value_new(DISTC_LIST);
  if (!v)
    return NULL;
  if (n) {
    v->u.l.items = distc__alloc(n * sizeof(distc_value *));
    if (!v->u.l.items) {
      distc__free(v);
      distc__seterr(DISTC_ENOMEM, "out of memory allocating a list of %zu", n);
      return NULL;
    }
  }
  for (size_t i = 0; i < n; i++)
    v->u.l.items[i] = &nil_value;
  v->u.l.n = v->u.l.cap = n;
  return v;
}

/* A NULL argument is a constructor that failed: the whole list fails, so
 * nested distc_listv(...) calls report an allocation failure at the top. */
distc_value *distc_listv(size_t n, ...) {
  va_list ap;
  distc_value *l = distc_list(n);
  bool ok = l != NULL;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++) {
    distc_value *v = va_arg(ap, distc_value *);
    if (!v)
      ok = false;
    if (ok)
      l->u.l.items[i] = v;
    else
      distc_value_free(v);
  }
  va_end(ap);
  if (!ok) {
    distc_value_free(l);
    return NULL;
  }
  return l;
}

static int check_item(const distc_value *l, const distc_value *v,
                      const char *fn) {
  if (!l || l->type != DISTC_LIST)
    return distc__seterr(DISTC_EINVAL, "%s: not a list", fn);
  if (!v)
    return distc__seterr(DISTC_EINVAL,
                         "%s: the value is NULL (its constructor failed)", fn);
  if (v == l)
    return distc__seterr(DISTC_EINVAL, "%s: a list cannot contain itself", fn);
  return 0;
}

int distc_list_push(distc_value *l, distc_value *v) {
  int rc = check_item(l, v, "distc_list_push");
  if (rc < 0)
    goto release_v;
  if (l->u.l.n == l->u.l.cap) {
    size_t cap = l->u.l.cap ? l->u.l.cap * 2 : 4;
    if (cap > SIZE_MAX / sizeof(distc_value *)) {
      rc = distc__seterr(DISTC_ENOMEM, "list too long");
      goto release_v;
    }
    distc_value **items = distc__realloc(l->u.l.items, cap * sizeof *items);
    if (!items) {
      rc = distc__seterr(DISTC_ENOMEM, "out of memory growing a list");
      goto release_v;
    }
    l->u.l.items = items;
    l->u.l.cap = cap;
  }
  l->u.l.items[l->u.l.n++] = v;
  return 0;

release_v:
  distc_value_free(v);
  return rc;
}

int distc_list_set(distc_value *l, size_t i, distc_value *v) {
  int rc = check_item(l, v, "distc_list_set");
  if (rc == 0 && i >= l->u.l.n)
    rc = distc__seterr(DISTC_EINVAL, "distc_list_set: index %zu out of range "
                       "(list has %zu items)", i, l->u.l.n);
  if (rc < 0) {
    distc_value_free(v);
    return rc;
  }
  distc_value_free(l->u.l.items[i]);
  l->u.l.items[i] = v;
  return 0;
}

/* ---- reference counting -------------------------------------------------- */

distc_value *distc_value_ref(distc_value *v) {
  if (v && v != &nil_value)
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
  return v;
}

void distc_value_free(distc_value *v) {
  if (!v || v == &nil_value)
    return;
  /* acq_rel: the thread that frees must see every write made through the
   * other references before they were dropped. */
  if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
    return;
  switch (v->type) {
  case DISTC_STRING:
  case DISTC_BYTES:
    distc__free(v->u.s.p);
    break;
  case DISTC_ARRAY:
    if (v->u.a.ops)
      v->u.a.ops->release(v->u.a.obj);
    else
      distc__free(v->u.a.data);
    break;
  case DISTC_HANDLE:
    v->u.h.ops->release(v->u.h.obj);
    break;
  case DISTC_LIST:
    for (size_t i = 0; i < v->u.l.n; i++)
      distc_value_free(v->u.l.items[i]);
    distc__free(v->u.l.items);
    break;
  default:
    break;
  }
  distc__free(v);
}

/* ---- accessors: lenient, a wrong type reads as 0 / false / NULL ---------- */

distc_type distc_value_type(const distc_value *v) {
  return v ? v->type : DISTC_NIL;
}

bool distc_value_bool(const distc_value *v) {
  return v && v->type == DISTC_BOOL && v->u.b;
}

int64_t distc_value_int(const distc_value *v) {
  if (!v)
    return 0;
  if (v->type == DISTC_INT)
    return v->u.i;
  if (v->type != DISTC_DOUBLE || isnan(v->u.d))
    return 0;
  /* Truncates toward zero and saturates: out-of-range casts are UB in C. */
  if (v->u.d >= 0x1p63)
    return INT64_MAX;
  if (v->u.d < -0x1p63)
    return INT64_MIN;
  return (int64_t)v->u.d;
}

double distc_value_double(const distc_value *v) {
  if (v && v->type == DISTC_DOUBLE)
    return v->u.d;
  if (v && v->type == DISTC_INT)
    return (double)v->u.i;
  return 0.0;
}

const char *distc_value_str(const distc_value *v, size_t *len) {
  bool ok = v && (v->type == DISTC_STRING || v->type == DISTC_BYTES);
  if (len)
    *len = ok ? v->u.s.n : 0;
  return ok ? v->u.s.p : NULL;
}

size_t distc_list_len(const distc_value *v) {
  return v && v->type == DISTC_LIST ? v->u.l.n : 0;
}

distc_value *distc_list_at(const distc_value *v, size_t i) {
  return v && v->type == DISTC_LIST && i < v->u.l.n ? v->u.l.items[i] : NULL;
}

static const distc_value *as_array(const distc_value *v) {
  return v && v->type == DISTC_ARRAY ? v : NULL;
}

distc_dtype distc_array_dtype(const distc_value *v) {
  return as_array(v) ? v->u.a.dtype : DISTC_F64;
}

int distc_array_ndim(const distc_value *v) {
  return as_array(v) ? v->u.a.ndim : 0;
}

const size_t *distc_array_dims(const distc_value *v) {
  return as_array(v) ? v->u.a.dims : NULL;
}

size_t distc_array_len(const distc_value *v) {
  return as_array(v) ? v->u.a.len : 0;
}

void *distc_array_data(const distc_value *v) {
  return as_array(v) ? v->u.a.data : NULL;
}

size_t distc_dtype_size(distc_dtype t) {
  switch (t) {
  case DISTC_F64:
  case DISTC_I64:
    return 8;
  case DISTC_F32:
  case DISTC_I32:
    return 4;
  case DISTC_U8:
    return 1;
  }
  return 0;
}

/* ---- equality ------------------------------------------------------------ */

/* Doubles compare like Julia's isequal: NaN equals NaN, -0.0 differs from
 * 0.0, so a value always equals its own round trip.  Array data compares
 * bytewise, which agrees with that for the usual NaN. */
static bool double_equal(double a, double b) {
  if (isnan(a) || isnan(b))
    return isnan(a) && isnan(b);
  return a == b && !signbit(a) == !signbit(b);
}

bool distc_value_equal(const distc_value *a, const distc_value *b) {
  if (a == b)
    return true;
  if (!a || !b || a->type != b->type)
    return false;
  switch (a->type) {
  case DISTC_NIL:
    return true;
  case DISTC_BOOL:
    return a->u.b == b->u.b;
  case DISTC_INT:
    return a->u.i == b->u.i;
  case DISTC_DOUBLE:
    return double_equal(a->u.d, b->u.d);
  case DISTC_STRING:
  case DISTC_BYTES:
    return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
  case DISTC_ARRAY:
    if (a->u.a.dtype != b->u.a.dtype || a->u.a.ndim != b->u.a.ndim)
      return false;
    for (int k = 0; k < a->u.a.ndim; k++)
      if (a->u.a.dims[k] != b->u.a.dims[k])
        return false;
    return memcmp(a->u.a.data, b->u.a.data,
                  a->u.a.len * distc_dtype_size(a->u.a.dtype)) == 0;
  case DISTC_LIST:
    if (a->u.l.n != b->u.l.n)
      return false;
    for (size_t i = 0; i < a->u.l.n; i++)
      if (!distc_value_equal(a->u.l.items[i], b->u.l.items[i]))
        return false;
    return true;
  case DISTC_HANDLE: {
    /* Two handles are equal when they name the same thing: same wire form. */
    if (a->u.h.ops != b->u.h.ops)
      return false;
    size_t na, nb;
    unsigned char *pa = handle_body(a->u.h.ops, a->u.h.obj, &na);
    unsigned char *pb = handle_body(b->u.h.ops, b->u.h.obj, &nb);
    bool eq = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return eq;
  }
  }
  return false;
}

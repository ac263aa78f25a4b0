/* reduce_ops.c — the built-in reduction operators (sum, prod, min, max) on
 * ints, doubles and arrays, element-wise.
 *
 * Integers wrap on overflow, as Julia's do (and without the undefined
 * behaviour of signed overflow in C); min and max of doubles propagate NaN,
 * as Julia's do. */
#include <math.h>
#include <string.h>

#include "parallel.h"

const char *distc__op_name(distc_op op) {
  switch (op) {
  case DISTC_OP_SUM:
    return "sum";
  case DISTC_OP_PROD:
    return "prod";
  case DISTC_OP_MIN:
    return "min";
  case DISTC_OP_MAX:
    return "max";
  }
  return "?";
}

int64_t distc__op_i64(distc_op op, int64_t a, int64_t b) {
  switch (op) {
  case DISTC_OP_SUM:
    return (int64_t)((uint64_t)a + (uint64_t)b);
  case DISTC_OP_PROD:
    return (int64_t)((uint64_t)a * (uint64_t)b);
  case DISTC_OP_MIN:
    return a < b ? a : b;
  case DISTC_OP_MAX:
    return a > b ? a : b;
  }
  return a;
}

double distc__op_f64(distc_op op, double a, double b) {
  switch (op) {
  case DISTC_OP_SUM:
    return a + b;
  case DISTC_OP_PROD:
    return a * b;
  case DISTC_OP_MIN:
    return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
  case DISTC_OP_MAX:
    return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
  }
  return a;
}

/* Narrow integer types wrap through their unsigned twins. */
#define ELEMENTWISE(T, U, a, b, n, op)                                        \
  do {                                                                        \
    T *x = (T *)(a);                                                          \
    const T *y = (const T *)(b);                                              \
    for (size_t i = 0; i < (n); i++) {                                        \
      switch (op) {                                                           \
      case DISTC_OP_SUM:                                                      \
        x[i] = (T)((U)x[i] + (U)y[i]);                                        \
        break;                                                                \
      case DISTC_OP_PROD:                                                     \
        x[i] = (T)((U)x[i] * (U)y[i]);                                        \
        break;                                                                \
      case DISTC_OP_MIN:                                                      \
        x[i] = x[i] < y[i] ? x[i] : y[i];                                     \
        break;                                                                \
      case DISTC_OP_MAX:                                                      \
        x[i] = x[i] > y[i] ? x[i] : y[i];                                     \
        break;                                                                \
      }                                                                       \
    }                                                                         \
  } while (0)

static void arrays(distc_op op, distc_value *acc, const distc_value *v) {
  void *a = acc->u.a.data;
  const void *b = v->u.a.data;
  size_t n = acc->u.a.len;
  switch (acc->u.a.dtype) {
  case DISTC_F64: {
    double *x = a;
    const double *y = b;
    for (size_t i = 0; i < n; i++)
      x[i] = distc__op_f64(op, x[i], y[i]);
    break;
  }
  case DISTC_F32: {
    float *x = a;
    const float *y = b;
    for (size_t i = 0; i < n; i++)
      x[i] = (float)distc__op_f64(op, x[i], y[i]);
    break;
  }
  case DISTC_I64:
    ELEMENTWISE(int64_t, uint64_t, a, b, n, op);
    break;
  case DISTC_I32:
    ELEMENTWISE(int32_t, uint32_t, a, b, n, op);
    break;
  case DISTC_U8:
    ELEMENTWISE(uint8_t, unsigned, a, b, n, op);
    break;
  }
}

static const char *type_name(const distc_value *v) {
  static const char *const names[] = {"nil",   "bool",  "int",  "double",
                                      "string", "bytes", "array", "list"};
  distc_type t = distc_value_type(v);
  return (unsigned)t < DISTC__ARRAY_LEN(names) ? names[t] : "?";
}

/* A private copy of an array, to combine into without touching a value
 * someone else holds. */
static distc_value *array_copy(const distc_value *v) {
  distc_value *c = distc_array(v->u.a.dtype, v->u.a.ndim, v->u.a.dims);
  if (c)
    memcpy(c->u.a.data, v->u.a.data,
           v->u.a.len * distc_dtype_size(v->u.a.dtype));
  return c;
}

int distc__op_combine(distc_op op, distc_value **accp, const distc_value *v) {
  distc_value *acc = *accp, *out = NULL;
  distc_type ta = distc_value_type(acc), tv = distc_value_type(v);
  if (op < DISTC_OP_SUM || op > DISTC_OP_MAX)
    return distc__seterr(DISTC_EINVAL, "unknown reduction operator %d", op);
  if (ta == DISTC_INT && tv == DISTC_INT) {
    out = distc_int(distc__op_i64(op, acc->u.i, v->u.i));
  } else if ((ta == DISTC_INT || ta == DISTC_DOUBLE) &&
             (tv == DISTC_INT || tv == DISTC_DOUBLE)) {
    out = distc_double(
        distc__op_f64(op, distc_value_double(acc), distc_value_double(v)));
  } else if (ta == DISTC_ARRAY && tv == DISTC_ARRAY) {
    bool same = acc->u.a.dtype == v->u.a.dtype && acc->u.a.len == v->u.a.len;
    if (!same)
      return distc__seterr(DISTC_ETYPE,
                           "%s: cannot combine an array of %zu elements "
                           "(dtype %d) with one of %zu (dtype %d): the "
                           "partial arrays must agree in dtype and length",
                           distc__op_name(op), acc->u.a.len, acc->u.a.dtype,
                           v->u.a.len, v->u.a.dtype);
    if (atomic_load(&acc->refs) == 1) {
      arrays(op, acc, v);
      return 0;
    }
    out = array_copy(acc);
    if (out)
      arrays(op, out, v);
  } else {
    return distc__seterr(DISTC_ETYPE,
                         "%s works on ints, doubles and arrays, not on %s "
                         "and %s",
                         distc__op_name(op), type_name(acc), type_name(v));
  }
  if (!out)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  distc_value_free(acc);
  *accp = out;
  return 0;
}

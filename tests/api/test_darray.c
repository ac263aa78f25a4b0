/* test_darray.c — distributed arrays over real worker processes, each
 * operation checked against a serial computation on the master.  One case
 * per run (argv[1]) under distc-launch.  Prints `N passed, M failed`. */
#include <distc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"


#define OK(rc) CHECK((rc) >= 0, "rc=%d %s", (rc), distc_errmsg())

/* ---- functions the owners run ---- */

/* init: [D, base]: element at linear index i of the whole array = base + i. */
DISTC_FUNCTION(init_linear) {
  const distc_value *d = distc_list_at(args, 0);
  double base = distc_value_double(distc_list_at(args, 1));
  size_t lo[8], hi[8], dims[8];
  int ndim;
  distc_value *c;
  if (distc_darray_localindices(d, lo, hi) < 0 ||
      distc_darray_info(d, NULL, &ndim, dims) < 0 ||
      distc_darray_localpart(d, &c) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  double *p = distc_array_data(c);
  size_t idx[8];
  memcpy(idx, lo, sizeof idx);
  for (size_t j = 0, n = distc_array_len(c); j < n; j++) {
    size_t lin = 0, stride = 1;
    for (int k = 0; k < ndim; k++) {
      lin += idx[k] * stride;
      stride *= dims[k];
    }
    p[j] = base + (double)lin;
    for (int k = 0; k < ndim; k++) {
      if (++idx[k] < hi[k])
        break;
      idx[k] = lo[k];
    }
  }
  distc_value_free(c);
  return distc_nil();
}

DISTC_FUNCTION(init_fails) {
  (void)args;
  return distc_fail(ctx, "no init on %d", distc_myid());
}

/* map: [chunk, D, k]: each element times k (same shape). */
DISTC_FUNCTION(scale) {
  const distc_value *c = distc_list_at(args, 0);
  double k = distc_value_double(distc_list_at(args, 2));
  distc_value *r = distc_array(DISTC_F64, distc_array_ndim(c),
                               distc_array_dims(c));
  if (!r)
    return distc_fail(ctx, "out of memory");
  const double *x = distc_array_data(c);
  double *y = distc_array_data(r);
  for (size_t i = 0; i < distc_array_len(c); i++)
    y[i] = x[i] * k;
  return r;
}

/* map: [chunk, D]: a rows x cols chunk -> 1 x cols of column sums, as I64. */
DISTC_FUNCTION(colsums) {
  (void)ctx;
  const distc_value *c = distc_list_at(args, 0);
  size_t rows = distc_array_dims(c)[0], cols = distc_array_dims(c)[1];
  distc_value *r = distc_array(DISTC_I64, 2, (size_t[]){1, cols});
  const double *x = distc_array_data(c);
  for (size_t j = 0; r && j < cols; j++) {
    double s = 0;
    for (size_t i = 0; i < rows; i++)
      s += x[j * rows + i];
    ((int64_t *)distc_array_data(r))[j] = (int64_t)s;
  }
  return r;
}

/* map: [chunk, D]: a shape that depends on the owner (cannot tile). */
DISTC_FUNCTION(ragged) {
  (void)args;
  (void)ctx;
  size_t n = (size_t)distc_myid();
  return distc_array(DISTC_F64, 2, (size_t[]){n, n});
}

/* reduce: [chunk, D]: how many elements are > 50. */
DISTC_FUNCTION(count_big) {
  (void)ctx;
  const distc_value *c = distc_list_at(args, 0);
  const double *x = distc_array_data(c);
  int64_t n = 0;
  for (size_t i = 0; i < distc_array_len(c); i++)
    n += x[i] > 50;
  return distc_int(n);
}

/* [D]: localpart's status code here. */
DISTC_FUNCTION(try_localpart) {
  (void)ctx;
  distc_value *c = NULL;
  int rc = distc_darray_localpart(distc_list_at(args, 0), &c);
  distc_value_free(c);
  return distc_int(rc);
}

/* [D]: [lo..., hi...] of my chunk. */
DISTC_FUNCTION(my_indices) {
  const distc_value *d = distc_list_at(args, 0);
  size_t lo[8], hi[8];
  int ndim;
  if (distc_darray_info(d, NULL, &ndim, NULL) < 0 ||
      distc_darray_localindices(d, lo, hi) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  distc_value *l = distc_list(0);
  for (int k = 0; k < ndim; k++)
    distc_list_push(l, distc_int((int64_t)lo[k]));
  for (int k = 0; k < ndim; k++)
    distc_list_push(l, distc_int((int64_t)hi[k]));
  return l;
}

DISTC_FUNCTION(gather_on_worker) {
  (void)ctx;
  distc_value *a = NULL;
  int rc = distc_darray_gather(distc_list_at(args, 0), &a);
  distc_value_free(a);
  return distc_int(rc);
}

/* ---- helpers ---- */

static distc_value *linear_array(distc_dtype t, int ndim, const size_t *dims,
                                 double base) {
  distc_value *a = distc_array(t, ndim, dims);
  for (size_t i = 0; i < distc_array_len(a); i++) {
    void *p = distc_array_data(a);
    switch (t) {
    case DISTC_F64: ((double *)p)[i] = base + (double)i; break;
    case DISTC_F32: ((float *)p)[i] = (float)(base + (double)i); break;
    case DISTC_I64: ((int64_t *)p)[i] = (int64_t)base + (int64_t)i; break;
    case DISTC_I32: ((int32_t *)p)[i] = (int32_t)base + (int32_t)i; break;
    case DISTC_U8: ((uint8_t *)p)[i] = (uint8_t)(i % 251); break;
    }
  }
  return a;
}

/* The chunks cover the array exactly once, and each owner reports the same
 * indices as the layout. */
static void check_layout(const distc_value *d) {
  int ndim;
  size_t dims[8], total = 1, covered = 0;
  distc_darray_info(d, NULL, &ndim, dims);
  for (int k = 0; k < ndim; k++)
    total *= dims[k];
  size_t n = distc_darray_nchunks(d);
  for (size_t i = 0; i < n; i++) {
    int owner;
    size_t lo[8], hi[8], cells = 1;
    OK(distc_darray_chunk(d, i, &owner, lo, hi));
    for (int k = 0; k < ndim; k++)
      cells *= hi[k] - lo[k];
    covered += cells;
    distc_value *a = distc_listv(1, distc_value_ref((distc_value *)d)), *v;
    if (distc_remotecall_fetch(owner, "my_indices", a, &v) == 0) {
      int same = 1;
      for (int k = 0; k < ndim; k++)
        same &= distc_value_int(distc_list_at(v, (size_t)k)) == (int64_t)lo[k] &&
                distc_value_int(distc_list_at(v, (size_t)(ndim + k))) ==
                    (int64_t)hi[k];
      CHECK(same, "owner %d of chunk %zu agrees on its indices", owner, i);
      distc_value_free(v);
    } else {
      CHECK(0, "my_indices on %d: %s", owner, distc_errmsg());
    }
    distc_value_free(a);
  }
  CHECK(covered == total, "chunks cover %zu of %zu elements", covered, total);
}

static bool gathered_equals(const distc_value *d, const distc_value *want) {
  distc_value *g = NULL;
  int rc = distc_darray_gather(d, &g);
  if (rc < 0)
    printf("gather: %s\n", distc_errmsg());
  bool eq = rc == 0 && distc_value_equal(g, want);
  distc_value_free(g);
  return eq;
}

/* ---- cases ---- */

static void case_distribute(void) {
  /* Default layout of a 2-d array over 3 workers. */
  distc_value *a = linear_array(DISTC_F64, 2, (size_t[]){7, 5}, 0), *d = NULL;
  OK(distc_darray_distribute(a, NULL, &d));
  CHECK(distc_is_darray(d) && distc_value_type(d) == DISTC_HANDLE,
        "a darray handle");
  int ids[8], n = distc_darray_procs(d, ids, 8);
  CHECK(n == 3 && ids[0] == 2 && ids[1] == 3 && ids[2] == 4, "owners %d", n);
  int ndim;
  size_t dims[8];
  distc_dtype t;
  OK(distc_darray_info(d, &t, &ndim, dims));
  CHECK(t == DISTC_F64 && ndim == 2 && dims[0] == 7 && dims[1] == 5, "info");
  check_layout(d);
  CHECK(gathered_equals(d, a), "gather equals the original");
  distc_value *c = NULL;
  CHECK(distc_darray_localpart(d, &c) == DISTC_ENOENT && !c, "the master "
        "holds no chunk");
  OK(distc_darray_free(d));
  distc_value_free(a);

  /* A chosen layout, 3-d, every dtype. */
  distc_dtype types[] = {DISTC_F64, DISTC_F32, DISTC_I64, DISTC_I32, DISTC_U8};
  for (size_t i = 0; i < 5; i++) {
    a = linear_array(types[i], 3, (size_t[]){4, 6, 5}, 3);
    distc_darray_opts o = {.dist = (int[]){1, 3, 1}};
    d = NULL;
    OK(distc_darray_distribute(a, &o, &d));
    CHECK(distc_darray_nchunks(d) == 3, "3 chunks");
    size_t lo[3], hi[3];
    OK(distc_darray_chunk(d, 1, NULL, lo, hi));
    CHECK(lo[0] == 0 && hi[0] == 4 && lo[1] == 2 && hi[1] == 4 && lo[2] == 0 &&
              hi[2] == 5,
          "chunk 1 of dtype %d", (int)types[i]);
    CHECK(gathered_equals(d, a), "gather of dtype %d", (int)types[i]);
    distc_darray_free(d);
    distc_value_free(a);
  }

  /* Owners named, the master among them; fewer chunks than owners. */
  a = linear_array(DISTC_F64, 1, (size_t[]){10}, 0);
  distc_darray_opts o = {.pids = (int[]){1, 3}, .npids = 2};
  d = NULL;
  OK(distc_darray_distribute(a, &o, &d));
  OK(distc_darray_localpart(d, &c));
  CHECK(c && distc_array_len(c) == 5 && ((double *)distc_array_data(c))[4] == 4,
        "the master's own chunk");
  distc_value_free(c);
  check_layout(d);
  CHECK(gathered_equals(d, a), "gather with the master as an owner");
  distc_darray_free(d);
  o = (distc_darray_opts){.dist = (int[]){2}};
  OK(distc_darray_distribute(a, &o, &d));
  CHECK(distc_darray_nchunks(d) == 2 && distc_darray_procs(d, ids, 8) == 2 &&
            ids[0] == 2 && ids[1] == 3,
        "2 chunks on the first 2 workers");
  CHECK(gathered_equals(d, a), "gather of 2 chunks");
  distc_darray_free(d);

  /* Bad layouts. */
  o = (distc_darray_opts){.dist = (int[]){4}};
  CHECK(distc_darray_distribute(a, &o, &d) == DISTC_EINVAL, "4 chunks, 3 "
        "owners: %s", distc_errmsg());
  o = (distc_darray_opts){.dist = (int[]){0}};
  CHECK(distc_darray_distribute(a, &o, &d) == DISTC_EINVAL, "0 chunks");
  o = (distc_darray_opts){.pids = (int[]){2, 99}, .npids = 2};
  CHECK(distc_darray_distribute(a, &o, &d) == DISTC_ENOENT, "owner 99");
  distc_value *nota = distc_int(3);
  CHECK(distc_darray_distribute(nota, NULL, &d) == DISTC_ETYPE, "not an array");
  distc_value_free(nota);
  distc_value_free(a);
}

static void case_new(void) {
  size_t dims[2] = {9, 4};
  distc_value *d = NULL, *g = NULL;
  /* zeros */
  OK(distc_darray_new(DISTC_F64, 2, dims, NULL, &d));
  distc_value *zeros = distc_array(DISTC_F64, 2, dims);
  CHECK(gathered_equals(d, zeros), "zeros");
  check_layout(d);
  distc_darray_free(d);
  /* a user init: element = 100 + linear index, like the serial version */
  distc_value *ia = distc_listv(1, distc_double(100));
  distc_darray_opts o = {.init = "init_linear", .init_args = ia};
  OK(distc_darray_new(DISTC_F64, 2, dims, &o, &d));
  distc_value *want = linear_array(DISTC_F64, 2, dims, 100);
  CHECK(gathered_equals(d, want), "init_linear");
  distc_darray_free(d);
  distc_value_free(ia);
  /* fill */
  ia = distc_listv(1, distc_int(7));
  o = (distc_darray_opts){.init = "distc_darray_fill", .init_args = ia};
  OK(distc_darray_new(DISTC_I32, 2, dims, &o, &d));
  OK(distc_darray_gather(d, &g));
  int sevens = 0;
  for (int i = 0; g && i < 36; i++)
    sevens += ((int32_t *)distc_array_data(g))[i] == 7;
  CHECK(sevens == 36, "fill 7 (%d)", sevens);
  distc_value_free(g);
  distc_darray_free(d);
  distc_value_free(ia);
  /* rand: in [0, 1), not constant, the same for the same seed */
  ia = distc_listv(1, distc_int(42));
  o = (distc_darray_opts){.init = "distc_darray_rand", .init_args = ia};
  distc_value *g2 = NULL;
  OK(distc_darray_new(DISTC_F64, 2, dims, &o, &d));
  OK(distc_darray_gather(d, &g));
  distc_darray_free(d);
  OK(distc_darray_new(DISTC_F64, 2, dims, &o, &d));
  OK(distc_darray_gather(d, &g2));
  distc_darray_free(d);
  int inrange = 0, distinct = 0;
  for (int i = 0; g && i < 36; i++) {
    double x = ((double *)distc_array_data(g))[i];
    inrange += x >= 0 && x < 1;
    distinct += i > 0 && x != ((double *)distc_array_data(g))[i - 1];
  }
  CHECK(inrange == 36 && distinct > 30, "rand: %d in range, %d distinct",
        inrange, distinct);
  CHECK(g && g2 && distc_value_equal(g, g2), "rand is reproducible");
  distc_value_free(g);
  distc_value_free(g2);
  distc_value_free(ia);
  /* a failing init fails the creation and leaves no chunk */
  o = (distc_darray_opts){.init = "init_fails"};
  d = (distc_value *)1;
  int rc = distc_darray_new(DISTC_F64, 2, dims, &o, &d);
  CHECK(rc == DISTC_EREMOTE && d == NULL && strstr(distc_errmsg(), "no init"),
        "failing init: %d %s", rc, distc_errmsg());
  distc_value_free(want);
  distc_value_free(zeros);
}

static void case_map_reduce(void) {
  size_t dims[2] = {6, 9};
  distc_value *a = linear_array(DISTC_F64, 2, dims, 1), *d = NULL, *m = NULL;
  distc_darray_opts o = {.dist = (int[]){1, 3}};
  OK(distc_darray_distribute(a, &o, &d));

  /* Element-wise: same shape, same owners. */
  distc_value *k = distc_listv(1, distc_double(2.5));
  OK(distc_darray_map(d, "scale", k, &m));
  distc_value_free(k);
  distc_value *want = distc_array(DISTC_F64, 2, dims);
  for (size_t i = 0; i < 54; i++)
    ((double *)distc_array_data(want))[i] =
        ((double *)distc_array_data(a))[i] * 2.5;
  CHECK(m && gathered_equals(m, want), "map scale");
  int ids[4];
  CHECK(distc_darray_procs(m, ids, 4) == 3 && ids[0] == 2, "same owners");
  check_layout(m);
  distc_darray_free(m);
  distc_value_free(want);

  /* Shape and dtype change: 6 x 3 chunks -> 1 x 3 of column sums. */
  OK(distc_darray_map(d, "colsums", NULL, &m));
  int ndim;
  size_t mdims[8];
  distc_dtype t;
  OK(distc_darray_info(m, &t, &ndim, mdims));
  CHECK(t == DISTC_I64 && ndim == 2 && mdims[0] == 1 && mdims[1] == 9,
        "colsums is 1x9 int64");
  want = distc_array(DISTC_I64, 2, (size_t[]){1, 9});
  for (size_t j = 0; j < 9; j++) {
    double s = 0;
    for (size_t i = 0; i < 6; i++)
      s += ((double *)distc_array_data(a))[j * 6 + i];
    ((int64_t *)distc_array_data(want))[j] = (int64_t)s;
  }
  CHECK(gathered_equals(m, want), "colsums values");
  distc_value *r = NULL;
  OK(distc_darray_reduce(m, NULL, DISTC_OP_SUM, &r));
  CHECK(distc_value_type(r) == DISTC_INT && distc_value_int(r) == 54 * 55 / 2,
        "reduce of the mapped array: %lld", (long long)distc_value_int(r));
  distc_value_free(r);
  distc_darray_free(m);
  distc_value_free(want);

  /* Chunks that cannot tile an array: an error, nothing kept. */
  int rc = distc_darray_map(d, "ragged", NULL, &m);
  CHECK(rc == DISTC_EINVAL && !m && strstr(distc_errmsg(), "tile"),
        "ragged: %d %s", rc, distc_errmsg());
  rc = distc_darray_map(d, "nope", NULL, &m);
  CHECK(rc == DISTC_ENOTREG, "unknown map fn: %d", rc);

  /* Reductions against the serial ones. */
  OK(distc_darray_reduce(d, NULL, DISTC_OP_SUM, &r));
  CHECK(distc_value_double(r) == 54 * 55 / 2, "sum %g", distc_value_double(r));
  distc_value_free(r);
  OK(distc_darray_reduce(d, NULL, DISTC_OP_MIN, &r));
  CHECK(distc_value_double(r) == 1, "min %g", distc_value_double(r));
  distc_value_free(r);
  OK(distc_darray_reduce(d, NULL, DISTC_OP_MAX, &r));
  CHECK(distc_value_double(r) == 54, "max %g", distc_value_double(r));
  distc_value_free(r);
  /* A NaN that is not the first element of its chunk: min and max are NaN,
   * as distc_reduce's (one set of operators, reduce_ops.c). */
  distc_value *nans = linear_array(DISTC_F64, 1, (size_t[]){12}, 1), *dn;
  ((double *)distc_array_data(nans))[5] = NAN;
  OK(distc_darray_distribute(nans, NULL, &dn));
  for (distc_op op = DISTC_OP_MIN; op <= DISTC_OP_MAX; op++) {
    OK(distc_darray_reduce(dn, NULL, op, &r));
    CHECK(distc_value_type(r) == DISTC_DOUBLE && isnan(distc_value_double(r)),
          "darray NaN %s: %g", op == DISTC_OP_MIN ? "min" : "max",
          distc_value_double(r));
    distc_value_free(r);
  }
  distc_darray_free(dn);
  distc_value_free(nans);
  OK(distc_darray_reduce(d, "count_big", DISTC_OP_SUM, &r));
  CHECK(distc_value_int(r) == 4, "count_big %lld", (long long)distc_value_int(r));
  distc_value_free(r);
  distc_value *ints = linear_array(DISTC_I32, 1, (size_t[]){10}, 1), *di;
  OK(distc_darray_distribute(ints, NULL, &di));
  OK(distc_darray_reduce(di, NULL, DISTC_OP_PROD, &r));
  CHECK(distc_value_type(r) == DISTC_INT && distc_value_int(r) == 3628800,
        "10! = %lld", (long long)distc_value_int(r));
  distc_value_free(r);
  distc_darray_free(di);
  distc_value_free(ints);
  distc_darray_free(d);
  distc_value_free(a);
}

/* free releases the chunks; a worker may not run master-only operations. */
static void case_free(void) {
  distc_value *a = linear_array(DISTC_F64, 1, (size_t[]){12}, 0), *d = NULL;
  OK(distc_darray_distribute(a, NULL, &d));
  distc_value *keep = distc_value_ref(d);
  distc_value *args = distc_listv(1, distc_value_ref(d)), *v = NULL;
  OK(distc_remotecall_fetch(2, "try_localpart", args, &v));
  CHECK(distc_value_int(v) == 0, "localpart on an owner");
  distc_value_free(v);
  OK(distc_remotecall_fetch(2, "gather_on_worker", args, &v));
  CHECK(distc_value_int(v) == DISTC_ENOTMASTER, "gather on a worker: %lld",
        (long long)distc_value_int(v));
  distc_value_free(v);
  OK(distc_darray_free(d));
  for (int w = 2; w <= 4; w++) {
    OK(distc_remotecall_fetch(w, "try_localpart", args, &v));
    CHECK(distc_value_int(v) == DISTC_ENOENT, "chunk released on %d", w);
    distc_value_free(v);
  }
  distc_value *g = NULL;
  int rc = distc_darray_gather(keep, &g);
  CHECK(rc == DISTC_ENOENT && strstr(distc_errmsg(), "no chunk"),
        "gather of a freed array: %d %s", rc, distc_errmsg());
  distc_value_free(keep);
  distc_value_free(args);
  distc_value_free(a);
}

/* Owners that say they run on other hosts: nothing assumes shared memory. */
static void case_hosts(void) {
  const char *env[] = {"DISTC_HOSTNAME=far.invalid", NULL};
  distc_addprocs_opts ao = {.count = 1, .env = env};
  int id = 0;
  CHECK(distc_addprocs(&ao, &id) == 1, "addprocs %s", distc_errmsg());
  distc_value *a = linear_array(DISTC_F64, 2, (size_t[]){5, 8}, 0), *d = NULL;
  distc_darray_opts o = {.pids = (int[]){2, id}, .npids = 2};
  OK(distc_darray_distribute(a, &o, &d));
  CHECK(gathered_equals(d, a), "gather from a far owner");
  distc_value *r = NULL;
  OK(distc_darray_reduce(d, NULL, DISTC_OP_SUM, &r));
  CHECK(distc_value_double(r) == 39 * 40 / 2, "sum with a far owner");
  distc_value_free(r);
  distc_darray_free(d);
  distc_value_free(a);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "";
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  if (!strcmp(name, "distribute"))
    case_distribute();
  else if (!strcmp(name, "new"))
    case_new();
  else if (!strcmp(name, "map-reduce"))
    case_map_reduce();
  else if (!strcmp(name, "free"))
    case_free();
  else if (!strcmp(name, "hosts"))
    case_hosts();
  else {
    printf("unknown case '%s'\n", name);
    return 2;
  }
  OK(distc_finalize());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

/* svd.c — the seed notebook's pmap example: the singular values of 10
 * random 200x200 matrices, with a serial map (pmap with opts.local, Julia's
 * distributed=false) and with pmap over the workers, each through LAPACKE's
 * dgesdd on OpenBLAS; prints both times and checks that the results agree.
 *
 * distc-launch gives each worker OPENBLAS_NUM_THREADS = cores / workers
 * (--blas-threads N to choose), so the workers' BLAS threads do not fight
 * over the cores; the program prints what each side uses.
 *
 *   distc-launch -p 4 ./svd [RUNS]
 */
#include <cblas.h>
#include <distc.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coin.h"

#define N 200
#define COUNT 10

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* svdvals(m): the singular values of a matrix (column-major F64), largest
 * first. */
DISTC_FUNCTION(svdvals) {
  const distc_value *a = distc_list_at(args, 0);
  if (distc_value_type(a) != DISTC_ARRAY || distc_array_dtype(a) != DISTC_F64 ||
      distc_array_ndim(a) != 2)
    return distc_fail(ctx, "svdvals wants a 2-d double array");
  const size_t *d = distc_array_dims(a);
  size_t k = d[0] < d[1] ? d[0] : d[1];
  double *work = malloc(sizeof *work * distc_array_len(a)); /* dgesdd
                                                               overwrites */
  distc_value *s = distc_array(DISTC_F64, 1, &k);
  if (!work || !s) {
    free(work);
    distc_value_free(s);
    return distc_fail(ctx, "out of memory");
  }
  memcpy(work, distc_array_data(a), sizeof *work * distc_array_len(a));
  lapack_int info =
      LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)d[0], (lapack_int)d[1],
                     work, (lapack_int)d[0], distc_array_data(s), NULL, 1,
                     NULL, 1);
  free(work);
  if (info != 0) {
    distc_value_free(s);
    return distc_fail(ctx, "dgesdd failed (info %d)", (int)info);
  }
  return s;
}

DISTC_FUNCTION(blas_threads) {
  (void)args;
  (void)ctx;
  return distc_int(openblas_get_num_threads());
}

static double median(double *v, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
      double t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "svd: %s\n", distc_errmsg());
    return 1;
  }
  int runs = argc > 1 ? atoi(argv[1]) : 5;
  if (runs < 1 || runs > 100)
    runs = 5;
  /* M = [rand(200, 200) for i = 1:10] */
  distc_value *M = distc_list(COUNT);
  uint64_t x = 42;
  size_t dims[2] = {N, N};
  for (int i = 0; i < COUNT; i++) {
    distc_value *m = distc_array(DISTC_F64, 2, dims);
    double *p = distc_array_data(m);
    for (int k = 0; k < N * N; k++)
      p[k] = (double)(coin_splitmix64(&x) >> 11) * 0x1p-53;
    distc_list_set(M, (size_t)i, m);
  }

  int ids[64], nw = distc_workers(ids, 64);
  printf("%d matrices %dx%d; BLAS threads: master %d, workers", COUNT, N, N,
         openblas_get_num_threads());
  for (int i = 0; i < nw && i < 64; i++) {
    distc_value *t;
    if (distc_remotecall_fetch(ids[i], "blas_threads", NULL, &t) == 0)
      printf(" %lld", (long long)distc_value_int(t));
    distc_value_free(t);
  }
  printf("\n");

  distc_pmap_opts serial = {.local = true, .no_progress = true};
  distc_pmap_opts par = {.batch_size = 1, .no_progress = true};
  distc_value *a = NULL, *b = NULL;
  double tm[100], tp[100];
  for (int r = 0; r < runs; r++) {
    distc_value_free(a);
    distc_value_free(b);
    double t0 = now();
    int rc = distc_pmap("svdvals", M, &serial, &a);
    double t1 = now();
    if (rc == 0)
      rc = distc_pmap("svdvals", M, &par, &b);
    double t2 = now();
    if (rc < 0) {
      fprintf(stderr, "svd: %s\n", distc_errmsg());
      return 1;
    }
    tm[r] = t1 - t0;
    tp[r] = t2 - t1;
  }
  double worst = 0;
  for (int i = 0; i < COUNT; i++) {
    const double *u = distc_array_data(distc_list_at(a, (size_t)i)),
                 *v = distc_array_data(distc_list_at(b, (size_t)i));
    for (int k = 0; k < N; k++) {
      double d = fabs(u[k] - v[k]) / (fabs(u[k]) > 1e-300 ? fabs(u[k]) : 1);
      worst = d > worst ? d : worst;
    }
  }
  const double *s0 = distc_array_data(distc_list_at(b, 0));
  printf("svdvals(M[1]) = [%.6f, %.6f, %.6f, ..., %.6f]\n", s0[0], s0[1],
         s0[2], s0[N - 1]);
  double sm = median(tm, runs), sp = median(tp, runs);
  printf("map:  %8.3f ms (median of %d)\n", sm * 1e3, runs);
  printf("pmap: %8.3f ms (median of %d), %.2fx\n", sp * 1e3, runs, sm / sp);
  bool agree = worst < 1e-10;
  printf("the results %s (largest relative difference %.1e)\n",
         agree ? "agree" : "DIFFER", worst);
  distc_value_free(a);
  distc_value_free(b);
  distc_value_free(M);
  distc_finalize();
  return agree ? 0 : 1;
}

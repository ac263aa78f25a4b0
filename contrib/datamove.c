/* datamove.c — the seed notebook's data movement example: A^2 * B^2 for
 * random 100x100 matrices A and B, computed on a worker with cblas_dgemm,
 *
 *   method 1: A and B are made on the master and shipped to the worker;
 *   method 2: the worker makes A and B itself (from a seed it is sent),
 *
 * and the result C comes back either way.  Prints the median time of each
 * and the bytes each moved per call, as the library counted them
 * (distc_stats), and checks every C against the same product computed on
 * the master.
 *
 *   distc-launch -p 2 ./datamove [REPS]
 */
#include <cblas.h>
#include <distc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "coin.h"

#define N 100

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* rand(100, 100) from a seed: uniform in [0, 1). */
static void fill(double *p, uint64_t seed) {
  for (int k = 0; k < N * N; k++)
    p[k] = (double)(coin_splitmix64(&seed) >> 11) * 0x1p-53;
}

static void mul(const double *x, const double *y, double *out) {
  cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0, x, N, y,
              N, 0.0, out, N);
}

/* C = A^2 * B^2 */
static void a2b2(const double *A, const double *B, double *C) {
  double *A2 = malloc(sizeof *A2 * N * N), *B2 = malloc(sizeof *B2 * N * N);
  mul(A, A, A2);
  mul(B, B, B2);
  mul(A2, B2, C);
  free(A2);
  free(B2);
}

static distc_value *matrix(void) {
  size_t dims[2] = {N, N};
  return distc_array(DISTC_F64, 2, dims);
}

static bool is_matrix(const distc_value *v) {
  return distc_value_type(v) == DISTC_ARRAY &&
         distc_array_dtype(v) == DISTC_F64 && distc_array_len(v) == N * N;
}

/* method 1's worker side: [A, B] -> A^2 B^2 */
DISTC_FUNCTION(a2b2_of) {
  const distc_value *A = distc_list_at(args, 0), *B = distc_list_at(args, 1);
  if (!is_matrix(A) || !is_matrix(B))
    return distc_fail(ctx, "a2b2_of wants two 100x100 double matrices");
  distc_value *C = matrix();
  if (!C)
    return distc_fail(ctx, "out of memory");
  a2b2(distc_array_data(A), distc_array_data(B), distc_array_data(C));
  return C;
}

/* method 2's worker side: [seed] -> A^2 B^2 of matrices made here */
DISTC_FUNCTION(a2b2_rand) {
  uint64_t seed = (uint64_t)distc_value_int(distc_list_at(args, 0));
  double *A = malloc(sizeof *A * N * N), *B = malloc(sizeof *B * N * N);
  distc_value *C = matrix();
  if (!A || !B || !C) {
    free(A);
    free(B);
    distc_value_free(C);
    return distc_fail(ctx, "out of memory");
  }
  fill(A, seed);
  fill(B, seed + 1);
  a2b2(A, B, distc_array_data(C));
  free(A);
  free(B);
  return C;
}

static double max_rel_diff(const double *x, const double *y) {
  double worst = 0;
  for (int k = 0; k < N * N; k++) {
    double d = fabs(x[k] - y[k]) / (fabs(x[k]) > 1 ? fabs(x[k]) : 1);
    worst = d > worst ? d : worst;
  }
  return worst;
}

/* Bytes a method moved, summed over the timed repetitions. */
typedef struct moved {
  uint64_t sent, received, copied;
} moved;

/* Adds what the counters of worker w grew by since *before. */
static void count(int w, const distc_peer_stats *before, moved *m) {
  distc_peer_stats after;
  if (distc_stats(w, &after) < 0)
    return;
  m->sent += after.bytes_sent - before->bytes_sent;
  m->received += after.bytes_received - before->bytes_received;
  m->copied += after.bytes_copied - before->bytes_copied;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "datamove: %s\n", distc_errmsg());
    return 1;
  }
  int reps = argc > 1 ? atoi(argv[1]) : 200;
  if (reps < 1)
    reps = 200;
  int w;
  distc_workers(&w, 1); /* the first worker (the master when there is none) */
  double *t1 = malloc(sizeof *t1 * (size_t)reps),
         *t2 = malloc(sizeof *t2 * (size_t)reps), worst = 0;
  double *want = malloc(sizeof *want * N * N);
  moved m1 = {0}, m2 = {0};
  for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
    distc_peer_stats s0, s1;
    distc_stats(w, &s0); /* with no workers (w = 1, here) nothing moves */
    uint64_t seed = 1000 + 2 * (uint64_t)(r + 1);
    /* method 1: A = rand(100,100); B = rand(100,100); @fetch A^2 * B^2 */
    double t0 = now();
    distc_value *A = matrix(), *B = matrix(), *C1 = NULL, *C2 = NULL;
    fill(distc_array_data(A), seed);
    fill(distc_array_data(B), seed + 1);
    distc_value *args = distc_listv(2, A, B);
    int rc = distc_remotecall_fetch(w, "a2b2_of", args, &C1);
    double t1e = now();
    if (r >= 0)
      count(w, &s0, &m1);
    /* method 2: @fetch rand(100,100)^2 * rand(100,100)^2 */
    distc_value *sarg = distc_listv(1, distc_int((int64_t)seed));
    distc_stats(w, &s1);
    if (rc == 0)
      rc = distc_remotecall_fetch(w, "a2b2_rand", sarg, &C2);
    double t2e = now();
    if (r >= 0)
      count(w, &s1, &m2);
    if (rc < 0) {
      fprintf(stderr, "datamove: %s\n", distc_errmsg());
      return 1;
    }
    /* Both computed the product of the same A and B: check them here. */
    a2b2(distc_array_data(A), distc_array_data(B), want);
    double d1 = max_rel_diff(want, distc_array_data(C1)),
           d2 = max_rel_diff(want, distc_array_data(C2));
    worst = d1 > worst ? d1 : worst;
    worst = d2 > worst ? d2 : worst;
    if (r >= 0) {
      t1[r] = t1e - t0;
      t2[r] = t2e - t1e;
    }
    distc_value_free(args);
    distc_value_free(sarg);
    distc_value_free(C1);
    distc_value_free(C2);
  }
  qsort(t1, (size_t)reps, sizeof *t1, cmp);
  qsort(t2, (size_t)reps, sizeof *t2, cmp);
  printf("A^2 * B^2 of 100x100 matrices (%zu bytes each) on worker %d, "
         "median of %d; bytes per call from the library's counters:\n",
         sizeof(double) * N * N, w, reps);
  printf("method 1 (A, B made here):       %8.1f us, %7llu bytes sent, "
         "%7llu received, %7llu copied\n",
         t1[reps / 2] * 1e6, (unsigned long long)(m1.sent / (uint64_t)reps),
         (unsigned long long)(m1.received / (uint64_t)reps),
         (unsigned long long)(m1.copied / (uint64_t)reps));
  printf("method 2 (A, B made on worker):  %8.1f us, %7llu bytes sent, "
         "%7llu received, %7llu copied\n",
         t2[reps / 2] * 1e6, (unsigned long long)(m2.sent / (uint64_t)reps),
         (unsigned long long)(m2.received / (uint64_t)reps),
         (unsigned long long)(m2.copied / (uint64_t)reps));
  bool agree = worst < 1e-12;
  printf("every C %s the master's own product (largest relative difference "
         "%.1e)\n",
         agree ? "agrees with" : "DIFFERS FROM", worst);
  free(t1);
  free(t2);
  free(want);
  distc_finalize();
  return agree ? 0 : 1;
}

/* square_shared.c — the seed notebook's square! on a 10x10 shared array:
 * every element squared after 1 ms of "work" (a sleep), serially on the
 * master, then by a distributed loop whose workers write into the shared
 * array in place.  The work is sleep, so the speedup should approach the
 * number of workers.
 *
 *   distc-launch -p 4 ./square_shared                                       */
#include <distc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Julia's square!(X): for i in eachindex(X); sleep(0.001); X[i] = X[i]^2 */
static void square(double *x, size_t lo, size_t hi) {
  for (size_t i = lo; i < hi; i++) {
    usleep(1000);
    x[i] = x[i] * x[i];
  }
}

/* The body of `@distributed for i in eachindex(S)`: [lo, hi, S]. */
DISTC_FUNCTION(square_range) {
  size_t lo = (size_t)distc_value_int(distc_list_at(args, 0));
  size_t hi = (size_t)distc_value_int(distc_list_at(args, 1));
  const distc_value *s = distc_list_at(args, 2);
  if (!distc_is_shared(s) || hi > distc_array_len(s))
    return distc_fail(ctx, "square_range wants [lo, hi, shared array]");
  square(distc_array_data(s), lo, hi);
  return distc_nil();
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "distc_init: %s\n", distc_errmsg());
    return 1;
  }
  size_t dims[2] = {10, 10}, n = 100;
  /* A = rand(10, 10); S = SharedArray(A) */
  distc_value *a = distc_array(DISTC_F64, 2, dims), *s = NULL;
  double *A = distc_array_data(a);
  srand48(1);
  for (size_t i = 0; i < n; i++)
    A[i] = drand48();
  if (distc_shared_new(DISTC_F64, 2, dims, NULL, &s) < 0) {
    fprintf(stderr, "shared array: %s\n", distc_errmsg());
    return 1;
  }
  double *S = distc_array_data(s);
  memcpy(S, A, n * sizeof *S);
  double *want = malloc(n * sizeof *want);
  for (size_t i = 0; i < n; i++)
    want[i] = A[i] * A[i];

  double t0 = now_s();
  square(A, 0, n);
  double serial = now_s() - t0;

  t0 = now_s();
  int rc = distc_distributed_for("square_range", 0, (int64_t)n, s);
  double dist = now_s() - t0;
  if (rc < 0) {
    fprintf(stderr, "distributed loop: %s\n", distc_errmsg());
    return 1;
  }
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++)
    wrong += S[i] != want[i] || A[i] != want[i];
  int nw = distc_nworkers();
  printf("square! serial:            %7.1f ms\n", serial * 1e3);
  printf("square! distributed (%2d): %7.1f ms  speedup %.2f\n", nw, dist * 1e3,
         serial / dist);
  printf("results %s\n", wrong ? "DIFFER" : "agree");
  free(want);
  distc_value_free(s);
  distc_value_free(a);
  distc_finalize();
  return wrong ? 1 : 0;
}

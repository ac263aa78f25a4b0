/* bench_reduce.c — latency of distc_reduce with one double per worker
 * (the range [0, workers), DISTC_OP_SUM): the median of ITERS reductions
 * after WARMUP, in microseconds.
 * usage: distc-launch -p 8 bench_reduce [WARMUP [ITERS]] */
#include "bench_common.h"

DISTC_FUNCTION(one) { return distc_double(1.0); }

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  int warmup = argc > 1 ? atoi(argv[1]) : 200;
  int iters = argc > 2 ? atoi(argv[2]) : 2000;
  int nw = distc_nworkers();
  double *t = malloc(sizeof *t * (size_t)iters);
  for (int i = 0; i < warmup + iters; i++) {
    distc_value *v;
    double t0 = bench_now();
    bench_check(distc_reduce("one", 0, nw, DISTC_OP_SUM, NULL, &v), "reduce");
    double t1 = bench_now();
    if (distc_value_double(v) != nw) {
      fprintf(stderr, "bench_reduce: sum %g, not %d\n", distc_value_double(v),
              nw);
      return 1;
    }
    distc_value_free(v);
    if (i >= warmup)
      t[i - warmup] = (t1 - t0) * 1e6;
  }
  printf("%.3f\n", bench_median(t, (size_t)iters));
  free(t);
  return distc_finalize() < 0 ? 1 : 0;
}

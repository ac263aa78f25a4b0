/* bench_rtt.c — median round trip of remotecall_fetch of a no-op on worker
 * 2, in microseconds.  usage: distc-launch -p 1 bench_rtt [WARMUP [ITERS]] */
#include "bench_common.h"

DISTC_FUNCTION(noop) { return distc_nil(); }

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  int warmup = argc > 1 ? atoi(argv[1]) : 2000;
  int iters = argc > 2 ? atoi(argv[2]) : 10000;
  int w;
  if (distc_workers(&w, 1) < 1 || w == DISTC_MASTER) {
    fprintf(stderr, "bench_rtt needs a worker: distc-launch -p 1\n");
    return 1;
  }
  double *t = malloc((size_t)iters * sizeof *t);
  distc_value *v;
  for (int i = 0; i < warmup + iters; i++) {
    double t0 = bench_now();
    bench_check(distc_remotecall_fetch(w, "noop", NULL, &v), "fetch");
    double t1 = bench_now();
    distc_value_free(v);
    if (i >= warmup)
      t[i - warmup] = (t1 - t0) * 1e6;
  }
  printf("%.3f\n", bench_median(t, (size_t)iters));
  free(t);
  return distc_finalize() < 0 ? 1 : 0;
}

/* bench_pmap.c — pmap throughput in items/s: the median of RUNS maps of N
 * int items after one warm-up map.
 *   batch1: f(x) = x (a no-op), batch size 1
 *   auto:   f(x) = x + 1, automatic batches
 * usage: distc-launch -p 2 bench_pmap batch1|auto N [RUNS] */
#include <string.h>

#include "bench_common.h"

DISTC_FUNCTION(noop) { return distc_value_ref(distc_list_at(args, 0)); }

DISTC_FUNCTION(inc) {
  return distc_int(distc_value_int(distc_list_at(args, 0)) + 1);
}

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  if (argc < 3 || (strcmp(argv[1], "batch1") && strcmp(argv[1], "auto"))) {
    fprintf(stderr, "usage: bench_pmap batch1|auto N [RUNS]\n");
    return 2;
  }
  bool batch1 = !strcmp(argv[1], "batch1");
  size_t n = (size_t)atol(argv[2]);
  int runs = argc > 3 ? atoi(argv[3]) : 5;
  distc_value *in = distc_list(n), *out;
  for (size_t i = 0; i < n; i++)
    distc_list_set(in, i, distc_int((int64_t)i));
  distc_pmap_opts o = {.batch_size = batch1 ? 1 : 0, .no_progress = true};
  const char *fn = batch1 ? "noop" : "inc";
  double *rate = malloc(sizeof *rate * (size_t)runs);
  for (int r = -1; r < runs; r++) {
    double t0 = bench_now();
    bench_check(distc_pmap(fn, in, &o, &out), "pmap");
    double t = bench_now() - t0;
    int64_t last = batch1 ? (int64_t)n - 1 : (int64_t)n; /* f(n - 1) */
    if (distc_list_len(out) != n ||
        distc_value_int(distc_list_at(out, n - 1)) != last) {
      fprintf(stderr, "bench_pmap: wrong results\n");
      return 1;
    }
    distc_value_free(out);
    if (r >= 0)
      rate[r] = (double)n / t;
  }
  printf("%.0f\n", bench_median(rate, (size_t)runs));
  free(rate);
  distc_value_free(in);
  return distc_finalize() < 0 ? 1 : 0;
}

/* bench_shared_loop.c — a distributed loop adding 1.0 to every element of a
 * 100M-element shared double array (800 MB), split over the workers, then
 * memcpy of 800 MB in the master.  Prints "<loop GB/s> <memcpy GB/s>",
 * medians of REPS runs after one warm-up each, where the loop's GB/s counts
 * the array's bytes once per pass (GB = 1e9 bytes).
 * usage: distc-launch -p 2 bench_shared_loop [REPS] */
#include <string.h>

#include "bench_common.h"

#define NDOUBLE ((size_t)100000000)
#define NBYTES (NDOUBLE * sizeof(double))

/* The loop body over a whole chunk: [lo, hi, S]. */
DISTC_FUNCTION(add_one) {
  size_t lo = (size_t)distc_value_int(distc_list_at(args, 0));
  size_t hi = (size_t)distc_value_int(distc_list_at(args, 1));
  const distc_value *s = distc_list_at(args, 2);
  if (!distc_is_shared(s) || hi > distc_array_len(s))
    return distc_fail(ctx, "add_one wants [lo, hi, shared array]");
  double *d = distc_array_data(s);
  for (size_t i = lo; i < hi; i++)
    d[i] += 1.0;
  return distc_nil();
}

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  if (distc_nworkers() < 2 || distc_nprocs() < 3) {
    fprintf(stderr, "bench_shared_loop wants 2 workers: distc-launch -p 2\n");
    return 1;
  }
  size_t dims[1] = {NDOUBLE};
  distc_value *s = NULL;
  bench_check(distc_shared_new(DISTC_F64, 1, dims, NULL, &s), "shared array");
  double *loop = malloc((size_t)reps * sizeof *loop);
  /* The warm-up pass also maps the pages into each worker. */
  for (int i = -1; i < reps; i++) {
    double t0 = bench_now();
    bench_check(distc_distributed_for("add_one", 0, (int64_t)NDOUBLE, s),
                "distributed loop");
    double t1 = bench_now();
    if (i >= 0)
      loop[i] = NBYTES / (t1 - t0) / 1e9;
  }
  const double *d = distc_array_data(s);
  for (size_t i = 0; i < NDOUBLE; i++)
    if (d[i] != reps + 1.0) {
      fprintf(stderr, "bench_shared_loop: element %zu is %g, not %d\n", i,
              d[i], reps + 1);
      return 1;
    }
  distc_value_free(s);

  printf("%.3f %.3f\n", bench_median(loop, (size_t)reps),
         bench_memcpy_gbs(NBYTES, reps));
  free(loop);
  return distc_finalize() < 0 ? 1 : 0;
}

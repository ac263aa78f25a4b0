/* bench_fetch.c — fetch a 64 MiB double array from worker 2 (built once and
 * kept there, so only the transfer is timed), then memcpy 64 MiB in the
 * master.  Prints "<fetch GB/s> <memcpy GB/s>", medians of REPS runs after
 * one warm-up (GB = 1e9 bytes).  usage: distc-launch -p 1 bench_fetch [REPS] */
#include <string.h>

#include "bench_common.h"

#define NDOUBLE ((size_t)8 << 20) /* 64 MiB */
#define NBYTES (NDOUBLE * sizeof(double))

DISTC_FUNCTION(big_array) {
  static distc_value *arr;
  if (!arr) {
    size_t dims[1] = {NDOUBLE};
    arr = distc_array(DISTC_F64, 1, dims);
    if (!arr)
      return distc_fail(ctx, "cannot allocate 64 MiB");
    double *d = distc_array_data(arr);
    for (size_t i = 0; i < NDOUBLE; i++)
      d[i] = (double)i;
  }
  return distc_value_ref(arr);
}

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  int reps = argc > 1 ? atoi(argv[1]) : 7;
  int w;
  if (distc_workers(&w, 1) < 1 || w == DISTC_MASTER) {
    fprintf(stderr, "bench_fetch needs a worker: distc-launch -p 1\n");
    return 1;
  }
  double *fetch = malloc((size_t)reps * sizeof *fetch);
  distc_value *v;
  for (int i = -1; i < reps; i++) {
    double t0 = bench_now();
    bench_check(distc_remotecall_fetch(w, "big_array", NULL, &v), "fetch");
    double t1 = bench_now();
    if (distc_array_len(v) != NDOUBLE ||
        ((double *)distc_array_data(v))[NDOUBLE - 1] != (double)(NDOUBLE - 1)) {
      fprintf(stderr, "bench_fetch: wrong array came back\n");
      return 1;
    }
    distc_value_free(v);
    if (i >= 0)
      fetch[i] = NBYTES / (t1 - t0) / 1e9;
  }

  printf("%.3f %.3f\n", bench_median(fetch, (size_t)reps),
         bench_memcpy_gbs(NBYTES, reps));
  free(fetch);
  return distc_finalize() < 0 ? 1 : 0;
}

/* bench_join.c — the master of the elastic_join row: once every worker of
 * the submitted jobs has joined (distc-launch --submit starts it then), one
 * no-op call on each; prints the wall clock (epoch µs) when all answered,
 * so the row times submission to answers and not the jobs' teardown. */
#include <sys/time.h>

#include "bench_common.h"

DISTC_FUNCTION(noop) { return distc_nil(); }

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  int ids[256];
  int n = distc_workers(ids, 256);
  distc_future *fs[256];
  for (int i = 0; i < n; i++)
    bench_check(distc_remotecall(ids[i], "noop", NULL, &fs[i]), "remotecall");
  bench_check(distc_wait_all(fs, (size_t)n), "wait_all");
  struct timeval tv;
  gettimeofday(&tv, NULL);
  printf("workers %d answered_us %lld\n", n,
         (long long)tv.tv_sec * 1000000 + tv.tv_usec);
  fflush(stdout);
  for (int i = 0; i < n; i++)
    distc_future_free(fs[i]);
  return distc_finalize() < 0 ? 1 : 0;
}

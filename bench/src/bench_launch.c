/* bench_launch.c — start, one no-op call on every worker, exit.  The bench
 * script times the whole `distc-launch -p 8 bench_launch` from outside. */
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
  for (int i = 0; i < n; i++)
    distc_future_free(fs[i]);
  return distc_finalize() < 0 ? 1 : 0;
}

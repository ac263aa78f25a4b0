/* bench_rss.c — VmRSS of an idle worker in MiB: one call (which tells us
 * its pid), ~0.5 s of idling, then the master reads /proc/<pid>/status.
 * usage: distc-launch -p 1 bench_rss */
#include <unistd.h>

#include "bench_common.h"

DISTC_FUNCTION(get_pid) { return distc_int(getpid()); }

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  int w;
  if (distc_workers(&w, 1) < 1 || w == DISTC_MASTER) {
    fprintf(stderr, "bench_rss needs a worker: distc-launch -p 1\n");
    return 1;
  }
  distc_value *v;
  bench_check(distc_remotecall_fetch(w, "get_pid", NULL, &v), "fetch");
  int pid = (int)distc_value_int(v);
  distc_value_free(v);
  usleep(500000);
  long kib = bench_vmrss_kib(pid);
  if (kib < 0) {
    fprintf(stderr, "cannot read VmRSS of worker pid %d\n", pid);
    return 1;
  }
  printf("%.3f\n", (double)kib / 1024);
  return distc_finalize() < 0 ? 1 : 0;
}

/* bench_peers.c — worker-to-worker rows.
 *   distc-launch -p 2 bench_peers pipe N    items/s of an N-item pipeline,
 *       producer on worker 2, consumer on worker 3, channel owned by 3,
 *       capacity 64 (from the first put to the consumer's last take)
 *   distc-launch -p 2 bench_peers rtt WARMUP ITERS   prints "W2W M2W": the
 *       median round trip (us) of remotecall_fetch of a no-op from worker 2
 *       to worker 3, and from the master to worker 3, in the same run */
#include "bench_common.h"

DISTC_FUNCTION(noop) { return distc_nil(); }

/* [ch, n]: puts 0..n-1, then closes. */
DISTC_FUNCTION(produce) {
  const distc_value *ch = distc_list_at(args, 0);
  int64_t n = distc_value_int(distc_list_at(args, 1));
  for (int64_t i = 0; i < n; i++) {
    distc_value *x = distc_int(i);
    int rc = distc_channel_put(ch, x);
    distc_value_free(x);
    if (rc < 0)
      return distc_fail(ctx, "put: %s", distc_errmsg());
  }
  distc_channel_close(ch);
  return distc_nil();
}

/* [ch, n]: takes n items; answers the seconds from the first to the last. */
DISTC_FUNCTION(consume) {
  const distc_value *ch = distc_list_at(args, 0);
  int64_t n = distc_value_int(distc_list_at(args, 1));
  double t0 = 0;
  for (int64_t i = 0; i < n; i++) {
    distc_value *v = NULL;
    if (distc_channel_take(ch, &v) < 0)
      return distc_fail(ctx, "take %lld: %s", (long long)i, distc_errmsg());
    if (i == 0)
      t0 = bench_now();
    distc_value_free(v);
  }
  return distc_double(bench_now() - t0);
}

static double rtt_to(int pid, int warmup, int iters) {
  double *t = malloc((size_t)iters * sizeof *t);
  distc_value *v;
  for (int i = 0; i < warmup + iters; i++) {
    double t0 = bench_now();
    bench_check(distc_remotecall_fetch(pid, "noop", NULL, &v), "fetch");
    double t1 = bench_now();
    distc_value_free(v);
    if (i >= warmup)
      t[i - warmup] = (t1 - t0) * 1e6;
  }
  double m = bench_median(t, (size_t)iters);
  free(t);
  return m;
}

/* [pid, warmup, iters]: the median rtt from here to pid, us. */
DISTC_FUNCTION(rtt_from_here) {
  (void)ctx;
  return distc_double(rtt_to((int)distc_value_int(distc_list_at(args, 0)),
                             (int)distc_value_int(distc_list_at(args, 1)),
                             (int)distc_value_int(distc_list_at(args, 2))));
}

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  const char *mode = argc > 1 ? argv[1] : "";
  if (distc_workers(NULL, 0) < 2) {
    fprintf(stderr, "bench_peers needs 2 workers: distc-launch -p 2\n");
    return 1;
  }
  if (strcmp(mode, "pipe") == 0) {
    int64_t n = argc > 2 ? atoll(argv[2]) : 100000;
    distc_value *ch, *a, *took = NULL;
    distc_future *p, *c;
    bench_check(distc_channel_new(3, 64, &ch), "channel");
    a = distc_listv(2, distc_value_ref(ch), distc_int(n));
    bench_check(distc_remotecall(3, "consume", a, &c), "consume");
    bench_check(distc_remotecall(2, "produce", a, &p), "produce");
    bench_check(distc_wait(p), "producer");
    bench_check(distc_fetch(c, &took), "consumer");
    printf("%.0f\n", (double)(n - 1) / distc_value_double(took));
    distc_value_free(took);
    distc_value_free(a);
    distc_future_free(p);
    distc_future_free(c);
    distc_channel_free(ch);
  } else if (strcmp(mode, "rtt") == 0) {
    int warmup = argc > 2 ? atoi(argv[2]) : 2000;
    int iters = argc > 3 ? atoi(argv[3]) : 10000;
    distc_value *a = distc_listv(3, distc_int(3), distc_int(warmup),
                                 distc_int(iters)),
                *w = NULL;
    bench_check(distc_remotecall_fetch(2, "rtt_from_here", a, &w), "w2w");
    double m2w = rtt_to(3, warmup, iters);
    printf("%.3f %.3f\n", distc_value_double(w), m2w);
    distc_value_free(w);
    distc_value_free(a);
  } else {
    fprintf(stderr, "usage: bench_peers pipe N | rtt WARMUP ITERS\n");
    return 2;
  }
  return distc_finalize() < 0 ? 1 : 0;
}

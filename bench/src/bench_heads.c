/* bench_heads.c — the speedup of counting heads in 200M coin tosses (200
 * blocks of 1M, contrib/coin.h) with distc_reduce over the workers, and of
 * the machine's own limit: as many bare forked processes as workers, each
 * counting its share and writing it to a pipe (fork and wait timed too).
 * Both are against the serial loop in this process, measured in the same
 * run, interleaved; the fastest of RUNS each.  All three call the one
 * out-of-line coin_blocks (coin.h) with the same run-time arguments, so
 * they time the same machine code.  Prints "DISTC_SPEEDUP
 * BARE_SPEEDUP".
 * usage: distc-launch -p 2 bench_heads [RUNS] */
#include <sys/wait.h>
#include <unistd.h>

#include "../../contrib/coin.h"
#include "bench_common.h"

#define SEED 20240611u
#define BLOCKS 200
#define PER_BLOCK 1000000

/* args [lo, hi, [seed, per_block]] -> heads in blocks [lo, hi) */
DISTC_FUNCTION(heads_chunk) {
  const distc_value *a = distc_list_at(args, 2);
  return distc_int(coin_blocks(
      (uint64_t)distc_value_int(distc_list_at(a, 0)),
      distc_value_int(distc_list_at(args, 0)),
      distc_value_int(distc_list_at(args, 1)),
      distc_value_int(distc_list_at(a, 1))));
}

/* The fastest of n runs (as Julia's @btime): on a shared machine the
 * other runs measure the neighbours as much as the program. */
static double fastest(const double *t, int n) {
  double m = t[0];
  for (int i = 1; i < n; i++)
    m = t[i] < m ? t[i] : m;
  return m;
}

/* nproc forked processes, each counting its share of the blocks. */
static int64_t bare(int nproc) {
  int fds[64][2];
  pid_t pids[64];
  for (int k = 0; k < nproc; k++) {
    if (pipe(fds[k]) < 0 || (pids[k] = fork()) < 0) {
      perror("bench_heads");
      exit(1);
    }
    if (pids[k] == 0) {
      int64_t lo = (int64_t)BLOCKS * k / nproc,
              hi = (int64_t)BLOCKS * (k + 1) / nproc;
      int64_t h = coin_blocks(SEED, lo, hi, PER_BLOCK);
      _exit(write(fds[k][1], &h, sizeof h) == sizeof h ? 0 : 1);
    }
    close(fds[k][1]);
  }
  int64_t total = 0;
  for (int k = 0; k < nproc; k++) {
    int64_t h = 0;
    if (read(fds[k][0], &h, sizeof h) != sizeof h)
      exit(1);
    close(fds[k][0]);
    waitpid(pids[k], NULL, 0);
    total += h;
  }
  return total;
}

int main(int argc, char **argv) {
  bench_check(distc_init(&argc, &argv), "distc_init");
  int runs = argc > 1 ? atoi(argv[1]) : 5, nw = distc_nworkers();
  if (nw > 64 || distc_nprocs() < 2 || runs < 1 || runs > 64) {
    fprintf(stderr, "bench_heads wants 1 to 64 workers and 1 to 64 runs: "
                    "distc-launch -p 2 bench_heads 5\n");
    return 1;
  }
  double ts[64], td[64], tb[64];
  distc_value *arg = distc_listv(2, distc_int(SEED), distc_int(PER_BLOCK));
  for (int r = 0; r < runs; r++) {
    double t0 = bench_now();
    int64_t serial = coin_blocks(SEED, 0, BLOCKS, PER_BLOCK);
    double t1 = bench_now();
    distc_value *v;
    bench_check(distc_reduce("heads_chunk", 0, BLOCKS, DISTC_OP_SUM, arg, &v),
                "distc_reduce");
    double t2 = bench_now();
    int64_t forked = bare(nw);
    double t3 = bench_now();
    if (distc_value_int(v) != serial || forked != serial) {
      fprintf(stderr, "bench_heads: counts differ: %lld %lld %lld\n",
              (long long)serial, (long long)distc_value_int(v),
              (long long)forked);
      return 1;
    }
    distc_value_free(v);
    ts[r] = t1 - t0;
    td[r] = t2 - t1;
    tb[r] = t3 - t2;
  }
  double s = fastest(ts, runs), d = fastest(td, runs), b = fastest(tb, runs);
  printf("%.3f %.3f\n", s / d, s / b);
  distc_value_free(arg);
  return distc_finalize() < 0 ? 1 : 0;
}

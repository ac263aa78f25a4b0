/* heads.c — the seed notebook's reduction: count the heads in 200,000,000
 * coin tosses, with a serial loop and with a distributed reduction
 * (Julia's `@distributed (+) for`), and check that the counts agree.
 *
 * The tosses come in 200 blocks of 1,000,000, each block its own xoshiro256+
 * stream (coin.h): the reduction splits the blocks into one contiguous
 * chunk per worker, each worker counts its chunk in one call, and the
 * master adds the partial counts.  Every toss is the same however the
 * blocks are split, so the two counts agree exactly.
 *
 *   distc-launch -p 4 ./heads [TOSSES_IN_MILLIONS]
 */
#include <distc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "coin.h"

#define SEED 20240611u
#define PER_BLOCK 1000000

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The chunk function: args [lo, hi, [seed, per_block]], the heads in
 * blocks [lo, hi). */
DISTC_FUNCTION(count_heads) {
  const distc_value *a = distc_list_at(args, 2);
  int64_t lo = distc_value_int(distc_list_at(args, 0)),
          hi = distc_value_int(distc_list_at(args, 1));
  if (distc_list_len(a) != 2 || hi < lo)
    return distc_fail(ctx, "count_heads wants [lo, hi, [seed, per_block]]");
  return distc_int(coin_blocks((uint64_t)distc_value_int(distc_list_at(a, 0)),
                               lo, hi, distc_value_int(distc_list_at(a, 1))));
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "heads: %s\n", distc_errmsg());
    return 1;
  }
  int64_t blocks = argc > 1 ? atoll(argv[1]) : 200;
  if (blocks < 1) {
    fprintf(stderr, "usage: heads [TOSSES_IN_MILLIONS >= 1]\n");
    return 2;
  }
  printf("%lld coin tosses, %d workers\n", (long long)blocks * PER_BLOCK,
         distc_nworkers());

  double t0 = now();
  int64_t serial = coin_blocks(SEED, 0, blocks, PER_BLOCK);
  double t1 = now();
  printf("serial loop:           %lld heads in %.3f s\n", (long long)serial,
         t1 - t0);

  distc_value *arg = distc_listv(2, distc_int(SEED), distc_int(PER_BLOCK)),
              *v = NULL;
  t0 = now();
  int rc = distc_reduce("count_heads", 0, blocks, DISTC_OP_SUM, arg, &v);
  t1 = now();
  distc_value_free(arg);
  if (rc < 0) {
    fprintf(stderr, "heads: %s\n", distc_errmsg());
    return 1;
  }
  int64_t dist = distc_value_int(v);
  distc_value_free(v);
  printf("distributed reduction: %lld heads in %.3f s\n", (long long)dist,
         t1 - t0);
  printf("%s\n", dist == serial ? "the counts agree" : "THE COUNTS DIFFER");
  distc_finalize();
  return dist == serial ? 0 : 1;
}

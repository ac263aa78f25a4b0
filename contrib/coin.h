/* coin.h — the coin tosses of heads.c and bench/src/bench_heads.c.
 *
 * The tosses come in blocks, each block an independent xoshiro256+ stream
 * seeded from (seed, block index) through splitmix64.  However the blocks
 * are split between workers, each toss is the same, so the serial loop and
 * every distributed run count exactly the same heads; and each worker's
 * share is a set of independent streams, never a shared or overlapping
 * one.  One toss is one generator step, as Julia's rand((0,1)) is. */
#ifndef COIN_H
#define COIN_H

#include <stdint.h>

static inline uint64_t coin_splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t coin_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* Heads among the tosses of one block. */
static inline int64_t coin_block(uint64_t seed, int64_t block, int64_t tosses) {
  uint64_t x = seed ^ ((uint64_t)block * 0xd1b54a32d192ed03ull);
  uint64_t s0 = coin_splitmix64(&x), s1 = coin_splitmix64(&x),
           s2 = coin_splitmix64(&x), s3 = coin_splitmix64(&x);
  int64_t heads = 0;
  for (int64_t i = 0; i < tosses; i++) {
    uint64_t r = s0 + s3, t = s1 << 17;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = coin_rotl(s3, 45);
    heads += (int64_t)(r >> 63); /* the top bit: the best one of xoshiro256+ */
  }
  return heads;
}

/* Never inlined, and (GCC) never cloned for constant arguments: the serial
 * loop, forked processes and the distributed chunks must all run this very
 * machine code, or a timing compares what the compiler folded (a constant
 * block size unrolls the loop differently) rather than how the work was
 * spread. */
#if defined(__GNUC__) && !defined(__clang__)
#define COIN_NOINLINE __attribute__((noinline, noipa, unused))
#else
#define COIN_NOINLINE __attribute__((noinline, unused))
#endif

/* Heads in blocks [lo, hi) of per_block tosses each. */
static COIN_NOINLINE int64_t coin_blocks(uint64_t seed, int64_t lo, int64_t hi,
                                         int64_t per_block) {
  int64_t heads = 0;
  for (int64_t b = lo; b < hi; b++)
    heads += coin_block(seed, b, per_block);
  return heads;
}

#endif

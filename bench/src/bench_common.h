/* bench_common.h — helpers shared by the distc bench programs. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <distc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void bench_check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "%s: %s (%s)\n", what, distc_strerror(rc), distc_errmsg());
    exit(1);
  }
}

static inline int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v in place and returns its median. */
static inline double bench_median(double *v, size_t n) {
  qsort(v, n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The machine's own copy bandwidth, the peer of several rows: median GB/s
 * (1e9 bytes/s) of reps memcpys of n bytes after one warm-up, both buffers
 * faulted in before timing. */
static inline double bench_memcpy_gbs(size_t n, int reps) {
  char *src = malloc(n), *dst = malloc(n);
  double *gbs = malloc(sizeof *gbs * (size_t)reps);
  if (!src || !dst || !gbs) {
    fprintf(stderr, "bench: out of memory for the memcpy peer\n");
    exit(1);
  }
  memset(src, 1, n);
  memset(dst, 2, n);
  for (int i = -1; i < reps; i++) {
    double t0 = bench_now();
    memcpy(dst, src, n);
    double t1 = bench_now();
    __asm__ volatile("" : : "r"(dst) : "memory"); /* keep the copy */
    if (i >= 0)
      gbs[i] = (double)n / (t1 - t0) / 1e9;
  }
  double m = bench_median(gbs, (size_t)reps);
  free(src);
  free(dst);
  free(gbs);
  return m;
}

/* VmRSS of process pid ("self" when pid is 0) in KiB, or -1. */
static inline long bench_vmrss_kib(int pid) {
  char path[64], line[256];
  if (pid)
    snprintf(path, sizeof path, "/proc/%d/status", pid);
  else
    snprintf(path, sizeof path, "/proc/self/status");
  FILE *f = fopen(path, "r");
  long kib = -1;
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

#endif

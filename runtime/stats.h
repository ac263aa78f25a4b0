/* stats.h — per-peer traffic counters behind distc_stats (internal).
 *
 * Kept always: each is a relaxed atomic add on a path that already writes
 * or reads a frame, or, for the in-flight time, updated under the pending
 * table's lock that the call takes anyway. */
#ifndef DISTC_STATS_H
#define DISTC_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct distc__peer_stats {
  _Atomic uint64_t calls_out;    /* calls we sent to the peer */
  _Atomic uint64_t calls_in;     /* calls the peer sent us */
  _Atomic uint64_t bytes_out;    /* written to the connection, headers too */
  _Atomic uint64_t bytes_in;     /* read from it */
  _Atomic uint64_t bytes_copied; /* copied out of the peer's memory (CMA) */
  _Atomic uint64_t busy_ns;      /* time with >= 1 of our calls in flight */
  /* under the connection's plock */
  int inflight;
  uint64_t busy_since; /* ns, monotonic, while inflight > 0 */
} distc__peer_stats;

static inline void distc__stat_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* A call to the peer was sent / answered (or abandoned); caller holds the
 * connection's plock. */
void distc__stats_call_start(distc__peer_stats *s);
void distc__stats_call_end(distc__peer_stats *s);

/* At distc_finalize on the master: the per-worker table for
 * $DISTC_STATS (distc-launch --stats), on stderr. */
void distc__stats_report(void);
/* At distc_init: when the counting began. */
void distc__stats_init(void);

#endif

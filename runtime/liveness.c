/* liveness.c — heartbeats and the silence deadline.
 *
 * A link that carries frames needs no heartbeat: any byte read proves the
 * peer alive.  So connections count frames written and bytes read (plain
 * counters on the hot paths, no clock).  A worker's I/O thread sends a PING
 * when its link was written nothing for half an interval, so no link from a
 * live worker is quiet for a whole one; PINGs need no answer, so a worker
 * running a long call inline stays alive.  The master looks at the counters
 * four times per interval and loses a worker whose link has been silent for
 * misses intervals (>= 2), exactly as if its process had exited.  Only the
 * master judges: see worker.c for why and for what a worker does instead. */
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "internal.h"

static distc__liveness live = {DISTC__HEARTBEAT_S_DEFAULT * 1e9,
                               DISTC__HEARTBEAT_MISSES_DEFAULT};
static pthread_once_t live_once = PTHREAD_ONCE_INIT;

static void live_init(void) {
  const char *s = getenv("DISTC_HEARTBEAT_S");
  char *end;
  if (s) {
    double v = strtod(s, &end);
    if (end != s && *end == '\0' && v >= 0 && v <= 86400)
      live.interval_ns = v * 1e9;
    else
      distc__log(DISTC__LOG_WARN, "ignoring DISTC_HEARTBEAT_S=%s: it wants "
                 "seconds between heartbeats (0 turns them off)", s);
  }
  if ((s = getenv("DISTC_HEARTBEAT_MISSES"))) {
    long v = strtol(s, &end, 10);
    if (end != s && *end == '\0' && v >= 2 && v <= 1000000)
      live.misses = (int)v;
    else
      distc__log(DISTC__LOG_WARN, "ignoring DISTC_HEARTBEAT_MISSES=%s: it "
                 "wants a whole number of intervals >= 2", s);
  }
}

const distc__liveness *distc__liveness_get(void) {
  pthread_once(&live_once, live_init);
  return &live;
}

void distc__liveness_set(double interval_ns, int misses) {
  pthread_once(&live_once, live_init);
  live.interval_ns = interval_ns;
  live.misses = misses;
}

double distc__conn_silent(distc__conn *c, double now) {
  const distc__liveness *l = distc__liveness_get();
  uint64_t rx = atomic_load_explicit(&c->rx_bytes, memory_order_relaxed);
  if (rx != c->seen_rx || c->rx_at == 0) {
    c->seen_rx = rx;
    c->rx_at = now;
    return 0;
  }
  double quiet = now - c->rx_at;
  if (l->interval_ns <= 0 || quiet < l->interval_ns * l->misses)
    return 0;
  /* Bytes waiting unread mean the peer spoke and we were the slow ones
   * (this checker ran late, or every reader was busy). */
  int unread = 0;
  if ((ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) ||
      distc__conn_ring_unread(c) > 0) {
    c->rx_at = now;
    return 0;
  }
  return quiet;
}

bool distc__liveness_late(double *last, double now) {
  const distc__liveness *l = distc__liveness_get();
  bool late = *last > 0 && now - *last > l->interval_ns;
  *last = now;
  return late;
}

void distc__conn_forgive(distc__conn *c, double now) {
  c->seen_rx = atomic_load_explicit(&c->rx_bytes, memory_order_relaxed);
  c->rx_at = now;
}

void distc__conn_heartbeat(distc__conn *c) {
  uint64_t tx = atomic_load_explicit(&c->tx_frames, memory_order_relaxed);
  if (tx != c->seen_tx) {
    c->seen_tx = tx;
    return;
  }
  /* Only when nobody is writing: a writer holding wlock is traffic.  A
   * socket without room (no queue: a worker's) skips this beat. */
  if (pthread_mutex_trylock(&c->wlock) != 0)
    return;
  pthread_mutex_unlock(&c->wlock);
  struct pollfd p = {.fd = c->fd, .events = POLLOUT};
  if (c->epfd < 0 && (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)))
    return;
  distc__conn_send_nowait(c, DISTC__F_PING, 0, 0, NULL, 0);
  c->seen_tx = atomic_load_explicit(&c->tx_frames, memory_order_relaxed);
}

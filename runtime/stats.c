/* stats.c — distc_stats and distc-launch --stats: per-peer counters of
 * calls, bytes and the time a peer was busy with our calls.
 *
 * Busy time is measured where the calls are made, as the time at least one
 * of our calls was in flight on the peer: no message is needed to read it,
 * and with several calls or pmap batches in flight it is what the peer's
 * utilisation looks like from here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static double t_init_ns;

void distc__stats_init(void) { t_init_ns = distc__now(); }

void distc__stats_call_start(distc__peer_stats *s) {
  distc__stat_add(&s->calls_out, 1);
  if (s->inflight++ == 0)
    s->busy_since = (uint64_t)distc__now();
}

void distc__stats_call_end(distc__peer_stats *s) {
  if (s->inflight > 0 && --s->inflight == 0)
    distc__stat_add(&s->busy_ns, (uint64_t)distc__now() - s->busy_since);
}

/* Adds c's counters to *s. */
static void add_conn(distc__conn *c, distc_peer_stats *s) {
  distc__peer_stats *p = &c->st;
  s->calls_sent += atomic_load_explicit(&p->calls_out, memory_order_relaxed);
  s->calls_received +=
      atomic_load_explicit(&p->calls_in, memory_order_relaxed);
  s->bytes_sent += atomic_load_explicit(&p->bytes_out, memory_order_relaxed);
  s->bytes_received +=
      atomic_load_explicit(&p->bytes_in, memory_order_relaxed);
  s->bytes_copied +=
      atomic_load_explicit(&p->bytes_copied, memory_order_relaxed);
  pthread_mutex_lock(&c->plock);
  uint64_t busy = atomic_load(&p->busy_ns);
  if (p->inflight > 0)
    busy += (uint64_t)distc__now() - p->busy_since;
  pthread_mutex_unlock(&c->plock);
  s->busy_s += (double)busy / 1e9;
}

int distc_stats(int pid, distc_peer_stats *s) {
  distc__cluster *C = &distc__C;
  if (!s)
    return distc__seterr(DISTC_EINVAL, "distc_stats: no place for the "
                                       "statistics");
  memset(s, 0, sizeof *s);
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!C->is_master && pid == C->myid) {
    /* A worker's totals: its link to the master and its worker links. */
    pthread_mutex_lock(&C->lock);
    for (int i = 0; i < C->conncap; i++)
      if (C->conns[i] && C->conns[i] != DISTC__GONE)
        add_conn(C->conns[i], s);
    pthread_mutex_unlock(&C->lock);
    return 0;
  }
  if (!C->is_master) {
    /* A worker's peers: the master and the workers it has links to. */
    distc__conn *c = distc__conn_get(pid);
    if (!c)
      return distc__seterr(DISTC_ENOENT, "a worker has statistics for the "
                                         "master (1), itself and the workers "
                                         "it called or was called by, not "
                                         "for process %d", pid);
    add_conn(c, s);
    distc__conn_unref(c);
    return 0;
  }
  if (pid != C->myid) {
    distc__conn *c = distc__conn_get(pid);
    if (!c)
      return distc__seterr(DISTC_ENOENT, "there is no process %d (see "
                                         "distc_workers())", pid);
    add_conn(c, s);
    distc__conn_unref(c);
    return 0;
  }
  pthread_mutex_lock(&C->lock);
  for (int i = 0; i < C->nids; i++) {
    distc__conn *c = C->conns[C->ids[i]];
    if (c && c != DISTC__GONE)
      add_conn(c, s);
  }
  pthread_mutex_unlock(&C->lock);
  return 0;
}

/* 1536 -> "1.5 KiB" */
static const char *human(uint64_t n, char *buf, size_t len) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%llu B", (unsigned long long)n);
  else
    snprintf(buf, len, "%.1f %s", v, unit[u]);
  return buf;
}

static void row(FILE *f, const char *who, const char *host,
                const distc_peer_stats *s, double elapsed) {
  char a[32], b[32], c[32];
  fprintf(f, "%8s  %-16.16s %9llu %9llu %11s %11s %11s %8.3f %5.0f%%\n", who,
          host, (unsigned long long)s->calls_sent,
          (unsigned long long)s->calls_received,
          human(s->bytes_sent, a, sizeof a),
          human(s->bytes_received, b, sizeof b),
          human(s->bytes_copied, c, sizeof c), s->busy_s,
          elapsed > 0 ? 100 * s->busy_s / elapsed : 0);
}

void distc__stats_report(void) {
  distc__cluster *C = &distc__C;
  const char *e = getenv("DISTC_STATS");
  if (!e || !*e || strcmp(e, "0") == 0 || !C->is_master)
    return;
  double elapsed = (distc__now() - t_init_ns) / 1e9;
  pthread_mutex_lock(&C->lock);
  int n = C->nids;
  int *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
  for (int i = 0; ids && i < n; i++)
    ids[i] = C->ids[i];
  pthread_mutex_unlock(&C->lock);
  if (!ids)
    return;
  /* One buffer, one write: the table stays whole among other output. */
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) {
    free(ids);
    return;
  }
  fprintf(f,
          "distc: statistics of the master's traffic with each worker over "
          "%.3f s\n"
          "%8s  %-16s %9s %9s %11s %11s %11s %8s %6s\n",
          elapsed, "worker", "host", "calls", "calls in", "sent",
          "received", "copied", "busy s", "busy");
  distc_peer_stats total = {0};
  for (int i = 0; i < n; i++) {
    distc__conn *c = distc__conn_get(ids[i]);
    if (!c)
      continue;
    distc_peer_stats s = {0};
    add_conn(c, &s);
    char who[16];
    snprintf(who, sizeof who, "%d", ids[i]);
    row(f, who, c->host, &s, elapsed);
    distc__conn_unref(c);
    total.calls_sent += s.calls_sent;
    total.calls_received += s.calls_received;
    total.bytes_sent += s.bytes_sent;
    total.bytes_received += s.bytes_received;
    total.bytes_copied += s.bytes_copied;
    total.busy_s += s.busy_s;
  }
  row(f, "total", "", &total, elapsed * (n ? n : 1));
  fclose(f);
  fwrite(text, 1, len, stderr);
  fflush(stderr);
  free(text);
  free(ids);
}

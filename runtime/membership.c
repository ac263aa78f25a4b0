/* membership.c — the master's table of workers: ids to connections, the
 * live ids in order, and what happens when a worker leaves. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

int distc__members_cap(int id) {
  distc__cluster *C = &distc__C;
  if (id < C->conncap)
    return 0;
  int cap = C->conncap ? C->conncap : 16;
  while (cap <= id)
    cap *= 2;
  distc__conn **c = realloc(C->conns, sizeof *c * (size_t)cap);
  int *ids = realloc(C->ids, sizeof *ids * (size_t)cap);
  if (c)
    C->conns = c;
  if (ids)
    C->ids = ids;
  if (!c || !ids)
    return DISTC_ENOMEM;
  memset(C->conns + C->conncap, 0, sizeof *c * (size_t)(cap - C->conncap));
  C->conncap = cap;
  return 0;
}

static void ids_remove(int id) {
  distc__cluster *C = &distc__C;
  for (int i = 0; i < C->nids; i++) {
    if (C->ids[i] == id) {
      memmove(C->ids + i, C->ids + i + 1, sizeof(int) * (size_t)(C->nids - i - 1));
      C->nids--;
      return;
    }
  }
}

void distc__worker_lost(distc__conn *c) {
  distc__cluster *C = &distc__C;
  atomic_store(&c->dead, true);
  /* lost and the membership change together, under the lock: whoever sees
   * lost (distc_rmprocs) and then asks for the workers must not still find
   * this one among them. */
  distc__conn_wake_senders(c);
  pthread_mutex_lock(&C->lock);
  if (atomic_exchange(&c->lost, true)) {
    pthread_mutex_unlock(&C->lock);
    return;
  }
  /* Tell the peer too (a dropped, misbehaving worker sees EOF and exits). */
  shutdown(c->fd, SHUT_RDWR);
  /* Membership first, so whoever wakes from a failed call below already
   * sees the worker gone. */
  bool owned = false;
  ids_remove(c->id);
  if (c->id < C->conncap && C->conns[c->id] == c) {
    C->conns[c->id] = DISTC__GONE;
    owned = true;
  }
  pthread_cond_broadcast(&C->changed);
  pthread_mutex_unlock(&C->lock);
  distc__output_flush(c);
  distc__conn_fail_pending(c);
  if (!distc__stopping && owned)
    distc__members_note(c->id, false);
  if (c->why[0])
    distc__log(DISTC__LOG_WARN, "worker %d: %s", c->id, c->why);
  else if (!distc__stopping)
    distc__log(DISTC__LOG_INFO, "worker %d (pid %d on %s) left", c->id,
               (int)c->ospid, c->host);
  if (owned)
    distc__conn_unref(c); /* the table's reference */
}

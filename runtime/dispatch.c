/* dispatch.c — the master's frame dispatcher: what a worker's frames mean
 * (answers, output, its departure, its calls for the service threads),
 * read by whichever thread pumps the connection. */
#include "internal.h"

static void dispatch(distc__conn *c, distc__frame *f) {
  switch (f->h.type) {
  case DISTC__F_RESULT:
  case DISTC__F_ERROR:
    distc__complete_call(c, f);
    break;
  case DISTC__F_OUTPUT:
    distc__output_print(c, f->payload, f->h.len);
    break;
  case DISTC__F_DEPART: {
    /* Read under rlock before the hang-up that follows it, so the calls
     * the hang-up fails see it. */
    size_t n = f->h.len < sizeof c->departure ? f->h.len
                                               : sizeof c->departure - 1;
    for (size_t i = 0; i < n; i++) {
      char ch = f->payload[i];
      c->departure[i] = ch >= ' ' && ch <= '~' ? ch : '?';
    }
    c->departure[n] = '\0';
    break;
  }
  case DISTC__F_CALL:
    distc__service_enqueue(c, f);
    return; /* the job owns the payload now */
  case DISTC__F_PING:
    break; /* its bytes already counted as life */
  default:
    distc__log(DISTC__LOG_WARN, "worker %d sent an unexpected frame (type %u)",
               c->id, f->h.type);
  }
  distc__free(f->payload);
}

int distc__master_pump(distc__conn *c, bool block_lock) {
  if (atomic_load(&c->dead))
    return DISTC_EPROCEXIT;
  if (block_lock)
    pthread_mutex_lock(&c->rlock);
  else if (pthread_mutex_trylock(&c->rlock) != 0)
    return 0;
  distc__frame f;
  int r, n = 0;
  /* Dispatch under rlock: frames of one worker are handled in the order
   * sent, so its output is printed before the result that follows it. */
  while ((r = distc__conn_read_frame(c, &f)) > 0) {
    dispatch(c, &f);
    n++;
  }
  pthread_mutex_unlock(&c->rlock);
  if (r < 0) {
    distc__worker_lost(c);
    return r;
  }
  /* On the rings, room for queued bytes is announced on the socket whoever
   * reads it: move them on. */
  if (c->tx && c->sq_len != c->sq_off)
    distc__conn_flush(c);
  return n;
}

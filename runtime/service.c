/* service.c — the master's service threads: they run the calls workers
 * make to the master, and work handed over by threads that must not wait
 * (distc__service_post). */
#include <stdlib.h>

#include "internal.h"

typedef struct distc__job {
  struct distc__job *next;
  distc__conn *conn;
  distc__frame frame;
  void (*fn)(void *arg); /* set: run fn(arg) instead of a call */
  void *arg;
} distc__job;

/* Service threads are started on demand, one more whenever a call arrives
 * and none is idle: a call a worker makes to the master may itself call
 * that worker, which may call the master again, and each link of such a
 * chain needs a thread of its own or the chain deadlocks. */
#define SERVICE_MAX 64
static int service_threads, service_idle;

static void *service_main(void *arg) {
  (void)arg;
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->qlock);
  for (;;) {
    service_idle++;
    while (!C->qhead && C->service_running)
      pthread_cond_wait(&C->qcond, &C->qlock);
    service_idle--;
    if (!C->qhead)
      break;
    distc__job *j = C->qhead;
    C->qhead = j->next;
    if (!C->qhead)
      C->qtail = NULL;
    pthread_mutex_unlock(&C->qlock);
    if (j->fn) {
      j->fn(j->arg);
    } else {
      distc__run_call(j->conn, &j->frame);
      distc__free(j->frame.payload);
      distc__conn_unref(j->conn);
    }
    free(j);
    pthread_mutex_lock(&C->qlock);
  }
  if (--service_threads == 0)
    pthread_cond_broadcast(&C->qcond);
  pthread_mutex_unlock(&C->qlock);
  return NULL;
}

static void service_push(distc__job *j) {
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->qlock);
  C->service_running = true;
  if (service_idle == 0 && service_threads < SERVICE_MAX) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, service_main, NULL) == 0)
      service_threads++;
    pthread_attr_destroy(&attr);
  }
  if (C->qtail)
    C->qtail->next = j;
  else
    C->qhead = j;
  C->qtail = j;
  pthread_cond_signal(&C->qcond);
  pthread_mutex_unlock(&C->qlock);
}

void distc__service_enqueue(distc__conn *c, distc__frame *f) {
  distc__job *j = calloc(1, sizeof *j);
  if (!j) {
    distc__free(f->payload);
    return;
  }
  atomic_fetch_add(&c->refs, 1);
  j->conn = c;
  j->frame = *f;
  service_push(j);
}

int distc__service_post(void (*fn)(void *arg), void *arg) {
  distc__job *j = calloc(1, sizeof *j);
  if (!j)
    return DISTC_ENOMEM;
  j->fn = fn;
  j->arg = arg;
  service_push(j);
  return 0;
}

void distc__service_stop(void) {
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->qlock);
  C->service_running = false;
  pthread_cond_broadcast(&C->qcond);
  while (service_threads > 0)
    pthread_cond_wait(&C->qcond, &C->qlock);
  pthread_mutex_unlock(&C->qlock);
}

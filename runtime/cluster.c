/* cluster.c — process identity and the membership table, shared by the
 * master and worker sides; distc_init picks the side from the environment
 * the launcher (or addprocs) set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

distc__cluster distc__C = {
    .myid = DISTC_MASTER,
    .is_master = true,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .changed = PTHREAD_COND_INITIALIZER,
    .addprocs_lock = PTHREAD_MUTEX_INITIALIZER,
    .qlock = PTHREAD_MUTEX_INITIALIZER,
    .qcond = PTHREAD_COND_INITIALIZER,
    .listen_fd = -1,
    .local_fd = -1,
    .remote_fd = -1,
};

int distc_init(int *argc, char ***argv) {
  distc__cluster *C = &distc__C;
  if (C->initialised)
    return distc__seterr(DISTC_ESTATE, "distc_init was already called");
  C->argc = argc ? *argc : 0;
  C->argv = argv ? *argv : NULL;
  distc__trace_init();
  distc__stats_init();
  const char *role = getenv(DISTC_ENV_ROLE);
  if (role && strcmp(role, "worker") == 0)
    return distc__worker_main();
  if (role && strcmp(role, DISTC_ROLE_PROXY) == 0)
    distc__proxy_main(C->argc, C->argv); /* a launch half started us */
  if (!role && getenv(DISTC_ENV_JOIN))
    return distc__join_main(); /* started by anyone: join a running master */
  int rc = distc__master_init();
  if (distc__tracing()) {
    distc__trace_name_track();
    distc__trace_span("launch", "await workers", distc__trace_t_init,
                      "\"workers\":%d,\"error\":%d", C->nids, rc);
  }
  return rc;
}

int distc_finalize(void) {
  distc__cluster *C = &distc__C;
  if (!C->initialised || C->finalised)
    return 0;
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "distc_finalize on a worker: "
                                           "workers exit when the master "
                                           "finalises");
  distc__stats_report();
  distc__trace_collect();
  return distc__master_finalize();
}

int distc_myid(void) { return distc__C.myid; }

void distc__hostname(char *buf, size_t n) {
  const char *fake = getenv("DISTC_HOSTNAME");
  if (fake && *fake) {
    snprintf(buf, n, "%s", fake);
    return;
  }
  buf[0] = '\0';
  if (gethostname(buf, n) < 0 || n == 0)
    return;
  buf[n - 1] = '\0';
}

int distc_nprocs(void) {
  pthread_mutex_lock(&distc__C.lock);
  int n = distc__C.nids + 1;
  pthread_mutex_unlock(&distc__C.lock);
  return n;
}

int distc_nworkers(void) {
  pthread_mutex_lock(&distc__C.lock);
  int n = distc__C.nids;
  pthread_mutex_unlock(&distc__C.lock);
  return n > 0 ? n : 1;
}

int distc_workers(int *ids, int max) {
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->lock);
  int n = C->nids;
  if (n == 0) {
    if (ids && max > 0)
      ids[0] = DISTC_MASTER;
    n = 1;
  } else {
    for (int i = 0; ids && i < n && i < max; i++)
      ids[i] = C->ids[i];
  }
  pthread_mutex_unlock(&C->lock);
  return n;
}

distc__conn *distc__conn_get(int id) {
  distc__cluster *C = &distc__C;
  distc__conn *c = NULL;
  pthread_mutex_lock(&C->lock);
  if (id >= 0 && id < C->conncap && C->conns[id] &&
      C->conns[id] != DISTC__GONE && !atomic_load(&C->conns[id]->lost)) {
    c = C->conns[id];
    atomic_fetch_add(&c->refs, 1);
  }
  pthread_mutex_unlock(&C->lock);
  return c;
}

/* addprocs.c — growing and shrinking the cluster from the program:
 * distc_addprocs (the start-up path of distc-launch, run in the master) and
 * distc_rmprocs. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec_diag.h"
#include "internal.h"

#define RMPROCS_GRACE_S 5.0 /* default; DISTC_RMPROCS_GRACE overrides */

/* "127.0.0.1:PORT" of a listener on every address, for managers that start
 * workers on other hosts (which replace the address with one their hosts
 * can reach).  The launcher's listener already is one when it started
 * workers over SSH; otherwise the first call opens a second listener. */
static int remote_listener(const char **addr) {
  distc__cluster *C = &distc__C;
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  if (getsockname(C->listen_fd, (struct sockaddr *)&sa, &len) == 0 &&
      sa.sin_addr.s_addr == htonl(INADDR_ANY)) {
    *addr = C->master_addr;
    return 0;
  }
  if (C->remote_fd >= 0) {
    *addr = C->remote_addr;
    return 0;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sa = (struct sockaddr_in){.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_ANY)};
  len = sizeof sa;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(fd, 1024) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return distc__seterr(DISTC_EIO, "cannot listen on 0.0.0.0 for workers "
                                    "on other hosts: %s",
                         strerror(e));
  }
  distc__set_nonblock(fd, true);
  pthread_mutex_lock(&C->lock);
  C->remote_fd = fd;
  snprintf(C->remote_addr, sizeof C->remote_addr, "127.0.0.1:%d",
           ntohs(sa.sin_port));
  C->remote_pending = true;
  pthread_mutex_unlock(&C->lock);
  uv_async_send(&C->wake); /* libuv handles belong to the I/O thread */
  *addr = C->remote_addr;
  return 0;
}

/* addprocs' options as the start-up path takes them: "hosts" is sugar for
 * the option of that name, manager_options are "NAME[=VALUE]" (the same
 * options as distc-launch's, and the same rule for the manager they
 * imply).  *names holds the copies the names point into. */
static int addprocs_options(const distc_addprocs_opts *o, distc__mopt **out,
                            int *nout, char **names) {
  size_t n = o->hosts ? 1 : 0, bytes = 0;
  for (size_t i = 0; o->manager_options && o->manager_options[i]; i++) {
    n++;
    bytes += strlen(o->manager_options[i]) + 1;
  }
  *out = calloc(n + 1, sizeof **out);
  *names = malloc(bytes + 1);
  if (*out == NULL || *names == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  int k = 0;
  if (o->hosts)
    (*out)[k++] = (distc__mopt){"hosts", o->hosts};
  char *p = *names;
  for (size_t i = 0; o->manager_options && o->manager_options[i]; i++) {
    const char *opt = o->manager_options[i];
    const char *eq = strchr(opt, '=');
    size_t len = eq ? (size_t)(eq - opt) : strlen(opt);
    memcpy(p, opt, len);
    p[len] = '\0';
    (*out)[k++] = (distc__mopt){p, eq ? eq + 1 : NULL};
    p += len + 1;
  }
  *nout = k;
  return 0;
}

typedef struct batch {
  distc_manager *m;
  int first, n;
  int exited_early;
  int early_status; /* of the last one that exited early */
} batch;

static void note_exit(void *arg, int index, pid_t pid, int status) {
  (void)pid;
  batch *b = arg;
  int id = DISTC_INDEX_TO_ID(index);
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->lock);
  /* One that joined and left since is not an early exit. */
  if (id >= C->conncap || !C->conns[id]) {
    b->exited_early++;
    b->early_status = status;
  }
  pthread_mutex_unlock(&C->lock);
}

static bool batch_alive(void *arg) {
  batch *b = arg;
  distc__manager_reap(b->m, note_exit, b);
  return b->exited_early == 0;
}

static int remove_workers(const int *ids, int n);

static void reap_all(void) {
  distc__cluster *C = &distc__C;
  for (int i = 0; i < C->nmanagers; i++)
    distc__manager_reap(&C->managers[i], NULL, NULL);
}

int distc_addprocs(const distc_addprocs_opts *o, int *ids) {
  distc__cluster *C = &distc__C;
  distc__mopt *mopts = NULL;
  char *names = NULL, *topo_kv = NULL;
  const char **env = NULL;
  int nmopts = 0;
  int rc;
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "only the master can add workers");
  if (!o || o->count < 0)
    return distc__seterr(DISTC_EINVAL, "addprocs wants a count of at least 1");
  if ((rc = addprocs_options(o, &mopts, &nmopts, &names)) < 0)
    goto free_opts;
  /* The topology travels to the new workers in their environment, after
   * (so over) the caller's entries. */
  if (o->topology) {
    size_t n = 0;
    while (o->env && o->env[n])
      n++;
    if ((rc = distc__topology_parse(o->topology)) < 0 ||
        !(env = calloc(n + 2, sizeof *env)) ||
        asprintf(&topo_kv, "%s=%s", DISTC_ENV_TOPOLOGY, o->topology) < 0) {
      topo_kv = NULL;
      if (rc >= 0)
        rc = distc__seterr(DISTC_ENOMEM, "out of memory");
      goto free_opts;
    }
    for (size_t i = 0; i < n; i++)
      env[i] = o->env[i];
    env[n] = topo_kv;
  }

  pthread_mutex_lock(&C->addprocs_lock);
  distc_manager *ms = realloc(C->managers, sizeof *ms * (size_t)(C->nmanagers + 1));
  if (!ms) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory");
    goto unlock;
  }
  C->managers = ms;
  double timeout = o->timeout_s > 0 ? o->timeout_s : 60;
  pthread_mutex_lock(&C->lock);
  int before = C->nids;
  pthread_mutex_unlock(&C->lock);
  /* The same path as distc-launch's: a local manager starts `count` here; a
   * remote one gives every slot of its hosts (count 0) or `count` of them. */
  distc__startup st = {
      .manager = o->manager,
      .opts = mopts,
      .nopts = nmopts,
      .procs = o->count,
      .limit = o->count,
      .workers_before = before,
      .timeout_s = timeout,
      .who = "distc_addprocs",
  };
  if ((rc = distc__startup_plan(&st)) < 0)
    goto unlock;
  distc_manager *m = &st.m;
  if (!distc__manager_remote(m) && o->count == 0) {
    rc = distc__seterr(DISTC_EINVAL, "addprocs wants a count of at least 1");
    goto close_manager;
  }
  int count = st.count;
  const char *master_addr = C->master_addr;
  if (distc__manager_remote(m) && (rc = remote_listener(&master_addr)) < 0)
    goto close_manager;

  char exe[4096];
  const char *exename = o->exename;
  if (!exename) {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) {
      rc = distc__seterr(DISTC_ESPAWN, "cannot find the master's executable; "
                                       "give opts.exename");
      goto close_manager;
    }
    exe[n] = '\0';
    exename = exe;
  }
  char *fallback_argv[] = {(char *)exename, NULL};
  pthread_mutex_lock(&C->lock);
  int first = C->next_index;
  C->next_index += count;
  free(C->refused);
  C->refused = NULL;
  C->refused_code = 0;
  pthread_mutex_unlock(&C->lock);
  int started = count;
  distc__startup_run run = {
      .exename = exename,
      .argv = C->argv ? C->argv : fallback_argv,
      .dir = o->dir ? o->dir : st.workdir,
      .env = env ? env : o->env,
      .master_addr = master_addr,
      .local_addr = C->local_fd >= 0 ? C->local_addr : NULL,
      .secret = C->secret,
      .first_index = first,
      .started = &started,
  };
  if ((rc = distc__startup_launch(&st, &run)) < 0)
    goto close_manager;
  char *hosts = distc__startup_hostmap(&st, started);
  distc__startup_free(&st);
  C->managers[C->nmanagers++] = st.m;
  m = &C->managers[C->nmanagers - 1];

  count = started; /* the indices after them are never used */
  batch b = {m, first, count, 0, 0};
  rc = distc__await_workers(first, count, distc__now() + timeout * 1e9,
                     batch_alive, &b, hosts);
  free(hosts);
  if (rc < 0) {
    /* A local worker the dynamic loader could not start: say why. */
    if (b.exited_early && !distc__manager_remote(m) &&
        WIFEXITED(b.early_status) &&
        WEXITSTATUS(b.early_status) == DISTC_EXIT_NOT_STARTED) {
      char why[1024];
      distc__exec_diagnose(exename, why, sizeof why);
      distc__seterr(rc, "a worker exited with status 127 before connecting "
                        "to the master: %s", why);
    }
    char *msg = strdup(distc_errmsg());
    int *joined = calloc((size_t)count + 1, sizeof *joined), k = 0;
    for (int i = 0; joined && i < count; i++) {
      distc__conn *c = distc__conn_get(DISTC_INDEX_TO_ID(first + i));
      if (c)
        joined[k++] = c->id;
      distc__conn_unref(c);
    }
    remove_workers(joined, k);
    free(joined);
    distc__manager_stop(m, SIGKILL, 1.0, NULL, NULL);
    distc__seterr(rc, "%s", msg ? msg : distc_strerror(rc));
    free(msg);
    goto unlock;
  }
  for (int i = 0; ids && i < count; i++)
    ids[i] = DISTC_INDEX_TO_ID(first + i);
  rc = count;
  goto unlock;
close_manager:
  distc__startup_free(&st);
  distc__manager_close(&st.m);
unlock:
  pthread_mutex_unlock(&C->addprocs_lock);
free_opts:
  free(topo_kv);
  free(env);
  free(mopts);
  free(names);
  return rc;
}

int distc_rmprocs(const int *ids, int n) {
  distc__cluster *C = &distc__C;
  if (!C->initialised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "only the master can remove "
                                           "workers");
  if (n < 0 || (n > 0 && !ids))
    return distc__seterr(DISTC_EINVAL, "rmprocs: no ids given");
  int rc = remove_workers(ids, n);
  pthread_mutex_lock(&C->addprocs_lock);
  reap_all();
  pthread_mutex_unlock(&C->addprocs_lock);
  return rc;
}

/* Seconds rmprocs lets a worker finish its call before killing it. */
static double rmprocs_grace(void) {
  const char *s = getenv("DISTC_RMPROCS_GRACE");
  char *end;
  double g = s ? strtod(s, &end) : -1;
  return s && end != s && *end == '\0' && g >= 0 ? g : RMPROCS_GRACE_S;
}

/* Asks the workers to exit and waits for them (killing those that do not);
 * reaping is the caller's business. */
static int remove_workers(const int *ids, int n) {
  distc__cluster *C = &distc__C;
  double grace = rmprocs_grace();
  distc__conn **cs = calloc((size_t)n + 1, sizeof *cs);
  if (!cs)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  int rc = 0;
  /* The grace period starts before anything is sent, and EXIT is queued,
   * never waited on: a stopped worker with a full socket cannot hold us. */
  double deadline = distc__now() + grace * 1e9;
  for (int i = 0; i < n; i++) {
    cs[i] = distc__conn_get(ids[i]);
    if (!cs[i] && ids[i] != DISTC_MASTER && !rc)
      rc = distc__seterr(DISTC_ENOENT, "there is no worker %d to remove",
                         ids[i]);
    if (cs[i])
      distc__conn_send_nowait(cs[i], DISTC__F_EXIT, 0, 0, NULL, 0);
  }
  /* Wait for each to hang up; the I/O thread notices. */
  for (int i = 0; i < n; i++) {
    while (cs[i] && !atomic_load(&cs[i]->lost) && distc__now() < deadline) {
      pthread_mutex_lock(&C->lock);
      if (!atomic_load(&cs[i]->lost))
        distc__cond_wait_ns(&C->changed, &C->lock, 10e6);
      pthread_mutex_unlock(&C->lock);
    }
    if (cs[i] && !atomic_load(&cs[i]->lost)) {
      distc__log(DISTC__LOG_WARN, "worker %d did not exit in %g s; killing "
                                  "it", cs[i]->id, grace);
      /* As for an unresponsive worker: by pid here, else by the manager
       * that started it (finalize may hold addprocs_lock: then the
       * managers' own stop ends it). */
      if (distc__worker_same_host(cs[i])) {
        kill(cs[i]->ospid, SIGKILL);
      } else if (!distc__report_lost(cs[i]->index) &&
                 pthread_mutex_trylock(&C->addprocs_lock) == 0) {
        distc__manager_kill_index(cs[i]->index);
        pthread_mutex_unlock(&C->addprocs_lock);
      }
      /* Out of every list now, not when the I/O thread sees the hang-up:
       * rmprocs returns only once the workers are gone (pools drop a
       * member that is lost; see pool.c). */
      distc__worker_lost(cs[i]);
    }
    distc__conn_unref(cs[i]);
  }
  free(cs);
  return rc;
}

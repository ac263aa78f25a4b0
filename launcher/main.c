/* main.c — distc-launch: start a master and its workers, then supervise.
 *
 * Order: the socket listens first, so workers may dial as soon as they
 * start; then the workers; then the master, which owns the socket from then
 * on.  Our copy is closed so that a worker dialing a dead master is refused
 * at once instead of waiting in the backlog until its timeout. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "launcher.h"

/* At least this many pending connections: every worker dials at once. */
#define LISTEN_BACKLOG (SOMAXCONN > 1024 ? SOMAXCONN : 1024)

/* Descriptors we inherited (a shell's redirections, a parent's pipes) are
 * not the program's: they must not reach the master or the workers, as
 * distc-launch(1) promises.  Marked close-on-exec rather than closed, so
 * a library of ours that was handed one keeps it. */
static void cloexec_inherited(void) {
#ifdef CLOSE_RANGE_CLOEXEC
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
    return;
#endif
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd > 2 && fd != self)
      fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
  }
  closedir(d);
}

static int fill_secret(unsigned char *secret) {
  size_t off = 0;
  while (off < DISTC_SECRET_LEN) {
    ssize_t n = getrandom(secret + off, DISTC_SECRET_LEN - off, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return distc__seterr(DISTC_EIO, "cannot draw the cluster secret: %s",
                           strerror(errno));
    off += (size_t)n;
  }
  return 0;
}

/* A TCP socket listening at a port the kernel picks: on 127.0.0.1, or on
 * every address when workers on other hosts must reach it (each dials the
 * address its own host sees us at; the handshake, not the address, keeps
 * strangers out). */
static int open_listener(bool any, int *fd_out, int *port_out) {
  struct sockaddr_in sa = {
      .sin_family = AF_INET,
      .sin_addr.s_addr = htonl(any ? INADDR_ANY : INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  int rc;

  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return distc__seterr(DISTC_EIO, "cannot create the master's socket: %s",
                         strerror(errno));
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(fd, LISTEN_BACKLOG) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    rc = distc__seterr(DISTC_EIO, "cannot listen on %s for the workers: %s",
                       any ? "0.0.0.0" : "127.0.0.1", strerror(errno));
    goto close_fd;
  }
  *fd_out = fd;
  *port_out = ntohs(sa.sin_port);
  return 0;

close_fd:
  close(fd);
  return rc;
}

/* Prints the error, every line of it prefixed (a failure on several hosts
 * is one line each). */
static int fail(int code) {
  const char *msg = distc_errmsg();
  do {
    size_t n = strcspn(msg, "\n");
    fprintf(stderr, "distc-launch: %.*s\n", (int)n, msg);
    msg += n + (msg[n] == '\n');
  } while (*msg != '\0');
  return code;
}

/* The manager the command line asks for: --manager, else the one whose
 * options were given (--hosts means ssh), else NULL (environment and
 * detection decide). */
static const char *chosen_manager(const distc__launch_opts *o) {
  if (o->manager != NULL || o->nmopts == 0)
    return o->manager;
  const distc_manager_ops *ops = distc_manager_for_option(o->mopts[0].name);
  return ops ? ops->name : NULL;
}

/* Hands the manager its options, each checked against what it honours. */
static int configure_manager(distc_manager *m, const distc__launch_opts *o) {
  int rc = distc_manager_set_common(m, o->timeout_s, o->verbose, o->dry_run);
  for (int i = 0; i < o->nmopts && rc == 0; i++) {
    const distc__manager_opt *mo = &o->mopts[i];
    if (!distc_manager_has_option(m, mo->name)) {
      const distc_manager_ops *owner = distc_manager_for_option(mo->name);
      return distc__seterr(DISTC_EINVAL,
                           "--%s is an option of the %s manager, not of %s; "
                           "drop it, or use --manager %s",
                           mo->name, owner ? owner->name : "?", m->ops->name,
                           owner ? owner->name : "?");
    }
    rc = m->ops->set_option(m->state, mo->name, mo->value);
  }
  return rc;
}

int main(int argc, char **argv) {
  distc__launch_opts o;
  distc_manager m = {0};
  distc__topology *topo = NULL;
  distc_host *hosts = NULL;
  int nhosts = 0;
  int *bind_cpu = NULL;
  unsigned char secret[DISTC_SECRET_LEN] = {0};
  char master_addr[64], local_addr[64] = "";
  int listen_fd = -1, port = 0, control_fd = -1, local_fd = -1;
  bool signals = false;
  pid_t master = -1;
  int code, rc;

  cloexec_inherited();
  rc = distc__options_parse(argc, argv, &o);
  if (rc != 0) {
    code = rc > 0 ? 0 : fail(DISTC__EXIT_USAGE);
    goto free_opts;
  }
  /* Options that belong to one manager choose it; say which, when asked. */
  bool implied = o.manager == NULL && o.nmopts > 0;
  rc = distc_manager_open(&m, chosen_manager(&o), o.verbose && !implied);
  if (rc == 0 && o.verbose && implied) {
    const char *by = o.mopts[0].name;
    for (int i = 0; i < o.nmopts; i++)
      if (strcmp(o.mopts[i].name, "hosts") == 0 ||
          strcmp(o.mopts[i].name, "hostfile") == 0)
        by = o.mopts[i].name;
    fprintf(stderr, "distc-launch: cluster manager %s (implied by --%s)\n",
            m.ops->name, by);
  }
  if (rc != 0) {
    code = fail(rc == DISTC_EINVAL ? DISTC__EXIT_USAGE : DISTC__EXIT_FAILURE);
    goto free_opts;
  }
  rc = configure_manager(&m, &o);
  if (rc != 0) {
    code = fail(rc == DISTC_EINVAL ? DISTC__EXIT_USAGE : DISTC__EXIT_FAILURE);
    goto close_manager;
  }
  /* A remote manager starts workers here only when -p asks for them. */
  bool remote = m.ops->remote;
  bool local_auto = o.nworkers == 0 && (o.procs_given || !remote);

  /* hwloc only when something needs the cores. */
  int cores = 0;
  if (local_auto || o.bind || o.blas_threads == 0) {
    rc = distc__topology_open(&topo);
    if (rc != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto close_manager;
    }
    cores = distc__topology_cores(topo);
  }

  int requested = o.nworkers ? o.nworkers : local_auto ? cores : 0;
  rc = m.ops->nodes(m.state, requested, &hosts, &nhosts);
  if (rc != 0) {
    code = fail(rc == DISTC_EINVAL ? DISTC__EXIT_USAGE : DISTC__EXIT_FAILURE);
    goto close_topo;
  }
  int count = 0;
  for (int i = 0; i < nhosts; i++)
    count += hosts[i].slots > 0 ? hosts[i].slots : 0;
  if (count <= 0) {
    distc__seterr(DISTC_EINVAL,
                  "the %s manager has no slots for workers; "
                  "give -p N",
                  m.ops->name);
    code = fail(DISTC__EXIT_FAILURE);
    goto free_hosts;
  }
  int blas = o.blas_threads;
  if (blas == 0)
    blas = cores / count > 1 ? cores / count : 1;

  if (o.bind) {
    bind_cpu = malloc((size_t)count * sizeof *bind_cpu);
    if (bind_cpu == NULL) {
      distc__seterr(DISTC_ENOMEM, "out of memory");
      code = fail(DISTC__EXIT_FAILURE);
      goto free_hosts;
    }
    for (int k = 0; k < count; k++)
      bind_cpu[k] = distc__topology_core_cpu(topo, k);
  }
  if (o.verbose && remote)
    fprintf(stderr,
            "distc-launch: %d workers, %d of them on this host; BLAS/OpenMP "
            "threads: %s\n",
            count, requested,
            o.blas_threads ? "as given" : "cores / workers of each host");
  else if (o.verbose && cores > 0)
    fprintf(stderr,
            "distc-launch: %d workers, %d BLAS/OpenMP threads each "
            "(%d cores here)\n",
            count, blas, cores);
  else if (o.verbose)
    fprintf(stderr, "distc-launch: %d workers, %d BLAS/OpenMP threads each\n",
            count, blas);

  if (!o.dry_run) {
    if ((rc = fill_secret(secret)) != 0 || (rc = distc__signals_init()) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto free_bind;
    }
    signals = true;
    if ((rc = open_listener(remote, &listen_fd, &port)) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto restore_signals;
    }
    snprintf(master_addr, sizeof master_addr, "127.0.0.1:%d", port);
    if ((rc = distc_local_listener(local_addr, sizeof local_addr,
                                   &local_fd)) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto close_listener;
    }
  } else {
    snprintf(master_addr, sizeof master_addr, "127.0.0.1:<port>");
  }

  int started = count;
  distc_launch_spec spec = {
      .count = count,
      .first_index = 0,
      .exename = o.exe_path,
      .argv = o.argv,
      .dir = o.dir,
      .env = o.env,
      .master_addr = master_addr,
      .secret = secret,
      .blas_threads = blas,
      .bind_cpu = bind_cpu,
      .verbose = o.verbose,
      .dry_run = o.dry_run,
      .started = &started,
      .blas_auto = o.blas_threads == 0,
      .local_addr = local_addr[0] ? local_addr : NULL,
  };
  rc = m.ops->launch(m.state, &spec);
  if (rc != 0) {
    code = fail(DISTC__EXIT_FAILURE);
    goto close_listener;
  }

  distc__master_spec ms = {
      .path = o.program,
      .argv = o.argv,
      .dir = o.dir,
      .env = o.env,
      .listen_fd = listen_fd,
      .local_fd = local_fd,
      .secret = secret,
      .nworkers = started,
      .timeout_s = o.timeout_s,
      .verbose = o.verbose,
      .dry_run = o.dry_run,
  };
  rc = distc__master_spawn(&ms, &master, &control_fd);
  if (rc != 0) {
    code = fail(DISTC__EXIT_FAILURE);
    distc_manager_stop(&m, SIGKILL, 0, NULL, NULL);
    goto close_listener;
  }
  if (o.dry_run) {
    code = 0;
    goto close_listener;
  }
  close(listen_fd);
  listen_fd = -1;
  if (local_fd >= 0)
    close(local_fd);
  local_fd = -1;

  distc__supervision sv = {
      .m = &m,
      .master = master,
      .control_fd = control_fd,
      .nworkers = started,
      .remote = remote,
      .timeout_s = o.timeout_s,
      .program = o.argv[0],
      .verbose = o.verbose,
  };
  code = distc__supervise(&sv);

close_listener:
  if (listen_fd >= 0)
    close(listen_fd);
  if (local_fd >= 0)
    close(local_fd);
restore_signals:
  if (signals)
    distc__signals_restore();
free_bind:
  free(bind_cpu);
free_hosts:
  distc_host_free(hosts, nhosts);
close_topo:
  distc__topology_close(topo);
close_manager:
  distc_manager_close(&m);
free_opts:
  distc__options_free(&o);
  explicit_bzero(secret, sizeof secret);
  return code;
}

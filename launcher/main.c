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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "launcher.h"
#include "trace.h"

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

/* The launcher's events, for the master to merge at distc_finalize; written
 * before the master starts, so it is there when the master looks. */
static void write_trace_part(void) {
  char part[4096];
  size_t len = 0;
  distc__trace_part_path(getenv("DISTC_TRACE"), part, sizeof part);
  char *text = distc__trace_take(&len);
  FILE *f = text ? fopen(part, "w") : NULL;
  bool ok = f && fwrite(text, 1, len, f) == len;
  if (f && fclose(f) != 0)
    ok = false;
  if (!ok)
    fprintf(stderr, "distc-launch: cannot write %s: %s; the trace will "
                    "lack the launcher's events\n", part, strerror(errno));
  free(text);
}

int main(int argc, char **argv) {
  distc__launch_opts o;
  distc__startup st = {0};
  bool planned = false;
  distc__topology *topo = NULL;
  int *bind_cpu = NULL;
  unsigned char secret[DISTC_SECRET_LEN] = {0};
  char master_addr[64], local_addr[64] = "";
  int listen_fd = -1, port = 0, control_fd = -1, local_fd = -1;
  bool signals = false;
  distc__door door = {.fd = -1};
  distc__submit sub = {0};
  char key_path[4096];
  pid_t master = -1;
  int code, rc;

  distc__log_setname("distc-launch");
  cloexec_inherited();
  /* Hidden, for the shell completion (contrib/distc-launch.bash): what
   * the launcher takes, from the tables it parses with. */
  if (argc == 2 && strcmp(argv[1], "--list-options") == 0) {
    distc__options_list(stdout);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--list-managers") == 0) {
    distc__manager_list_names(stdout);
    return 0;
  }
  rc = distc__options_parse(argc, argv, &o);
  if (rc != 0) {
    code = rc > 0 ? 0 : fail(DISTC__EXIT_USAGE);
    goto free_opts;
  }
  if (o.join != NULL) {
    /* The joining workers run here: their executable is checked here. */
    if ((rc = distc__options_exe(&o, true)) != 0)
      code = fail(rc == DISTC_EINVAL ? DISTC__EXIT_USAGE : DISTC__EXIT_FAILURE);
    else
      code = distc__join_run(&o);
    goto free_opts;
  }
  distc__trace_init(); /* --trace set DISTC_TRACE */
  if (distc__tracing()) {
    char track[64];
    snprintf(track, sizeof track, "distc-launch (pid %ld)", (long)getpid());
    distc__trace_set_track(0, track);
  }
  st = (distc__startup){
      .manager = o.manager,
      .launcher = o.launcher,
      .opts = o.mopts,
      .nopts = o.nmopts,
      .procs = o.nworkers,
      .procs_given = o.procs_given,
      .blas_threads = o.blas_threads,
      .outside_only = (o.listen != NULL || o.submit != NULL) &&
                      !o.procs_given && o.nmopts == 0,
      .timeout_s = o.timeout_s,
      .verbose = o.verbose,
      .dry_run = o.dry_run,
      .who = "distc-launch",
  };
  rc = distc__startup_plan(&st);
  if (rc != 0) {
    code = fail(rc == DISTC_EINVAL ? DISTC__EXIT_USAGE : DISTC__EXIT_FAILURE);
    goto free_opts;
  }
  planned = true;
  if ((rc = distc__options_exe(&o, st.here > 0)) != 0) {
    code = fail(rc == DISTC_EINVAL ? DISTC__EXIT_USAGE : DISTC__EXIT_FAILURE);
    goto close_manager;
  }
  bool remote = distc__manager_remote(&st.m);
  /* --dir, else where the resource half says a job works (PBS_O_WORKDIR),
   * for the master and the workers alike. */
  const char *dir = o.dir ? o.dir : st.workdir;

  /* hwloc only for --bind: the one thing that needs the machine's map. */
  if (o.bind) {
    if ((rc = distc__topology_open(&topo)) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto close_manager;
    }
    bind_cpu = malloc((size_t)st.count * sizeof *bind_cpu);
    if (bind_cpu == NULL) {
      distc__seterr(DISTC_ENOMEM, "out of memory");
      code = fail(DISTC__EXIT_FAILURE);
      goto close_manager;
    }
    for (int k = 0; k < st.count; k++)
      bind_cpu[k] = distc__topology_core_cpu(topo, k);
  }

  if (!o.dry_run) {
    if ((rc = fill_secret(secret)) != 0 || (rc = distc__signals_init()) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto close_manager;
    }
    signals = true;
    if ((rc = open_listener(remote, &listen_fd, &port)) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto restore_signals;
    }
    snprintf(master_addr, sizeof master_addr, "127.0.0.1:%d", port);
    if ((rc = distc__local_listener(local_addr, sizeof local_addr,
                                    &local_fd)) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto close_listener;
    }
  } else {
    snprintf(master_addr, sizeof master_addr, "127.0.0.1:<port>");
  }
  /* --submit: the key goes where the nodes can read it (--key-dir). */
  if (o.submit != NULL && o.join_key == NULL) {
    if ((rc = distc__submit_key_path(&o, key_path, sizeof key_path)) != 0) {
      code = fail(DISTC__EXIT_FAILURE);
      goto close_listener;
    }
    o.join_key = key_path;
  }
  bool door_wanted = o.listen != NULL || o.submit != NULL;
  if (door_wanted && (rc = distc__door_open(&o, secret, &door)) != 0) {
    code = fail(rc == DISTC_EINVAL ? DISTC__EXIT_USAGE : DISTC__EXIT_FAILURE);
    goto close_listener;
  }
  if (o.submit != NULL && !o.dry_run)
    distc__submit_address(&o, &door);
  if (door_wanted && !o.dry_run)
    distc__door_announce(&door);

  int started = st.count;
  distc__startup_run run = {
      .exename = o.exe_path,
      .argv = o.argv,
      .dir = dir,
      .env = o.env,
      .master_addr = master_addr,
      .local_addr = local_addr[0] ? local_addr : NULL,
      .secret = secret,
      .bind_cpu = bind_cpu,
      .first_index = 0,
      .started = &started,
  };
  uint64_t t_launch = distc__tracing() ? distc__trace_now() : 0;
  rc = distc__startup_launch(&st, &run);
  if (t_launch)
    distc__trace_span("launch", "start workers", t_launch,
                      "\"workers\":%d,\"manager\":\"%s\"", st.count,
                      distc__manager_name(&st.m));
  if (t_launch && !o.dry_run)
    write_trace_part();
  if (rc != 0) {
    code = fail(DISTC__EXIT_FAILURE);
    goto close_listener;
  }

  /* The progress line names a host still connecting; not for a dry run. */
  char *worker_hosts = o.dry_run ? NULL : distc__startup_hostmap(&st, started);
  distc__master_spec ms = {
      .path = o.program,
      .argv = o.argv,
      .dir = dir,
      .env = o.env,
      .listen_fd = listen_fd,
      .local_fd = local_fd,
      .secret = secret,
      .nworkers = started,
      .timeout_s = o.timeout_s,
      .verbose = o.verbose,
      .dry_run = o.dry_run,
      .join_fd = door.fd,
      .join_addr = door_wanted ? door.addr : NULL,
      .join_key = door_wanted ? door.key : NULL,
      .min_workers = o.min_workers,
      .worker_hosts = worker_hosts,
  };
  if (o.submit != NULL) {
    /* Every worker of every job, unless said otherwise; queue time is the
     * supervisor's to bound (distc__submit_tick), not the master's. */
    if (ms.min_workers < 0)
      ms.min_workers = started + o.jobs * o.workers_per_job;
    ms.timeout_s = 1e7;
  }
  rc = distc__spawn_master(&ms, &master, &control_fd);
  free(worker_hosts);
  if (rc != 0) {
    code = fail(DISTC__EXIT_FAILURE);
    distc__manager_stop(&st.m, SIGKILL, 0, NULL, NULL);
    goto close_listener;
  }
  if (o.submit != NULL && (rc = distc__submit_start(&o, &door, &sub)) != 0) {
    code = fail(DISTC__EXIT_FAILURE);
    kill(master, SIGTERM);
    while (waitpid(master, NULL, 0) < 0 && errno == EINTR)
      ;
    distc__manager_stop(&st.m, SIGTERM, 1.0, NULL, NULL);
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
  if (door.fd >= 0)
    close(door.fd); /* the master's now; the key file stays till the end */
  door.fd = -1;

  distc__supervision sv = {
      .m = &st.m,
      .master = master,
      .control_fd = control_fd,
      .nworkers = started,
      .remote = remote,
      .timeout_s = o.timeout_s,
      .program = o.argv[0],
      .exe_path = o.exe_path,
      .verbose = o.verbose,
      .tick = o.submit != NULL ? distc__submit_tick : NULL,
      .tick_arg = &sub,
  };
  code = distc__supervise(&sv);

close_listener:
  distc__submit_end(&sub, o.verbose);
  distc__door_close(&door);
  if (listen_fd >= 0)
    close(listen_fd);
  if (local_fd >= 0)
    close(local_fd);
restore_signals:
  if (signals)
    distc__signals_restore();
close_manager:
  free(bind_cpu);
  distc__topology_close(topo);
  if (planned) {
    distc__startup_free(&st);
    distc__manager_close(&st.m);
  }
free_opts:
  distc__options_free(&o);
  explicit_bzero(secret, sizeof secret);
  return code;
}

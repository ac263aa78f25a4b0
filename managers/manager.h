/* manager.h — the cluster manager interface (internal, shared by
 * distc-launch and libdistc's distc_addprocs).
 *
 * A manager has two halves, as in MPICH Hydra: a resource half (detect: am I
 * inside your allocation?  nodes: which hosts and slots?) and a launch half
 * (launch, signal, reap).  Each manager is one const ops table below; slots
 * marked optional may be NULL and the dispatcher (manager.c) supplies the
 * default.  Per-run state is allocated by the dispatcher from state_size.
 */
#ifndef DISTC_MANAGER_H
#define DISTC_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* Environment contract between launcher, master and workers.  The secret is
 * never in the environment or on a command line: it is read from the pipe
 * whose fd number DISTC_SECRET_FD names. */
#define DISTC_ENV_ROLE "DISTC_ROLE"           /* "master" | "worker" */
#define DISTC_ENV_MASTER "DISTC_MASTER"       /* worker: host:port to dial */
/* worker: "@name" of the master's same-host socket, tried before
 * DISTC_MASTER (unreachable from another host or network namespace) */
#define DISTC_ENV_MASTER_LOCAL "DISTC_MASTER_LOCAL"
/* master: the listening same-host socket (local_socket.c) */
#define DISTC_ENV_LISTEN_LOCAL_FD "DISTC_LISTEN_LOCAL_FD"
#define DISTC_ENV_SECRET_FD "DISTC_SECRET_FD" /* fd holding the secret */
#define DISTC_ENV_INDEX "DISTC_WORKER_INDEX"  /* worker: launch index >= 0 */
#define DISTC_ENV_PARENT "DISTC_PARENT_PID"   /* for PR_SET_PDEATHSIG */
#define DISTC_ENV_LISTEN_FD "DISTC_LISTEN_FD" /* master: listening socket */
#define DISTC_ENV_NWORKERS "DISTC_NWORKERS"   /* master: workers to await */
#define DISTC_ENV_CONTROL_FD "DISTC_CONTROL_FD" /* master: reports to launcher */
#define DISTC_ENV_TIMEOUT "DISTC_TIMEOUT"     /* seconds to wait for workers */
#define DISTC_SECRET_LEN 32
/* DISTC_ROLE of the per-host process the SSH manager starts on a remote
 * host (managers/proxy.c), which starts that host's workers. */
#define DISTC_ROLE_PROXY "proxy"

/* Worker with launch index i gets distc id i + 2 (the master is 1). */
#define DISTC_INDEX_TO_ID(i) ((i) + 2)

/* distc_host.slots of a host whose core count decides (`host:auto`), until
 * a manager's nodes() has asked the host. */
#define DISTC_SLOTS_AUTO (-1)

typedef struct distc_host {
  char *name;     /* "localhost" for the local manager */
  int slots;      /* workers to start there */
  char *user;     /* optional */
  int port;       /* 0: default */
  char *dir;      /* optional per-host working directory */
  char *exename;  /* optional per-host executable */
} distc_host;

typedef struct distc_launch_spec {
  int count;                 /* workers to start */
  int first_index;           /* DISTC_WORKER_INDEX of the first one */
  const char *exename;       /* program to run (path) */
  char *const *argv;         /* its argv (argv[0] included), NULL-terminated */
  const char *dir;           /* working directory; NULL: inherit */
  const char *const *env;    /* extra "K=V" entries, NULL-terminated or NULL */
  const char *master_addr;   /* "host:port" the workers dial */
  const unsigned char *secret; /* DISTC_SECRET_LEN bytes */
  int blas_threads;          /* >0: OPENBLAS/OMP_NUM_THREADS unless in env */
  /* optional: CPU (OS index) to bind worker first_index + k to, or -1; the
   * spawner pins itself to it around posix_spawn so the child inherits it.
   * Computed by the launcher with hwloc; NULL: no binding. */
  const int *bind_cpu;
  bool verbose;              /* print every exact command to stderr */
  bool dry_run;              /* print, start nothing */
  /* optional: where a manager allowed to start fewer workers than count
   * (the SSH manager's --allow-partial) writes how many it started: always
   * the first *started indices from first_index.  NULL: all or nothing. */
  int *started;
  /* blas_threads was computed from this host's cores, not asked for: a
   * manager starting workers on other hosts computes it for each host. */
  bool blas_auto;
  /* optional: "@name" of the master's same-host socket; workers started on
   * this host get it as DISTC_MASTER_LOCAL and try it first. */
  const char *local_addr;
} distc_launch_spec;

/* Called by reap for every started worker that has exited. */
typedef void (*distc_exit_cb)(void *arg, int index, pid_t pid, int status);

typedef struct distc_manager_ops {
  const char *name;
  /* Options (long names, without "--") this manager honours beyond the
   * common ones, NULL-terminated; anything else given with it is an error.
   * Giving one of them without --manager chooses this manager. */
  const char *const *options;
  int priority;         /* detection order: highest first */
  size_t state_size;    /* bytes of per-run state, zeroed by the dispatcher */
  /* Starts workers on other hosts: the master must listen on an address
   * they can reach, and without -p no worker runs on this host. */
  bool remote;

  /* optional: takes one option from `options` (value NULL for a flag), and
   * the common settings every manager gets from distc_manager_set_common:
   * "timeout" (seconds, bounds connecting and starting), "verbose",
   * "dry-run".  Called before nodes.  A bad value is DISTC_EINVAL with a
   * message that quotes it.  Default: common settings ignored, any other
   * option refused. */
  int (*set_option)(void *state, const char *name, const char *value);
  /* optional: a descriptor that polls readable when reap may have news that
   * no SIGCHLD announces (workers on other hosts); -1 when there is none.
   * Owned by the state; reap drains it. */
  int (*event_fd)(void *state);

  /* optional: true when running inside this manager's allocation. */
  bool (*detect)(void);
  /* optional: the hosts and slots to use; default: localhost with the
   * requested count. */
  int (*nodes)(void *state, int requested, distc_host **hosts, int *nhosts);
  /* mandatory: starts spec->count workers.  On failure nothing it started
   * is left running. */
  int (*launch)(void *state, const distc_launch_spec *spec);
  /* mandatory: sends sig to every worker still running. */
  int (*signal)(void *state, int sig);
  /* mandatory: reaps exited workers without blocking, calling cb for each;
   * returns how many are still running. */
  int (*reap)(void *state, distc_exit_cb cb, void *arg);
  /* optional: releases what the state holds (after everything is reaped). */
  void (*destroy)(void *state);
} distc_manager_ops;

typedef struct distc_manager {
  const distc_manager_ops *ops;
  void *state;
} distc_manager;

/* Selection: name (flag) -> $DISTC_MANAGER -> detection by priority ->
 * "local".  Returns 0 or DISTC_EINVAL for an unknown name (the message lists
 * the known ones).  verbose: say on stderr which was chosen and why. */
int distc_manager_open(distc_manager *m, const char *name, bool verbose);
void distc_manager_close(distc_manager *m);
const distc_manager_ops *distc_manager_find(const char *name);
/* Every registered manager's name, one a line (distc-launch
 * --list-managers, for the shell completion). */
void distc_manager_list_names(FILE *f);
/* Waits up to timeout_s for all workers to exit after sig; then SIGKILL.
 * Reaps everything; cb may be NULL. */
int distc_manager_stop(distc_manager *m, int sig, double timeout_s,
                       distc_exit_cb cb, void *arg);
/* The registered manager that lists option `name` (without "--"), or NULL. */
const distc_manager_ops *distc_manager_for_option(const char *name);
/* Whether the open manager honours option `name`. */
bool distc_manager_has_option(const distc_manager *m, const char *name);
/* Passes the common settings (see set_option) to an open manager. */
int distc_manager_set_common(distc_manager *m, double timeout_s, bool verbose,
                             bool dry_run);

/* Shared spawning helper (managers/spawn.c): builds the worker environment
 * (the caller's environ with spec->env, the DISTC_* entries and the BLAS
 * thread counts) for worker `index` and posix_spawns it with the secret on a
 * pipe as DISTC_SECRET_FD.  *pid receives the child.  An exec failure is
 * reported, not silent. */
/* local_socket.c: an abstract AF_UNIX listener with a fresh name, written
 * to addr as "@name"; and a connection to such a name (-1 on failure). */
int distc_local_listener(char *addr, size_t cap, int *fd);
int distc_local_dial(const char *addr);

/* spawn.c: writes s to f so that a POSIX shell reads it back as one word
 * (for the exact commands -v prints); the length of the K in "K=V". */
void distc_shell_quote(FILE *f, const char *s);
size_t distc_env_key_len(const char *kv);

int distc_spawn_worker(const distc_launch_spec *spec, int index,
                       const char *const *extra_env, pid_t *pid);

void distc_host_free(distc_host *h, int n);

/* Physical cores this process may use on this host (managers/cores.c),
 * counted as the SSH manager counts a remote host's for `host:auto`. */
int distc__host_cores(void);

/* The remote half of the SSH manager (managers/proxy.c): what distc_init
 * runs when DISTC_ROLE is DISTC_ROLE_PROXY.  Never returns. */
int distc__proxy_main(int argc, char **argv) __attribute__((noreturn));

extern const distc_manager_ops distc_manager_local;
extern const distc_manager_ops distc_manager_ssh;

#endif

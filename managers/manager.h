/* manager.h — the cluster manager interface (internal, shared by
 * distc-launch and libdistc's distc_addprocs).
 *
 * A manager is a pairing of two halves, as in MPICH Hydra:
 *   - a resource half (distc__resource_ops): am I inside your allocation
 *     (detect), which hosts and how many workers on each (nodes);
 *   - a launch half (distc__launch_ops): how processes get started on those
 *     hosts (launch), signalled (signal) and reaped (reap).
 * `local` = this host + spawn; `ssh` = a host list + SSH.  A batch system
 * adds its resource half and pairs it with an existing launch half, or a
 * launch half of its own.  Each half is a const ops table whose options are
 * typed descriptors (distc__option) that the launcher's parser, its usage
 * text and distc_addprocs all read from the registry (manager.c), so
 * nothing outside managers/ names a manager or one of its options.
 *
 * Slots marked optional may be NULL; distc__manager_open fills in the
 * defaults on its own copies of the tables.  Per-run state is allocated by
 * the dispatcher from state_size, zeroed.
 *
 * Adding a manager: its files here, one line in the registry (manager.c),
 * its section in man/distc-launch.1; tests/managers/ runs the conformance
 * suite against it. */
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
/* worker: how many workers its launch started on its host (MPI's local
 * size): whether an idle worker may keep a core spinning (worker.c) */
#define DISTC_ENV_LOCAL_WORKERS "DISTC_LOCAL_WORKERS"
#define DISTC_ENV_PARENT "DISTC_PARENT_PID"   /* for PR_SET_PDEATHSIG */
#define DISTC_ENV_LISTEN_FD "DISTC_LISTEN_FD" /* master: listening socket */
#define DISTC_ENV_NWORKERS "DISTC_NWORKERS"   /* master: workers to await */
#define DISTC_ENV_CONTROL_FD "DISTC_CONTROL_FD" /* master: reports to launcher */
#define DISTC_ENV_TIMEOUT "DISTC_TIMEOUT"     /* seconds to wait for workers */
#define DISTC_SECRET_LEN 32
/* master: the start-up plan's hosts in launch-index order, "host:count,..."
 * (names the host still connecting in the progress line); unset when the
 * plan and the indices may differ */
#define DISTC_ENV_WORKER_HOSTS "DISTC_WORKER_HOSTS"
/* Elastic join (join_door.c).  A worker started by anyone dials the join
 * address with the path of the key file; neither is a secret. */
#define DISTC_ENV_JOIN "DISTC_JOIN"           /* worker: host:port to join */
#define DISTC_ENV_JOIN_KEY "DISTC_JOIN_KEY"   /* worker: the key file's path */
/* master: the door distc-launch --listen opened (fd), its published address
 * and key file, and how many workers distc_init waits for */
#define DISTC_ENV_JOIN_FD "DISTC_JOIN_FD"
#define DISTC_ENV_JOIN_ADDR "DISTC_JOIN_ADDR"
#define DISTC_ENV_JOIN_KEY_FILE "DISTC_JOIN_KEY_FILE"
#define DISTC_ENV_MIN_WORKERS "DISTC_MIN_WORKERS"
/* DISTC_ROLE of the per-host process a launch half starts on another host
 * (managers/proxy.c), which starts that host's workers. */
#define DISTC_ROLE_PROXY "proxy"

/* Worker with launch index i gets distc id i + 2 (the master is 1). */
#define DISTC_INDEX_TO_ID(i) ((i) + 2)

/* distc_host.slots of a host whose core count decides (`host:auto`), until
 * a launch half's prepare has asked the host. */
#define DISTC_SLOTS_AUTO (-1)

typedef struct distc_host {
  char *name;     /* host name as the resource half knows it */
  int slots;      /* workers to start there */
  char *user;     /* optional */
  int port;       /* 0: default */
  char *dir;      /* optional per-host working directory */
  char *exename;  /* optional per-host executable */
  bool here;      /* this host: workers are children of this process */
  /* CPUs the allocation gives its workers there, for their BLAS threads;
   * 0: the host's physical cores */
  int cpus;
} distc_host;

/* An option of one half: --NAME, or --NAME ARG when has_arg. */
typedef struct distc__option {
  const char *name; /* long name without "--" */
  bool has_arg;
  const char *arg;  /* what the value is, for --help ("LIST"); NULL: flag */
  const char *help; /* for --help; "\n" separates lines */
} distc__option;

/* The settings every half hears through set_option, whatever it lists:
 * "timeout" (seconds, bounds connecting and starting), "verbose",
 * "dry-run".  A half ignores those it has no use for. */
bool distc__common_setting(const char *name);

typedef struct distc_launch_spec {
  int count;                 /* workers to start */
  int first_index;           /* DISTC_WORKER_INDEX of the first one */
  const char *exename;       /* program to run (path) */
  char *const *argv;         /* its argv (argv[0] included), NULL-terminated */
  const char *dir;           /* working directory; NULL: inherit */
  const char *const *env;    /* extra "K=V" entries, NULL-terminated or NULL */
  const char *master_addr;   /* "host:port" the workers dial */
  const unsigned char *secret; /* DISTC_SECRET_LEN bytes */
  /* >0: OPENBLAS/OMP_NUM_THREADS of the workers on this host unless in the
   * environment (distc__blas_threads of this host's cores and workers) */
  int blas_threads;
  /* blas_threads was not given: a launch half starting workers on another
   * host has that host compute its own (distc__blas_threads there). */
  bool blas_auto;
  /* optional: CPU (OS index) to bind worker first_index + k to, or -1; the
   * spawner pins itself to it around posix_spawn so the child inherits it.
   * NULL: no binding. */
  const int *bind_cpu;
  bool verbose;              /* print every exact command */
  bool dry_run;              /* print, start nothing */
  /* optional: where a launch half allowed to start fewer workers than count
   * (ssh's --allow-partial) writes how many it started: always the first
   * *started indices from first_index.  NULL: all or nothing. */
  int *started;
  /* optional: "@name" of the master's same-host socket; workers started on
   * this host get it as DISTC_MASTER_LOCAL and try it first. */
  const char *local_addr;
  /* The hosts from nodes (after prepare), in launch-index order: workers
   * first_index.. go to hosts[0] up to its slots, then hosts[1], ... */
  const distc_host *hosts;
  int nhosts;
} distc_launch_spec;

/* Called by reap for every started worker that has exited; status is the
 * waitpid status, or -1 when it is unknown (its host stopped answering). */
typedef void (*distc_exit_cb)(void *arg, int index, pid_t pid, int status);

typedef struct distc__resource_ops {
  const char *name;  /* "here", "hostlist", ... */
  const char *title; /* heading of its options in --help */
  const distc__option *options; /* ended by {NULL}; NULL: none */
  size_t state_size;
  /* Its hosts are other hosts: the master must listen on an address they
   * can reach, and without -p no worker runs on this host. */
  bool remote;
  /* optional: takes one of `options` (value NULL for a flag) or a common
   * setting; DISTC_EINVAL with a message quoting a bad value. */
  int (*set_option)(void *state, const char *name, const char *value);
  /* optional: true when running inside this resource's allocation. */
  bool (*detect)(void);
  /* optional: the hosts and their slots, as a malloc'd array the caller
   * frees with distc__host_free.  here: workers asked for on this host (-p);
   * a remote half lists them first as a host with .here set.  Default:
   * this host with `here` slots. */
  int (*nodes)(void *state, int here, distc_host **hosts, int *nhosts);
  /* optional: where processes work when --dir does not say (a batch
   * job's submission directory); NULL: the caller's.  Owned by the state
   * or the environment. */
  const char *(*workdir)(void *state);
  /* optional: releases the state. */
  void (*destroy)(void *state);
} distc__resource_ops;

typedef struct distc__launch_ops {
  const char *name;  /* "spawn", "ssh": what --launcher names */
  const char *title; /* heading of its options in --help */
  const distc__option *options;
  size_t state_size;
  /* The run's exit status is the highest of the master's and of a worker
   * that exited by itself, as srun's is (a batch system's users expect
   * it); otherwise the master's alone, as Julia's. */
  bool worker_status;
  /* optional: as the resource half's. */
  int (*set_option)(void *state, const char *name, const char *value);
  /* optional: reaches the hosts before the count is decided: settles
   * DISTC_SLOTS_AUTO slots, and may drop hosts it cannot reach (setting
   * their slots to 0) when allowed to; fails naming the host otherwise.
   * Default: nothing to reach. */
  int (*prepare)(void *state, distc_host *hosts, int nhosts);
  /* mandatory: starts spec->count workers on spec->hosts.  On failure
   * nothing it started is left running. */
  int (*launch)(void *state, const distc_launch_spec *spec);
  /* mandatory: sends sig to every worker still running. */
  int (*signal)(void *state, int sig);
  /* mandatory: reaps exited workers without blocking, calling cb (may be
   * NULL) for each; returns how many are still running. */
  int (*reap)(void *state, distc_exit_cb cb, void *arg);
  /* optional: a descriptor that polls readable when reap may have news that
   * no SIGCHLD announces (workers on other hosts); -1 when none.  Owned by
   * the state; reap drains it. */
  int (*event_fd)(void *state);
  /* optional: the host worker `index` runs on, as the user named it (for
   * "From worker 5: ... on node2"); NULL when it runs on this host or the
   * index is not this half's.  Owned by the state, valid until destroy.
   * Default: NULL. */
  const char *(*host_of)(void *state, int index);
  /* optional: sends sig to the one worker `index` if it still runs (a
   * worker lost for silence, which cannot be trusted to exit by itself);
   * 0, or DISTC_ENOENT when the index is not this half's or has ended.
   * Default: DISTC_ENOTSUP. */
  int (*kill_one)(void *state, int index, int sig);
  /* optional: releases the state (after everything is reaped). */
  void (*destroy)(void *state);
} distc__launch_ops;

/* One registered manager: a name and its two halves. */
typedef struct distc__manager_def {
  const char *name;
  int priority; /* detection order: highest first */
  const distc__resource_ops *resource;
  const distc__launch_ops *launch;
} distc__manager_def;

/* An open manager: copies of its halves with the defaults filled in, so
 * every slot is callable, and their states. */
typedef struct distc_manager {
  const distc__manager_def *def; /* NULL: not open */
  distc__resource_ops res;
  distc__launch_ops lau;
  void *rstate, *lstate;
} distc_manager;

/* ---- registry (manager.c) ----------------------------------------------- */

/* The i-th registered manager, NULL past the end (for --help, the parser). */
const distc__manager_def *distc__manager_at(size_t i);
const distc__manager_def *distc__manager_find(const char *name);
/* The option descriptor `name` of any registered half, or NULL. */
const distc__option *distc__manager_option(const char *name);

/* Chooses a manager: `name` (--manager) → the manager whose resource half
 * owns one of `opts` (--hosts means ssh) → $DISTC_MANAGER → detection by
 * priority → local; a launch-half option the candidate does not take then
 * chooses the first manager whose launch half does.  *why says why (for
 * -v).  NULL with DISTC_EINVAL and a message listing the known ones for an
 * unknown name. */
const distc__manager_def *distc__manager_choose(const char *name,
                                                const char *const *opts,
                                                int nopts, const char **why);

/* Opens def with its own launch half, or the launch half named `launcher`
 * (--launcher; NULL: the manager's).  0 or a DISTC_* error. */
int distc__manager_open(distc_manager *m, const distc__manager_def *def,
                        const char *launcher);
void distc__manager_close(distc_manager *m);
/* Hands one option to the half that owns it; an option of another manager
 * is refused naming both; value NULL for a flag. */
int distc__manager_set_option(distc_manager *m, const char *name,
                              const char *value);
/* Passes the common settings to both halves. */
int distc__manager_set_common(distc_manager *m, double timeout_s,
                              bool verbose, bool dry_run);
/* Resource half, then the launch half's prepare.  *hosts is malloc'd. */
int distc__manager_nodes(distc_manager *m, int here, distc_host **hosts,
                         int *nhosts);
int distc__manager_launch(distc_manager *m, const distc_launch_spec *spec);
int distc__manager_signal(distc_manager *m, int sig);
int distc__manager_reap(distc_manager *m, distc_exit_cb cb, void *arg);
int distc__manager_event_fd(distc_manager *m);
const char *distc__manager_host_of(distc_manager *m, int index);
int distc__manager_kill_one(distc_manager *m, int index, int sig);
bool distc__manager_remote(const distc_manager *m);
const char *distc__manager_name(const distc_manager *m);
/* Every registered manager's name, one a line (distc-launch
 * --list-managers, for the shell completion). */
void distc__manager_list_names(FILE *f);
/* Waits up to timeout_s for all workers to exit after sig; then SIGKILL.
 * Reaps everything; cb may be NULL. */
int distc__manager_stop(distc_manager *m, int sig, double timeout_s,
                        distc_exit_cb cb, void *arg);

void distc__host_free(distc_host *h, int n);

/* ---- the start-up path (startup.c) ---------------------------------------- */

/* A manager option as given: --NAME[=VALUE] or addprocs' "NAME[=VALUE]". */
typedef struct distc__mopt {
  const char *name;
  const char *value; /* NULL for a flag */
} distc__mopt;

/* What distc-launch and distc_addprocs ask for; both start a cluster through
 * distc__startup_plan and distc__startup_launch, in that order. */
typedef struct distc__startup {
  const char *manager;  /* --manager, or NULL */
  const char *launcher; /* --launcher, or NULL */
  const distc__mopt *opts;
  int nopts;
  /* Workers on this host: procs (0: one per physical core) when procs_given
   * or when the manager is not remote; none otherwise. */
  int procs;
  bool procs_given;
  /* At most this many workers in all (addprocs' count); 0: every slot. */
  int limit;
  /* Workers already running on this host, for the BLAS thread count. */
  int workers_before;
  int blas_threads; /* 0: distc__blas_threads of each host */
  /* Workers only join from outside (--listen without -p or hosts): none
   * is started, and a count of 0 is no error. */
  bool outside_only;
  double timeout_s;
  bool verbose, dry_run;
  const char *who; /* "distc-launch" or "distc_addprocs", for messages */

  /* Set by distc__startup_plan: */
  distc_manager m;       /* open; the caller closes it */
  distc_host *hosts;     /* freed by distc__startup_free */
  int nhosts;
  int count;             /* workers to start */
  int here;              /* of them on this host */
  int blas_here;         /* BLAS threads of the workers on this host */
  const char *workdir;   /* the resource half's default directory, or NULL */
} distc__startup;

/* choose → configure → nodes (and the launch half's prepare) → count → BLAS
 * threads.  On failure nothing is open. */
int distc__startup_plan(distc__startup *st);

/* What the launch needs besides the plan. */
typedef struct distc__startup_run {
  const char *exename;
  char *const *argv;
  const char *dir;
  const char *const *env;
  const char *master_addr;
  const char *local_addr;
  const unsigned char *secret;
  const int *bind_cpu; /* NULL: no binding */
  int first_index;
  int *started; /* may be NULL: all or nothing */
} distc__startup_run;

int distc__startup_launch(distc__startup *st, const distc__startup_run *run);
/* Frees the plan's host list (not the manager). */
void distc__startup_free(distc__startup *st);
/* The plan's hosts in launch-index order, "host:count,host:count" (this
 * host's workers first, as every launch half numbers them), for the
 * master's progress line; malloc'd, NULL when started differs from the
 * plan (a host left out) or out of memory. */
char *distc__startup_hostmap(const distc__startup *st, int started);

/* ---- this host (cores.c) ---------------------------------------------------- */

/* Physical cores this process may use on this host, counted as a remote
 * host counts its own for `host:auto` and `blas auto`, so both agree. */
int distc__host_cores(void);
/* The one rule for BLAS/OpenMP threads of a worker: a host's physical cores
 * (or the CPUs an allocation gives there, distc_host.cpus) over the workers
 * on it, at least 1. */
int distc__blas_threads(int cores, int workers);

/* ---- spawning (spawn.c) ------------------------------------------------------- */

/* Writes s to f so that a POSIX shell reads it back as one word (for the
 * exact commands -v prints); the length of the K in "K=V". */
void distc__shell_quote(FILE *f, const char *s);
size_t distc__env_key_len(const char *kv);

/* Builds the worker environment (the caller's environ with spec->env,
 * extra_env, the DISTC_* entries and the BLAS thread counts) for worker
 * `index` and posix_spawns it in its own process group with the secret on
 * a pipe as DISTC_SECRET_FD.  *pid receives the child.  An exec failure is
 * reported, not silent. */
int distc__spawn_worker(const distc_launch_spec *spec, int index,
                        const char *const *extra_env, pid_t *pid);

typedef struct distc__master_spec {
  const char *path;            /* executable, absolute */
  char *const *argv;           /* argv[0] included, NULL-terminated */
  const char *dir;             /* working directory; NULL: inherit */
  const char *const *env;      /* --env entries, NULL-terminated */
  int listen_fd;               /* the listening socket (-1 in a dry run) */
  int local_fd;                /* the same-host socket (-1: none) */
  const unsigned char *secret; /* DISTC_SECRET_LEN bytes */
  int nworkers;
  double timeout_s;
  bool verbose; /* print the exact command */
  bool dry_run; /* print, start nothing */
  /* --listen: the join socket (-1: none), its published address and key
   * file; workers distc_init waits for (-1: nworkers) */
  int join_fd;
  const char *join_addr;
  const char *join_key;
  int min_workers;
  const char *worker_hosts; /* distc__startup_hostmap's, or NULL */
} distc__master_spec;

/* Starts the master in our process group with the DISTC_* master contract.
 * *control_fd receives the read end (close-on-exec, owned by the caller) of
 * the pipe the master reports on; -1 in a dry run. */
int distc__spawn_master(const distc__master_spec *ms, pid_t *pid,
                        int *control_fd);

/* ---- route.c ---------------------------------------------------------------- */

/* This host's address (numeric, into out) on the route to host, a name or
 * an address; false when host does not resolve or no route leads there.
 * Sends nothing. */
bool distc__route_to_host(const char *host, char *out, size_t cap);

/* ---- local_socket.c ---------------------------------------------------------- */

/* An abstract AF_UNIX listener with a fresh name, written to addr as
 * "@name"; and a connection to such a name (-1 on failure). */
int distc__local_listener(char *addr, size_t cap, int *fd);
int distc__local_dial(const char *addr);

/* ---- join_door.c ------------------------------------------------------------ */

/* Listens for joining workers on spec, "[ADDR:]PORT" (PORT 0: the kernel
 * picks; no ADDR or "*": every address).  *fd is close-on-exec and blocking;
 * addr receives the address to publish: ADDR, or this host's name when
 * bound to every address, with the port. */
int distc__join_listen(const char *spec, int *fd, char *addr, size_t addrlen);
/* A fresh default key path, $HOME/.distc/join-HOST-PID.key (the directory
 * made 0700): $HOME is usually shared with the nodes that join. */
int distc__join_key_default(char *path, size_t len);
/* Writes secret to path, mode 0600, replacing it atomically. */
int distc__join_key_write(const char *path, const unsigned char *secret);
/* Reads a key file written by distc__join_key_write; refuses one that
 * others can read.  DISTC_EAUTH with a message otherwise. */
int distc__join_key_read(const char *path, unsigned char *secret);

/* The remote half of a launch half that starts one proxy per host
 * (managers/proxy.c): what distc_init runs when DISTC_ROLE is
 * DISTC_ROLE_PROXY.  Never returns. */
int distc__proxy_main(int argc, char **argv) __attribute__((noreturn));

/* The halves, for the registry (manager.c). */
extern const distc__resource_ops distc__resource_here;     /* local.c */
extern const distc__resource_ops distc__resource_hostlist; /* hostlist.c */
extern const distc__resource_ops distc__resource_pbs;      /* pbs.c */
extern const distc__launch_ops distc__launch_spawn;        /* local.c */
extern const distc__launch_ops distc__launch_ssh;          /* ssh.c */
extern const distc__resource_ops distc__resource_slurm;    /* slurm.c */
extern const distc__launch_ops distc__launch_srun;         /* srun.c */

#endif

/* launcher.h — the parts of distc-launch, shared between its files only. */
#ifndef DISTC_LAUNCHER_H
#define DISTC_LAUNCHER_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "manager.h"

/* Exit statuses of distc-launch itself (besides the master's own). */
enum {
  DISTC__EXIT_FAILURE = 1, /* the cluster could not be started */
  DISTC__EXIT_USAGE = 2,   /* bad command line */
};

/* ---- options.c ---------------------------------------------------------- */

typedef struct distc__launch_opts {
  int nworkers;        /* 0: auto, one per physical core */
  bool procs_given;    /* -p was on the command line */
  const char *dir;     /* --dir, or NULL */
  const char *exename; /* --exename as given, or NULL */
  char *exe_path;      /* worker executable (owned): distc__options_exe */
  const char **env;    /* --env entries, NULL-terminated (array owned, the
                          strings point into argv) */
  double timeout_s;    /* --timeout, default 60 */
  const char *manager; /* --manager, or NULL */
  const char *launcher; /* --launcher, or NULL */
  bool bind;           /* --bind */
  int blas_threads;    /* --blas-threads, 0: automatic */
  bool verbose;
  bool dry_run;
  char *program; /* the program, absolute (owned) */
  char **argv;   /* its argv, argv[0] as typed (points into argv) */
  /* options of the managers' halves (--hosts, --tunnel, ...) in
   * command-line order, handed to the start-up path (array owned; the
   * strings point into argv) */
  distc__mopt *mopts;
  int nmopts;
  /* elastic join: --listen [ADDR:]PORT and --join HOST:PORT (or NULL),
   * --join-key FILE (or NULL), --min-workers (-1: every worker started) */
  const char *listen;
  const char *join;
  const char *join_key;
  int min_workers;
  /* --submit sbatch|qsub (or NULL), --jobs, --workers-per-job, --queue,
   * --walltime, --job-extra lines (NULL-terminated; array owned), and
   * --key-dir (or NULL) */
  const char *submit;
  int jobs;
  int workers_per_job;
  const char *queue;
  const char *walltime;
  const char **job_extra;
  const char *key_dir;
} distc__launch_opts;

/* Parses main's argv.  Returns 0 to run, 1 when it printed what was asked
 * (--help, --version) and the launcher should exit 0, or DISTC_EINVAL with
 * "<problem>; <what to do>" in distc_errmsg().  Free with
 * distc__options_free() whatever it returned. */
int distc__options_parse(int argc, char **argv, distc__launch_opts *o);
void distc__options_free(distc__launch_opts *o);
/* Resolves the workers' executable once the plan says where they run:
 * checked here (and made absolute) when some run on this host; else an
 * absolute path or a bare name for their hosts' PATH. */
int distc__options_exe(distc__launch_opts *o, bool workers_here);
/* Every option, one a line: "--long" or "-s", then " ARG" when it takes a
 * value (distc-launch --list-options, for the shell completion). */
void distc__options_list(FILE *f);

/* ---- join.c -------------------------------------------------------------- */

/* The door --listen opens: a listening socket handed to the master, the
 * address published, and the key file written (removed by close). */
typedef struct distc__door {
  int fd; /* -1: none (a dry run) */
  char addr[256];
  char key[4096];
  bool written; /* the key file is ours to remove */
} distc__door;

/* Opens o->listen (every address when NULL), writes secret to the key file
 * (o->join_key, else a default path).  In a dry run only the names are
 * filled in. */
int distc__door_open(const distc__launch_opts *o, const unsigned char *secret,
                     distc__door *d);
/* Prints where workers join and how. */
void distc__door_announce(const distc__door *d);
void distc__door_close(distc__door *d);
/* --join: runs the program as -p N (default 1) workers that join the
 * master at o->join with o->join_key, waits for them; the exit status. */
int distc__join_run(const distc__launch_opts *o);

/* ---- submit.c ------------------------------------------------------------- */

typedef struct distc__submit {
  const struct scheduler *sched; /* NULL: nothing submitted */
  char **ids;                    /* the jobs' ids */
  int nids;
  char script[4096];             /* the job script written (removed) */
  char log_dir[4096];            /* where the jobs write their output */
  char shown[256];               /* the state line last printed */
  double all_started;            /* when none was pending any more */
  double asked;                  /* when the queue was last asked */
} distc__submit;

/* DISTC_EINVAL unless name is a scheduler --submit knows. */
int distc__submit_check(const char *name);
/* The key file's path under --key-dir (default ~/.distc, made 0700). */
int distc__submit_key_path(const distc__launch_opts *o, char *path,
                           size_t cap);
/* Replaces the door's published host with this host's address on the
 * route to the scheduler's controller, unless --listen named one. */
int distc__submit_address(const distc__launch_opts *o, distc__door *d);
/* Writes the job script and submits o->jobs jobs (a dry run prints the
 * script).  On failure the jobs submitted so far are in s: end them. */
int distc__submit_start(const distc__launch_opts *o, const distc__door *d,
                        distc__submit *s);
/* The supervisor's tick while it runs: shows the jobs' state when it
 * changed; before the master is ready, -1 (after saying why) when every
 * job ended, or when none has been pending for timeout_s. */
int distc__submit_tick(void *arg, bool ready, double waited_s,
                       double timeout_s);
/* Cancels every job (waiting, bounded, until the scheduler has them
 * ended) and removes the script. */
void distc__submit_end(distc__submit *s, bool verbose);

/* ---- topology.c --------------------------------------------------------- */

typedef struct distc__topology distc__topology;

/* Loads this host's topology (hwloc); only what this process may use. */
int distc__topology_open(distc__topology **t);
void distc__topology_close(distc__topology *t);
/* Physical cores (PUs where the platform does not report cores), >= 1. */
int distc__topology_cores(const distc__topology *t);
/* OS index of the first PU of core (core mod cores), for sched_setaffinity. */
int distc__topology_core_cpu(const distc__topology *t, int core);

/* ---- supervise.c -------------------------------------------------------- */

/* Blocks the signals the supervisor handles and installs their handlers
 * (they only run inside distc__supervise's ppoll).  Call before starting
 * any child, so none can exit or be interrupted unseen. */
int distc__signals_init(void);
void distc__signals_restore(void);

typedef struct distc__supervision {
  distc_manager *m; /* workers, already launched */
  pid_t master;
  int control_fd; /* taken over: closed by distc__supervise */
  int nworkers;
  bool remote; /* workers on other hosts: hint at --master-addr/--tunnel */
  double timeout_s;
  const char *program; /* as the user typed it, for messages */
  const char *exe_path; /* what the local workers run (absolute), or NULL */
  bool verbose;
  /* optional, about once a second: ready says whether the master is;
   * waited_s counts from the start.  Non-zero fails the run (the tick has
   * said why).  With a tick the start is not bounded by timeout_s: the
   * tick bounds it. */
  int (*tick)(void *arg, bool ready, double waited_s, double timeout_s);
  void *tick_arg;
} distc__supervision;

/* Runs until the master has exited and every worker is reaped; returns the
 * launcher's exit status (the master's, 128+signal, or 1 on a failed
 * start).  Leaves no child behind on any path. */
int distc__supervise(const distc__supervision *sv);

#endif

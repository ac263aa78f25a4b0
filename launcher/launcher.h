/* launcher.h — the parts of distc-launch, shared between its files only. */
#ifndef DISTC_LAUNCHER_H
#define DISTC_LAUNCHER_H

#include <signal.h>
#include <stdbool.h>
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
  bool verbose;
} distc__supervision;

/* Runs until the master has exited and every worker is reaped; returns the
 * launcher's exit status (the master's, 128+signal, or 1 on a failed
 * start).  Leaves no child behind on any path. */
int distc__supervise(const distc__supervision *sv);

#endif

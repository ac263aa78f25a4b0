/* options.c — distc-launch's command line.
 *
 * Parsing stops at the first word that is not an option: that is the
 * program, and everything after it is the program's own, even words that
 * look like our options (`distc-launch -p 2 ./prog -v` gives -v to prog). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "launcher.h"

#define MAX_WORKERS 100000
#define DEFAULT_TIMEOUT_S 60.0

enum opt_id {
  OPT_PROCS,
  OPT_DIR,
  OPT_EXENAME,
  OPT_ENV,
  OPT_TIMEOUT,
  OPT_HEARTBEAT,
  OPT_TOPOLOGY,
  OPT_MANAGER,
  OPT_LAUNCHER,
  OPT_BIND,
  OPT_BLAS,
  OPT_VERBOSE,
  OPT_DRY_RUN,
  OPT_HELP,
  OPT_VERSION,
  OPT_TRACE,
  OPT_STATS,
  OPT_LISTEN,
  OPT_JOIN,
  OPT_JOIN_KEY,
  OPT_MIN_WORKERS,
  OPT_SUBMIT,
  OPT_JOBS,
  OPT_WORKERS_PER_JOB,
  OPT_QUEUE,
  OPT_WALLTIME,
  OPT_JOB_EXTRA,
  OPT_KEY_DIR,
  OPT_MANAGER_OPT, /* handed to the cluster manager as it is */
};

typedef struct opt_def {
  const char *lng; /* without "--" */
  char shrt;       /* 0: none */
  bool has_arg;
  enum opt_id id;
} opt_def;

/* clang-format off */
static const opt_def opt_defs[] = {
    {"procs", 'p', true, OPT_PROCS},
    {"dir", 0, true, OPT_DIR},
    {"exename", 0, true, OPT_EXENAME},
    {"env", 0, true, OPT_ENV},
    {"timeout", 0, true, OPT_TIMEOUT},
    {"heartbeat", 0, true, OPT_HEARTBEAT},
    {"topology", 0, true, OPT_TOPOLOGY},
    {"manager", 0, true, OPT_MANAGER},
    {"launcher", 0, true, OPT_LAUNCHER},
    {"bind", 0, false, OPT_BIND},
    {"blas-threads", 0, true, OPT_BLAS},
    {"verbose", 'v', false, OPT_VERBOSE},
    {"dry-run", 0, false, OPT_DRY_RUN},
    {"trace", 0, true, OPT_TRACE},
    {"stats", 0, false, OPT_STATS},
    {"help", 'h', false, OPT_HELP},
    {"version", 'V', false, OPT_VERSION},
    {"listen", 0, true, OPT_LISTEN},
    {"join", 0, true, OPT_JOIN},
    {"join-key", 0, true, OPT_JOIN_KEY},
    {"min-workers", 0, true, OPT_MIN_WORKERS},
    {"submit", 0, true, OPT_SUBMIT},
    {"jobs", 0, true, OPT_JOBS},
    {"workers-per-job", 0, true, OPT_WORKERS_PER_JOB},
    {"queue", 0, true, OPT_QUEUE},
    {"walltime", 0, true, OPT_WALLTIME},
    {"job-extra", 0, true, OPT_JOB_EXTRA},
    {"key-dir", 0, true, OPT_KEY_DIR},
};
/* clang-format on */

/* The usage text: the common options here, then each half's options from
 * the registry (a half shared by several managers is listed once). */
static const char usage_head[] =
    "usage: distc-launch [options] PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM, a program linked with libdistc, as the master of a cluster\n"
    "of worker processes that run the same program and connect back to it.\n"
    "\n"
    "options:\n"
    "  -p, --procs N|auto   workers to start (default auto: one per physical\n"
    "                       core of this host)\n"
    "      --dir DIR        working directory of the master and the workers\n"
    "      --exename PATH   executable the workers run (default: PROGRAM)\n"
    "      --env K=V        set K=V for the master and the workers\n"
    "                       (repeatable)\n"
    "      --timeout S      seconds to wait for the workers to connect\n"
    "                       (default 60, decimals allowed)\n"
    "      --heartbeat S    seconds between heartbeats on idle links; a\n"
    "                       worker silent for 10 of them is lost (default\n"
    "                       1; 0: off; sets DISTC_HEARTBEAT_S)\n"
    "      --topology T     all_to_all (default: workers call each other,\n"
    "                       linked on first use) or master_worker (workers\n"
    "                       talk to the master only; sets DISTC_TOPOLOGY)\n";
static const char usage_common[] =
    "      --bind           bind worker i to core i mod cores\n"
    "      --blas-threads N OPENBLAS_NUM_THREADS and OMP_NUM_THREADS of each\n"
    "                       worker (default: cores / workers of its host, at\n"
    "                       least 1)\n"
    "  -v, --verbose        say which manager was chosen and print every\n"
    "                       command started\n"
    "      --dry-run        print the commands, start nothing\n"
    "      --trace FILE     write a timeline of every process to FILE (Chrome\n"
    "                       and Perfetto trace events, JSON), as DISTC_TRACE\n"
    "      --stats          print each worker's calls, bytes and busy time\n"
    "                       at exit, as DISTC_STATS=1\n"
    "\n"
    "workers that join from outside (elastic join):\n"
    "      --listen [ADDR:]PORT\n"
    "                       also take in workers started by anyone, joining\n"
    "                       at ADDR:PORT (PORT 0: any); prints the address\n"
    "                       and the key file to give them; without -p no\n"
    "                       worker is started here\n"
    "      --join-key FILE  the key file (mode 0600) --listen writes, or\n"
    "                       --join reads (default with --listen:\n"
    "                       ~/.distc/join-HOST-PID.key, removed at the end)\n"
    "      --min-workers N  start the master once N workers are present\n"
    "                       (default: every worker started); more keep\n"
    "                       joining\n"
    "      --join HOST:PORT run PROGRAM as a worker (-p N: N of them) that\n"
    "                       joins the master listening there, with\n"
    "                       --join-key FILE\n"
    "\n"
    "worker jobs submitted from a login node (they join as above):\n"
    "      --submit sbatch|qsub\n"
    "                       submit worker jobs; the master runs here\n"
    "      --jobs J         jobs to submit (default 1)\n"
    "      --workers-per-job W\n"
    "                       workers each job starts (default 1)\n"
    "      --queue Q        partition or queue of the jobs\n"
    "      --walltime T     time limit of each job\n"
    "      --job-extra LINE a line added to the job script's header\n"
    "                       (repeatable)\n"
    "      --key-dir DIR    where the key file, the job script and the jobs'\n"
    "                       output go (default ~/.distc; the nodes must\n"
    "                       read it)\n";
static const char usage_tail[] =
    "\n"
    "  -h, --help           print this help and exit\n"
    "  -V, --version        print the version and exit\n"
    "\n"
    "Options end at the first word that is not one (or at --); the rest is\n"
    "PROGRAM and its arguments.  See distc-launch(1).\n";

#define HELP_COL 23

/* "      --name ARG" padded to HELP_COL, then the help, each further line of
 * it indented to HELP_COL. */
static void usage_option(FILE *f, const distc__option *o) {
  int n = fprintf(f, "      --%s%s%s", o->name, o->arg ? " " : "",
                  o->arg ? o->arg : "");
  const char *h = o->help ? o->help : "";
  if (n >= HELP_COL) {
    fputs("  ", f);
  } else {
    fprintf(f, "%*s", HELP_COL - n, "");
  }
  for (;;) {
    size_t len = strcspn(h, "\n");
    fprintf(f, "%.*s\n", (int)len, h);
    if (h[len] == '\0')
      break;
    h += len + 1;
    fprintf(f, "%*s", HELP_COL, "");
  }
}

/* Managers using half `half` (resource when res), e.g. "ssh, pbs". */
static void users(char *buf, size_t len, const void *half, bool res) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; distc__manager_at(i) && n < len; i++) {
    const distc__manager_def *d = distc__manager_at(i);
    if ((res ? (const void *)d->resource : (const void *)d->launch) == half)
      n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", d->name);
  }
}

static bool seen_before(size_t upto, const void *half, bool res) {
  for (size_t i = 0; i < upto; i++) {
    const distc__manager_def *d = distc__manager_at(i);
    if ((res ? (const void *)d->resource : (const void *)d->launch) == half)
      return true;
  }
  return false;
}

static void usage(FILE *f) {
  char names[256], launchers[256];
  size_t nn = 0, nl = 0;
  for (size_t i = 0; distc__manager_at(i); i++) {
    const distc__manager_def *d = distc__manager_at(i);
    nn += (size_t)snprintf(names + nn, sizeof names - nn, "%s%s",
                           i ? ", " : "", d->name);
    if (!seen_before(i, d->launch, false))
      nl += (size_t)snprintf(launchers + nl, sizeof launchers - nl, "%s%s",
                             nl ? ", " : "", d->launch->name);
  }
  fputs(usage_head, f);
  fprintf(f,
          "      --manager NAME   cluster manager (known: %s); default:\n"
          "                       implied by the options below, else\n"
          "                       $DISTC_MANAGER, else detected, else local\n"
          "      --launcher NAME  how the manager starts processes (known: "
          "%s);\n"
          "                       default: the manager's own\n",
          names, launchers);
  fputs(usage_common, f);
  for (size_t i = 0; distc__manager_at(i); i++) {
    const distc__manager_def *d = distc__manager_at(i);
    for (int res = 1; res >= 0; res--) {
      const void *half = res ? (const void *)d->resource : (const void *)d->launch;
      const distc__option *opts = res ? d->resource->options : d->launch->options;
      const char *title = res ? d->resource->title : d->launch->title;
      if (opts == NULL || opts[0].name == NULL || seen_before(i, half, res))
        continue;
      char who[256];
      users(who, sizeof who, half, res);
      fprintf(f, "\n%s; manager%s %s:\n", title ? title : "options",
              strchr(who, ',') ? "s" : "", who);
      for (size_t k = 0; opts[k].name; k++)
        usage_option(f, &opts[k]);
    }
  }
  fputs(usage_tail, f);
}

/* Every option, the common ones and every registered half's, each name
 * once (two halves may take the same one, e.g. --master-addr). */
void distc__options_list(FILE *f) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(opt_defs); i++) {
    const opt_def *d = &opt_defs[i];
    fprintf(f, "--%s%s\n", d->lng, d->has_arg ? " ARG" : "");
    if (d->shrt)
      fprintf(f, "-%c%s\n", d->shrt, d->has_arg ? " ARG" : "");
  }
  for (size_t i = 0; distc__manager_at(i); i++) {
    const distc__manager_def *d = distc__manager_at(i);
    for (int res = 1; res >= 0; res--) {
      const void *half = res ? (const void *)d->resource : (const void *)d->launch;
      const distc__option *opts = res ? d->resource->options : d->launch->options;
      if (opts == NULL || seen_before(i, half, res))
        continue;
      for (size_t k = 0; opts[k].name; k++)
        if (distc__manager_option(opts[k].name) == &opts[k])
          fprintf(f, "--%s%s\n", opts[k].name, opts[k].has_arg ? " ARG" : "");
    }
  }
}

static const opt_def *find_long(const char *name, size_t len) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(opt_defs); i++)
    if (strlen(opt_defs[i].lng) == len &&
        strncmp(opt_defs[i].lng, name, len) == 0)
      return &opt_defs[i];
  return NULL;
}

static const opt_def *find_short(char c) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(opt_defs); i++)
    if (opt_defs[i].shrt == c)
      return &opt_defs[i];
  return NULL;
}

static int parse_procs(const char *v, distc__launch_opts *o) {
  if (strcmp(v, "auto") == 0) {
    o->nworkers = 0;
    return 0;
  }
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (v[0] == '\0' || *end != '\0' || errno != 0 || n < 1)
    return distc__seterr(DISTC_EINVAL,
                         "-p wants a positive number of workers or 'auto', "
                         "got '%s'; e.g. -p 4",
                         v);
  if (n > MAX_WORKERS)
    return distc__seterr(DISTC_EINVAL,
                         "-p %s is more workers than distc-launch starts "
                         "(at most %d); use a smaller number",
                         v, MAX_WORKERS);
  o->nworkers = (int)n;
  return 0;
}

static int parse_timeout(const char *v, distc__launch_opts *o) {
  char *end;
  errno = 0;
  double t = strtod(v, &end);
  if (v[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(t) || t <= 0)
    return distc__seterr(DISTC_EINVAL,
                         "--timeout wants a number of seconds > 0, got '%s'; "
                         "e.g. --timeout 120 or --timeout 2.5",
                         v);
  o->timeout_s = t;
  return 0;
}

/* The master reads it (and gives it to the workers as they join), so it
 * travels as an environment entry like --env's. */
static int parse_heartbeat(const char *v, distc__launch_opts *o) {
  static char entry[64];
  char *end;
  errno = 0;
  double t = strtod(v, &end);
  if (v[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(t) || t < 0 ||
      t > 86400)
    return distc__seterr(DISTC_EINVAL,
                         "--heartbeat wants seconds between heartbeats "
                         "(0 to 86400, 0 turns them off), got '%s'; e.g. "
                         "--heartbeat 5",
                         v);
  size_t n = 0;
  while (o->env[n] != NULL && o->env[n] != entry)
    n++;
  snprintf(entry, sizeof entry, "DISTC_HEARTBEAT_S=%g", t);
  o->env[n] = entry; /* a second --heartbeat replaces the first */
  return 0;
}

static int parse_topology(const char *v, distc__launch_opts *o) {
  static char entry[64];
  if (strcmp(v, "all_to_all") != 0 && strcmp(v, "master_worker") != 0)
    return distc__seterr(DISTC_EINVAL,
                         "--topology wants all_to_all (workers call each "
                         "other directly) or master_worker (workers talk to "
                         "the master only), got '%s'",
                         v);
  size_t n = 0;
  while (o->env[n] != NULL && o->env[n] != entry)
    n++;
  snprintf(entry, sizeof entry, "DISTC_TOPOLOGY=%s", v);
  o->env[n] = entry; /* a second --topology replaces the first */
  return 0;
}

static int parse_blas(const char *v, distc__launch_opts *o) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (v[0] == '\0' || *end != '\0' || errno != 0 || n < 1 || n > 65536)
    return distc__seterr(DISTC_EINVAL,
                         "--blas-threads wants a number of threads >= 1, got "
                         "'%s'; e.g. --blas-threads 2",
                         v);
  o->blas_threads = (int)n;
  return 0;
}

static int parse_dir(const char *v, distc__launch_opts *o) {
  struct stat st;
  if (stat(v, &st) != 0)
    return distc__seterr(DISTC_EINVAL,
                         "--dir %s: %s; give an existing directory", v,
                         strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return distc__seterr(DISTC_EINVAL,
                         "--dir %s is not a directory; give a directory", v);
  o->dir = v;
  return 0;
}

/* Why a candidate path cannot be run, or 0 if it can. */
static int check_exec(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0)
    return errno;
  if (S_ISDIR(st.st_mode))
    return EISDIR;
  if (access(path, X_OK) != 0)
    return errno;
  return 0;
}

/* A copy of path that does not depend on our working directory, since the
 * master and workers may run in --dir.  Symlinks are kept as they are: the
 * program may look at how it was invoked. */
static char *absolute(const char *path) {
  if (path[0] == '/')
    return strdup(path);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return NULL;
  while (path[0] == '.' && path[1] == '/')
    path += 2;
  size_t n = strlen(cwd) + strlen(path) + 2;
  char *p = malloc(n);
  if (p != NULL)
    snprintf(p, n, "%s/%s", cwd, path);
  return p;
}

/* Finds name as execvp would: as a path when it has a slash, else in each
 * $PATH directory in turn (an empty entry is the current directory). */
static int resolve_program(const char *what, const char *name, char **out) {
  int e;

  if (name[0] == '\0')
    return distc__seterr(DISTC_EINVAL, "%s is empty; give a program to run",
                         what);
  if (strchr(name, '/') != NULL) {
    e = check_exec(name);
    if (e == EISDIR)
      return distc__seterr(DISTC_EINVAL,
                           "%s %s is a directory; give the program inside it",
                           what, name);
    if (e == EACCES)
      return distc__seterr(DISTC_EINVAL,
                           "%s %s is not executable; make it so (chmod +x) or "
                           "check the path",
                           what, name);
    if (e != 0)
      return distc__seterr(DISTC_EINVAL, "%s %s: %s on this host; check the "
                           "path", what, name, strerror(e));
    goto found;
  }

  const char *path = getenv("PATH");
  char defpath[256];
  if (path == NULL) {
    size_t n = confstr(_CS_PATH, defpath, sizeof defpath);
    path = n > 0 && n <= sizeof defpath ? defpath : "/bin:/usr/bin";
  }
  bool not_exec = false;
  for (const char *p = path;; p++) {
    const char *colon = strchrnul(p, ':');
    int dlen = (int)(colon - p);
    char cand[PATH_MAX];
    int n = snprintf(cand, sizeof cand, "%.*s%s%s", dlen, p, dlen ? "/" : "./",
                     name);
    if (n > 0 && (size_t)n < sizeof cand) {
      e = check_exec(cand);
      if (e == 0) {
        *out = absolute(cand);
        goto copied;
      }
      if (e == EACCES)
        not_exec = true;
    }
    if (*colon == '\0')
      break;
    p = colon;
  }
  if (not_exec)
    return distc__seterr(DISTC_EINVAL,
                         "%s %s was found in PATH but is not executable; "
                         "make it so (chmod +x) or give its path",
                         what, name);
  return distc__seterr(DISTC_EINVAL,
                       "%s %s not found in PATH; give its path (e.g. ./%s) "
                       "or check the name",
                       what, name, name);

found:
  *out = absolute(name);
copied:
  if (*out == NULL)
    return distc__seterr(DISTC_ENOMEM, "cannot resolve %s %s: %s", what, name,
                         strerror(errno ? errno : ENOMEM));
  return 0;
}

static int apply(const opt_def *d, const char *v, distc__launch_opts *o,
                 const char **exename) {
  switch (d->id) {
  case OPT_PROCS:
    o->procs_given = true;
    return parse_procs(v, o);
  case OPT_DIR:
    return parse_dir(v, o);
  case OPT_EXENAME:
    *exename = v;
    return 0;
  case OPT_ENV: {
    const char *eq = strchr(v, '=');
    if (eq == NULL || eq == v)
      return distc__seterr(DISTC_EINVAL,
                           "--env wants K=V, got '%s'; e.g. --env "
                           "OMP_PROC_BIND=true",
                           v);
    size_t n = 0;
    while (o->env[n] != NULL)
      n++;
    o->env[n] = v;
    o->env[n + 1] = NULL;
    return 0;
  }
  case OPT_TIMEOUT:
    return parse_timeout(v, o);
  case OPT_HEARTBEAT:
    return parse_heartbeat(v, o);
  case OPT_TOPOLOGY:
    return parse_topology(v, o);
  case OPT_MANAGER:
    if (v[0] == '\0')
      return distc__seterr(DISTC_EINVAL,
                           "--manager wants a name; e.g. --manager local");
    o->manager = v;
    return 0;
  case OPT_BIND:
    o->bind = true;
    return 0;
  case OPT_BLAS:
    return parse_blas(v, o);
  case OPT_VERBOSE:
    o->verbose = true;
    return 0;
  case OPT_DRY_RUN:
    o->dry_run = true;
    return 0;
  case OPT_LAUNCHER:
    if (v[0] == '\0')
      return distc__seterr(DISTC_EINVAL,
                           "--launcher wants a name; e.g. --launcher ssh");
    o->launcher = v;
    return 0;
  case OPT_HELP:
    usage(stdout);
    return 1;
  case OPT_VERSION:
    printf("distc-launch %s\n", DISTC_VERSION);
    return 1;
  case OPT_TRACE: {
    /* Through the environment, which the master and the workers inherit
     * (the launcher records its own part too); absolute, since they may
     * run in --dir. */
    char *abs = v[0] ? absolute(v) : NULL;
    int e = abs ? setenv("DISTC_TRACE", abs, 1) : -1;
    free(abs);
    if (e != 0)
      return distc__seterr(DISTC_EINVAL, "--trace needs a file name; see "
                                         "distc-launch --help");
    return 0;
  }
  case OPT_STATS:
    setenv("DISTC_STATS", "1", 1);
    return 0;
  case OPT_LISTEN:
    if (v[0] == '\0')
      return distc__seterr(DISTC_EINVAL, "--listen wants [ADDR:]PORT; e.g. "
                           "--listen 9000");
    o->listen = v;
    return 0;
  case OPT_JOIN:
    if (v[0] == '\0' || strrchr(v, ':') == NULL)
      return distc__seterr(DISTC_EINVAL, "--join wants HOST:PORT, the "
                           "address the master printed, got '%s'", v);
    o->join = v;
    return 0;
  case OPT_JOIN_KEY:
    if (v[0] == '\0')
      return distc__seterr(DISTC_EINVAL, "--join-key wants a file name");
    o->join_key = v;
    return 0;
  case OPT_MIN_WORKERS: {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || n < 0 ||
        n > MAX_WORKERS)
      return distc__seterr(DISTC_EINVAL, "--min-workers wants a number of "
                           "workers >= 0, got '%s'; e.g. --min-workers 4", v);
    o->min_workers = (int)n;
    return 0;
  }
  case OPT_SUBMIT:
    if (distc__submit_check(v) != 0)
      return DISTC_EINVAL;
    o->submit = v;
    return 0;
  case OPT_JOBS:
  case OPT_WORKERS_PER_JOB: {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || n < 1 || n > 10000)
      return distc__seterr(DISTC_EINVAL, "--%s wants a number >= 1, got "
                           "'%s'", d->lng, v);
    *(d->id == OPT_JOBS ? &o->jobs : &o->workers_per_job) = (int)n;
    return 0;
  }
  case OPT_QUEUE:
    o->queue = v;
    return 0;
  case OPT_WALLTIME:
    o->walltime = v;
    return 0;
  case OPT_JOB_EXTRA: {
    size_t n = 0;
    while (o->job_extra[n] != NULL)
      n++;
    o->job_extra[n] = v;
    o->job_extra[n + 1] = NULL;
    return 0;
  }
  case OPT_KEY_DIR:
    o->key_dir = v;
    return 0;
  case OPT_MANAGER_OPT:
    if (d->has_arg && v[0] == '\0')
      return distc__seterr(DISTC_EINVAL,
                           "--%s needs a value; see distc-launch --help",
                           d->lng);
    o->mopts[o->nmopts++] = (distc__mopt){d->lng, v};
    return 0;
  }
  return 0;
}

int distc__options_parse(int argc, char **argv, distc__launch_opts *o) {
  const char *exename = NULL;
  int rc = 0;
  int i;

  *o = (distc__launch_opts){.timeout_s = DEFAULT_TIMEOUT_S,
                            .min_workers = -1,
                            .jobs = 1,
                            .workers_per_job = 1};
  /* Every --env takes at least one word, so argc entries always suffice. */
  o->env = calloc((size_t)argc + 1, sizeof *o->env);
  o->mopts = calloc((size_t)argc + 1, sizeof *o->mopts);
  o->job_extra = calloc((size_t)argc + 1, sizeof *o->job_extra);
  if (o->env == NULL || o->mopts == NULL || o->job_extra == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");

  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const opt_def *d;
    const char *v = NULL;
    char shown[64];

    opt_def mdef; /* an option of a manager's half, from the registry */
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (a[0] != '-' || a[1] == '\0')
      break;
    if (a[1] == '-') {
      const char *name = a + 2;
      const char *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      d = find_long(name, len);
      if (d == NULL && len < sizeof shown - 2) {
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)len, name);
        const distc__option *mo = distc__manager_option(key);
        if (mo != NULL) {
          mdef = (opt_def){mo->name, 0, mo->has_arg, OPT_MANAGER_OPT};
          d = &mdef;
        }
      }
      snprintf(shown, sizeof shown, "--%.*s", (int)len, name);
      if (d != NULL && eq != NULL) {
        if (!d->has_arg)
          return distc__seterr(DISTC_EINVAL,
                               "%s takes no value, got '%s'; write just %s",
                               shown, a, shown);
        v = eq + 1;
      }
    } else {
      d = find_short(a[1]);
      snprintf(shown, sizeof shown, "-%c", a[1]);
      if (d != NULL && a[2] != '\0') {
        if (!d->has_arg)
          d = NULL; /* "-vx": we do not bundle flags */
        else
          v = a + 2; /* "-p4" */
      }
    }
    if (d == NULL)
      return distc__seterr(DISTC_EINVAL,
                           "unknown option '%s'; see distc-launch --help", a);
    if (d->has_arg && v == NULL) {
      if (i + 1 >= argc)
        return distc__seterr(
            DISTC_EINVAL, "%s needs a value%s; see distc-launch --help", shown,
            d->id == OPT_PROCS ? " (a number of workers or 'auto', e.g. -p 4)"
                               : "");
      v = argv[++i];
    }
    rc = apply(d, v, o, &exename);
    if (rc != 0)
      return rc;
  }

  if (i >= argc)
    return distc__seterr(DISTC_EINVAL,
                         "no program to run; usage: distc-launch [options] "
                         "PROGRAM [ARGS...], see distc-launch --help");
  o->argv = argv + i;
  rc = resolve_program("program", argv[i], &o->program);
  if (rc != 0)
    return rc;
  if (o->join != NULL && (o->listen != NULL || o->min_workers >= 0 ||
                          o->nmopts > 0 || o->manager != NULL))
    return distc__seterr(DISTC_EINVAL,
                         "--join starts workers of a master running "
                         "elsewhere; it takes no --listen, --min-workers or "
                         "manager options");
  if (o->join != NULL && o->join_key == NULL)
    return distc__seterr(DISTC_EINVAL, "--join needs --join-key FILE, the "
                         "key file the master's --listen printed");
  if (o->submit != NULL && o->join != NULL)
    return distc__seterr(DISTC_EINVAL, "--submit and --join do not go "
                         "together: --submit runs the master here");
  bool job_opts = o->queue || o->walltime || o->job_extra[0] || o->key_dir ||
                  o->jobs != 1 || o->workers_per_job != 1;
  if (o->submit == NULL && job_opts)
    return distc__seterr(DISTC_EINVAL, "--jobs, --workers-per-job, --queue, "
                         "--walltime, --job-extra and --key-dir describe "
                         "the jobs of --submit sbatch|qsub; give --submit");
  if (o->join == NULL && o->listen == NULL && o->submit == NULL &&
      (o->join_key != NULL || o->min_workers >= 0))
    return distc__seterr(DISTC_EINVAL, "--%s is about workers that join: "
                         "give --listen [ADDR:]PORT too",
                         o->join_key ? "join-key" : "min-workers");
  if (exename != NULL && exename[0] == '\0')
    return distc__seterr(DISTC_EINVAL,
                         "--exename is empty; give a program to run");
  o->exename = exename;
  return 0;
}

int distc__options_exe(distc__launch_opts *o, bool workers_here) {
  /* Checked here when workers run on this host.  For workers on other hosts
   * only, it is looked for there: a path is made absolute (from our
   * directory, as the local case reads it), a bare name is left to their
   * PATH. */
  if (o->exename != NULL && !workers_here) {
    o->exe_path = strchr(o->exename, '/') ? absolute(o->exename)
                                          : strdup(o->exename);
    if (o->exe_path == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    return 0;
  }
  if (o->exename != NULL)
    return resolve_program("--exename", o->exename, &o->exe_path);
  o->exe_path = strdup(o->program);
  if (o->exe_path == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  return 0;
}

void distc__options_free(distc__launch_opts *o) {
  free(o->env);
  free(o->job_extra);
  o->job_extra = NULL;
  free(o->mopts);
  o->mopts = NULL;
  free(o->program);
  free(o->exe_path);
  o->env = NULL;
  o->program = NULL;
  o->exe_path = NULL;
}

/* submit.c — --submit sbatch|qsub: worker jobs submitted from a login node,
 * as dask-jobqueue and ClusterManagers.jl do.  The master runs here; each
 * job runs `distc-launch --join ADDR --join-key KEY -p W PROGRAM` on its
 * node whenever the scheduler starts it, and its workers join through the
 * door --listen opened (join.c).
 *
 * One job script, printed by --dry-run (dask-jobqueue's job_script()); J
 * jobs; their state shown while they queue; every one cancelled when the
 * run ends, on Ctrl-C and on error.  If distc-launch itself is killed, a
 * job that starts later finds nobody listening and its workers give up
 * after DISTC_TIMEOUT; the jobs' walltime bounds the rest.
 *
 * The schedulers are a table: how a script's header reads, how a job is
 * submitted, asked about and cancelled.  The commands are run through
 * popen with every word quoted: they are the user's own scheduler tools. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "launcher.h"

#define READY_POLL_S 10.0

typedef struct counts {
  int pending, running, done;
  char reason[128]; /* of the first pending job */
} counts;

typedef struct scheduler {
  const char *name;   /* what --submit names */
  const char *cancel; /* the cancelling command */
  /* The script's header lines. */
  void (*header)(FILE *f, const distc__launch_opts *o, const char *log_dir);
  /* The submit command line's words after the script path is appended
   * (NULL-terminated). */
  const char *const *submit;
  /* Adds the states of the jobs to c; <0 when the tool fails. */
  int (*states)(const distc__submit *s, counts *c);
} scheduler;

/* ---- running a command ---- */

/* A command line of words, each quoted for the shell; ids appended. */
static char *command(const char *const *words, const char *extra,
                     char *const *ids, int nids, const char *sep) {
  char *line = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&line, &len);
  if (f == NULL)
    return NULL;
  for (size_t i = 0; words[i]; i++) {
    if (i)
      fputc(' ', f);
    distc__shell_quote(f, words[i]);
  }
  if (extra) {
    fputc(' ', f);
    distc__shell_quote(f, extra);
  }
  for (int i = 0; i < nids; i++) {
    fputs(i == 0 ? " " : sep, f);
    distc__shell_quote(f, ids[i]);
  }
  fputs(" </dev/null", f);
  if (fclose(f) != 0) {
    free(line);
    return NULL;
  }
  return line;
}

/* Runs line, its standard output into out (cut to cap); the exit status,
 * or -1. */
static int run_capture(const char *line, char *out, size_t cap) {
  FILE *p = popen(line, "r");
  if (p == NULL)
    return -1;
  size_t n = out ? fread(out, 1, cap - 1, p) : 0;
  if (out)
    out[n] = '\0';
  char sink[256];
  while (fread(sink, 1, sizeof sink, p) > 0)
    ;
  int st = pclose(p);
  return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- SLURM: sbatch, squeue, scancel ---- */

static void sbatch_header(FILE *f, const distc__launch_opts *o,
                          const char *log_dir) {
  fprintf(f, "#SBATCH --job-name=distc-worker\n");
  fprintf(f, "#SBATCH --ntasks=1\n");
  fprintf(f, "#SBATCH --cpus-per-task=%d\n", o->workers_per_job);
  fprintf(f, "#SBATCH --output=%s/distc-worker-%%j.out\n", log_dir);
  if (o->queue)
    fprintf(f, "#SBATCH --partition=%s\n", o->queue);
  if (o->walltime)
    fprintf(f, "#SBATCH --time=%s\n", o->walltime);
}

static const char *const sbatch_submit[] = {"sbatch", "--parsable", NULL};

static int squeue_states(const distc__submit *s, counts *c) {
  static const char *const words[] = {"squeue", "-h", "-o", "%i %T %r",
                                      "-j", NULL};
  char ids[4096];
  size_t n = 0;
  for (int i = 0; i < s->nids && n < sizeof ids; i++)
    n += (size_t)snprintf(ids + n, sizeof ids - n, "%s%s", i ? "," : "",
                          s->ids[i]);
  char *line = command(words, ids, NULL, 0, "");
  char out[8192];
  int rc = line ? run_capture(line, out, sizeof out) : -1;
  free(line);
  if (rc != 0)
    return -1;
  int seen = 0;
  for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
    char id[64], state[64], reason[128] = "";
    if (sscanf(l, "%63s %63s %127[^\n]", id, state, reason) < 2)
      continue;
    seen++;
    if (strcmp(state, "PENDING") == 0 || strcmp(state, "CONFIGURING") == 0 ||
        strcmp(state, "REQUEUED") == 0 || strcmp(state, "SUSPENDED") == 0) {
      if (c->pending++ == 0)
        snprintf(c->reason, sizeof c->reason, "%s", reason);
    } else if (strcmp(state, "RUNNING") == 0 ||
               strcmp(state, "COMPLETING") == 0) {
      c->running++;
    } else {
      c->done++;
    }
  }
  c->done += s->nids - seen; /* squeue forgets ended jobs */
  return 0;
}

/* ---- PBS/Torque: qsub, qstat, qdel ---- */

static void qsub_header(FILE *f, const distc__launch_opts *o,
                        const char *log_dir) {
  fprintf(f, "#PBS -N distc-worker\n");
  fprintf(f, "#PBS -l nodes=1:ppn=%d\n", o->workers_per_job);
  fprintf(f, "#PBS -j oe\n");
  fprintf(f, "#PBS -o %s/distc-worker.out\n", log_dir);
  if (o->queue)
    fprintf(f, "#PBS -q %s\n", o->queue);
  if (o->walltime)
    fprintf(f, "#PBS -l walltime=%s\n", o->walltime);
}

static const char *const qsub_submit[] = {"qsub", NULL};

static int qstat_states(const distc__submit *s, counts *c) {
  static const char *const words[] = {"qstat", NULL};
  char *line = command(words, NULL, s->ids, s->nids, " ");
  char out[8192];
  int rc = line ? run_capture(line, out, sizeof out) : -1;
  free(line);
  if (rc < 0)
    return -1;
  int seen = 0;
  for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
    char id[64], name[64], user[64], tm[64], st[8];
    if (sscanf(l, "%63s %63s %63s %63s %7s", id, name, user, tm, st) != 5 ||
        strlen(st) != 1)
      continue;
    bool ours = false;
    for (int i = 0; i < s->nids && !ours; i++)
      ours = strncmp(id, s->ids[i], strlen(s->ids[i])) == 0;
    if (!ours)
      continue;
    seen++;
    if (strchr("QHWT", st[0])) {
      if (c->pending++ == 0)
        snprintf(c->reason, sizeof c->reason, "%s",
                 st[0] == 'H' ? "held" : "queued");
    } else if (strchr("RE", st[0])) {
      c->running++;
    } else {
      c->done++;
    }
  }
  c->done += s->nids - seen;
  return 0;
}

static const scheduler schedulers[] = {
    {"sbatch", "scancel", sbatch_header, sbatch_submit, squeue_states},
    {"qsub", "qdel", qsub_header, qsub_submit, qstat_states},
};

int distc__submit_check(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(schedulers); i++)
    if (strcmp(schedulers[i].name, name) == 0)
      return 0;
  return distc__seterr(DISTC_EINVAL, "--submit %s: not a scheduler distc "
                       "knows; give sbatch or qsub", name);
}

/* ---- the address the nodes dial ---- */

/* The scheduler's controller, where the nodes surely can reach: SLURM's
 * SlurmctldHost ("ctl(10.0.0.2)"), or PBS_SERVER. */
static bool controller(char *out, size_t cap) {
  const char *pbs = getenv("PBS_SERVER");
  if (pbs && *pbs) {
    snprintf(out, cap, "%s", pbs);
    return true;
  }
  char text[16384];
  if (run_capture("scontrol show config 2>/dev/null", text, sizeof text) != 0)
    return false;
  char *l = strstr(text, "SlurmctldHost");
  char *eq = l ? strchr(l, '=') : NULL;
  if (eq == NULL)
    return false;
  eq++;
  while (*eq == ' ')
    eq++;
  char *open = strchr(eq, '('), *nl = strchr(eq, '\n');
  if (open && (!nl || open < nl)) {
    char *close = strchr(open, ')');
    if (!close)
      return false;
    snprintf(out, cap, "%.*s", (int)(close - open - 1), open + 1);
  } else {
    snprintf(out, cap, "%.*s", nl ? (int)(nl - eq) : (int)strlen(eq), eq);
  }
  return out[0] != '\0';
}

int distc__submit_address(const distc__launch_opts *o, distc__door *d) {
  /* --listen ADDR:PORT names the address itself. */
  if (o->listen && strchr(o->listen, ':') && o->listen[0] != ':' &&
      o->listen[0] != '*')
    return 0;
  char ctl[256], me[64];
  if (!controller(ctl, sizeof ctl) ||
      !distc__route_to_host(ctl, me, sizeof me))
    return 0; /* this host's name, as for --listen */
  const char *colon = strrchr(d->addr, ':');
  char port[16];
  snprintf(port, sizeof port, "%s", colon ? colon + 1 : "0");
  snprintf(d->addr, sizeof d->addr, "%s:%s", me, port);
  if (o->verbose)
    fprintf(stderr, "distc-launch: the nodes dial %s (this host on the "
            "route to the controller %s)\n", d->addr, ctl);
  return 0;
}

/* ---- the job script ---- */

static const scheduler *find(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(schedulers); i++)
    if (strcmp(schedulers[i].name, name) == 0)
      return &schedulers[i];
  return NULL;
}

static void write_script(FILE *f, const scheduler *sc,
                         const distc__launch_opts *o, const distc__door *d,
                         const char *log_dir) {
  char self[PATH_MAX], cwd[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  if (n <= 0)
    snprintf(self, sizeof self, "distc-launch");
  const char *dir = o->dir ? o->dir : getcwd(cwd, sizeof cwd) ? cwd : ".";
  fprintf(f, "#!/bin/sh\n");
  sc->header(f, o, log_dir);
  for (size_t i = 0; o->job_extra && o->job_extra[i]; i++)
    fprintf(f, "%s\n", o->job_extra[i]);
  fputs("cd ", f);
  distc__shell_quote(f, dir);
  fputs(" || exit 1\nexec ", f);
  distc__shell_quote(f, self);
  fputs(" --join ", f);
  distc__shell_quote(f, d->addr);
  fputs(" --join-key ", f);
  distc__shell_quote(f, d->key);
  fprintf(f, " -p %d", o->workers_per_job);
  for (size_t i = 0; o->env[i]; i++) {
    fputs(" --env ", f);
    distc__shell_quote(f, o->env[i]);
  }
  fputc(' ', f);
  distc__shell_quote(f, o->exe_path);
  for (size_t i = 1; o->argv[i]; i++) {
    fputc(' ', f);
    distc__shell_quote(f, o->argv[i]);
  }
  fputc('\n', f);
}

int distc__submit_key_path(const distc__launch_opts *o, char *path,
                           size_t cap) {
  char dir[PATH_MAX];
  const char *home = getenv("HOME");
  if (o->key_dir)
    snprintf(dir, sizeof dir, "%s", o->key_dir);
  else if (home && *home)
    snprintf(dir, sizeof dir, "%s/.distc", home);
  else
    return distc__seterr(DISTC_EINVAL, "HOME is not set; give --key-dir, a "
                         "directory the nodes can read");
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return distc__seterr(DISTC_EIO, "cannot create --key-dir %s: %s; give a "
                         "directory the nodes can read", dir,
                         strerror(errno));
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  if ((size_t)snprintf(path, cap, "%s/join-%s-%ld.key", dir, host,
                       (long)getpid()) >= cap)
    return distc__seterr(DISTC_EINVAL, "--key-dir %s: path too long", dir);
  return 0;
}

int distc__submit_start(const distc__launch_opts *o, const distc__door *d,
                        distc__submit *s) {
  const scheduler *sc = find(o->submit);
  *s = (distc__submit){.sched = sc};
  char log_dir[PATH_MAX];
  snprintf(log_dir, sizeof log_dir, "%s", d->key);
  char *slash = strrchr(log_dir, '/');
  if (slash)
    *slash = '\0';
  else
    snprintf(log_dir, sizeof log_dir, ".");
  snprintf(s->log_dir, sizeof s->log_dir, "%s", log_dir);

  if (o->dry_run) {
    fprintf(stdout, "# job script (%s, %d job%s of %d worker%s):\n",
            sc->name, o->jobs, o->jobs > 1 ? "s" : "", o->workers_per_job,
            o->workers_per_job > 1 ? "s" : "");
    write_script(stdout, sc, o, d, log_dir);
    fflush(stdout);
    return 0;
  }
  if ((size_t)snprintf(s->script, sizeof s->script, "%s/distc-job-%ld.sh",
                       log_dir, (long)getpid()) >= sizeof s->script) {
    s->script[0] = '\0';
    return distc__seterr(DISTC_EINVAL, "--key-dir %s: path too long",
                         log_dir);
  }
  FILE *f = fopen(s->script, "w");
  if (f == NULL)
    return distc__seterr(DISTC_EIO, "cannot write the job script %s: %s",
                         s->script, strerror(errno));
  write_script(f, sc, o, d, log_dir);
  if (fclose(f) != 0)
    return distc__seterr(DISTC_EIO, "cannot write the job script %s: %s",
                         s->script, strerror(errno));
  s->ids = calloc((size_t)o->jobs, sizeof *s->ids);
  if (s->ids == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  for (int j = 0; j < o->jobs; j++) {
    char *line = command(sc->submit, s->script, NULL, 0, " ");
    char out[256] = "";
    int rc = line ? run_capture(line, out, sizeof out) : -1;
    if (o->verbose && line)
      fprintf(stderr, "distc-launch: %s\n", line);
    free(line);
    /* sbatch --parsable: "ID[;cluster]"; qsub: "ID[.server]". */
    out[strcspn(out, ";\n ")] = '\0';
    if (rc != 0 || out[0] == '\0')
      return distc__seterr(DISTC_ESPAWN,
                           "%s refused job %d of %d (exit status %d); see "
                           "its message above, and the script %s",
                           sc->name, j + 1, o->jobs, rc, s->script);
    s->ids[s->nids] = strdup(out);
    if (s->ids[s->nids] == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    s->nids++;
  }
  fprintf(stderr, "distc-launch: submitted %d job%s with %s:", s->nids,
          s->nids > 1 ? "s" : "", sc->name);
  for (int j = 0; j < s->nids; j++)
    fprintf(stderr, " %s", s->ids[j]);
  fprintf(stderr, " (output in %s)\n", log_dir);
  return 0;
}

int distc__submit_tick(void *arg, bool ready, double waited_s,
                       double timeout_s) {
  distc__submit *s = arg;
  if (s->sched == NULL || s->nids == 0)
    return 0;
  /* Once the program runs, the queue is asked less often: a departure is
   * news, but not worth loading the controller every second. */
  if (ready && waited_s - s->asked < READY_POLL_S)
    return 0;
  s->asked = waited_s;
  counts c = {0};
  if (s->sched->states(s, &c) < 0)
    return 0; /* the tool hiccupped: ask again next time */
  char now[256];
  if (c.pending > 0)
    snprintf(now, sizeof now, "%d running, %d pending (%s)", c.running,
             c.pending, c.reason[0] ? c.reason : "queued");
  else
    snprintf(now, sizeof now, "%d running, %d ended", c.running, c.done);
  if (strcmp(now, s->shown) != 0) {
    fprintf(stderr, "distc-launch: jobs: %s\n", now);
    snprintf(s->shown, sizeof s->shown, "%s", now);
  }
  if (ready)
    return 0;
  /* Queue time does not count: the clock starts when none is pending. */
  if (c.pending > 0) {
    s->all_started = 0;
    return 0;
  }
  if (c.running == 0) {
    fprintf(stderr,
            "distc-launch: every job ended before enough workers joined; "
            "see their output in %s\n",
            s->log_dir);
    return -1;
  }
  if (s->all_started == 0)
    s->all_started = waited_s;
  if (waited_s - s->all_started > timeout_s) {
    fprintf(stderr,
            "distc-launch: the jobs have run for %g s and not enough "
            "workers joined; can the nodes reach this host? (see --listen "
            "ADDR:PORT, and the jobs' output in %s)\n",
            timeout_s, s->log_dir);
    return -1;
  }
  return 0;
}

void distc__submit_end(distc__submit *s, bool verbose) {
  if (s->sched != NULL && s->nids > 0) {
    const char *const words[] = {s->sched->cancel, NULL};
    char *line = command(words, NULL, s->ids, s->nids, " ");
    if (verbose && line)
      fprintf(stderr, "distc-launch: %s\n", line);
    if (line)
      run_capture(line, NULL, 0);
    free(line);
    /* Wait (bounded) until the scheduler has them all ended, so nothing
     * of ours is left in its queue when we return. */
    for (int i = 0; i < 100; i++) {
      counts c = {0};
      if (s->sched->states(s, &c) == 0 && c.pending + c.running == 0)
        break;
      struct timespec ts = {0, 100 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  for (int j = 0; j < s->nids; j++)
    free(s->ids[j]);
  free(s->ids);
  s->ids = NULL;
  s->nids = 0;
  if (s->script[0])
    unlink(s->script);
  s->script[0] = '\0';
}

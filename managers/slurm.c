/* slurm.c — the slurm manager's resource half: inside an allocation
 * (sbatch, salloc), the allocation's nodes and slots, from the environment
 * SLURM gives the job (slurm_layout.c).  Its launch half is srun.c: one
 * srun step, one proxy per node.
 *
 * From a login node (--nodes given) it first obtains an allocation itself
 * through libslurm, as salloc does: it submits the request, says "waiting
 * for allocation: job N pending (REASON)" while the job waits (queue time
 * never counts against --timeout, which starts with the workers), cancels
 * the job on SIGINT/SIGTERM/SIGHUP meanwhile, and then exports the job's
 * variables (SLURM_JOB_ID, SLURM_JOB_NODELIST, ...) as salloc does for its
 * shell, so the master and the srun step see the allocation.  The
 * allocation ends when this half is destroyed: when the run ends, on
 * Ctrl-C, and on every error.  A distc-launch killed with SIGKILL cannot
 * release it: its step ends (srun's stdin closes), and the job itself
 * ends at its time limit (--time, else the partition's).
 *
 * -p N spreads N workers over the allocation (an error if it holds fewer
 * slots); without -p one worker per slot, as srun would start tasks.  No
 * worker runs outside the allocation: the master's host is one of its nodes
 * in a batch script, and a login node in a salloc shell. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"
#include "slurm_api.h"
#include "slurm_layout.h"

/* How long the controller gets to answer a first connection. */
#define CTL_CHECK_S 5.0
#define POLL_PENDING_MS 500

typedef struct slurm_state {
  bool verbose, dry_run;
  /* login-node allocation: --nodes and the rest */
  int nodes, ntasks_per_node;
  char *partition, *account, *constraint;
  long time_min; /* --time in minutes; 0: the partition's */
  uint32_t job;  /* the job this half allocated (0: none) */
} slurm_state;

static const distc__option slurm_options[] = {
    {"nodes", true, "N",
     "from a login node: allocate N nodes first (salloc\nsemantics; "
     "released when the run ends)"},
    {"ntasks-per-node", true, "N", "with --nodes: workers per node (default 1)"},
    {"partition", true, "P", "with --nodes: the partition to allocate from"},
    {"time", true, "T", "with --nodes: time limit (minutes, H:MM:SS, D-H)"},
    {"account", true, "A", "with --nodes: the account to charge"},
    {"constraint", true, "C", "with --nodes: required node features"},
    {NULL, false, NULL, NULL},
};

static int positive(const char *name, const char *v, int *out) {
  char *end;
  errno = 0;
  long n = strtol(v ? v : "", &end, 10);
  if (!v || *end || errno || n < 1 || n > 65535)
    return distc__seterr(DISTC_EINVAL, "--%s wants a number >= 1, got '%s'; "
                                       "e.g. --%s 2",
                         name, v ? v : "", name);
  *out = (int)n;
  return 0;
}

/* SLURM's time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; minutes,
 * rounded up, or -1. */
static long parse_time(const char *v) {
  long d = 0, f[3] = {0, 0, 0};
  int nf = 0;
  const char *p = v;
  char *end;
  const char *dash = strchr(v, '-');
  if (dash) {
    d = strtol(v, &end, 10);
    if (end != dash || d < 0)
      return -1;
    p = dash + 1;
  }
  for (;;) {
    if (*p < '0' || *p > '9' || nf == 3)
      return -1;
    f[nf++] = strtol(p, &end, 10);
    if (*end == '\0')
      break;
    if (*end != ':')
      return -1;
    p = end + 1;
  }
  long secs;
  if (dash) /* D-H[:M[:S]] */
    secs = ((d * 24 + f[0]) * 60 + f[1]) * 60 + f[2];
  else if (nf == 1) /* M */
    secs = f[0] * 60;
  else if (nf == 2) /* M:S */
    secs = f[0] * 60 + f[1];
  else /* H:M:S */
    secs = (f[0] * 60 + f[1]) * 60 + f[2];
  return secs > 0 ? (secs + 59) / 60 : -1;
}

static int set_str(char **dst, const char *v) {
  free(*dst);
  if ((*dst = strdup(v ? v : "")) == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  return 0;
}

static int slurm_set_option(void *state, const char *name, const char *value) {
  slurm_state *s = state;
  if (strcmp(name, "verbose") == 0)
    s->verbose = true;
  else if (strcmp(name, "dry-run") == 0)
    s->dry_run = true;
  else if (strcmp(name, "nodes") == 0)
    return positive(name, value, &s->nodes);
  else if (strcmp(name, "ntasks-per-node") == 0)
    return positive(name, value, &s->ntasks_per_node);
  else if (strcmp(name, "partition") == 0)
    return set_str(&s->partition, value);
  else if (strcmp(name, "account") == 0)
    return set_str(&s->account, value);
  else if (strcmp(name, "constraint") == 0)
    return set_str(&s->constraint, value);
  else if (strcmp(name, "time") == 0) {
    if ((s->time_min = parse_time(value ? value : "")) < 0)
      return distc__seterr(DISTC_EINVAL,
                           "--time wants SLURM's time form (minutes, "
                           "H:MM:SS, D-H:MM), got '%s'; e.g. --time 30",
                           value ? value : "");
  }
  return 0; /* the other common settings */
}

/* ---- from a login node: the allocation ---- */

static const char *state_name(uint32_t st) {
  switch (st & JOB_STATE_BASE) {
  case JOB_PENDING: return "PENDING";
  case JOB_RUNNING: return "RUNNING";
  case JOB_SUSPENDED: return "SUSPENDED";
  case JOB_COMPLETE: return "COMPLETED";
  case JOB_CANCELLED: return "CANCELLED";
  case JOB_FAILED: return "FAILED";
  case JOB_TIMEOUT: return "TIMEOUT";
  case JOB_NODE_FAIL: return "NODE_FAIL";
  case JOB_PREEMPTED: return "PREEMPTED";
  case JOB_BOOT_FAIL: return "BOOT_FAIL";
  case JOB_DEADLINE: return "DEADLINE";
  case JOB_OOM: return "OUT_OF_MEMORY";
  default: return "UNKNOWN";
  }
}

static void set_env(const char *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_env(const char *k, const char *fmt, ...) {
  char v[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v, sizeof v, fmt, ap);
  va_end(ap);
  setenv(k, v, 1);
}

/* The job is running: its variables, as salloc gives its shell. */
static void export_job(const slurm_state *s, const slurm_job_info_t *j) {
  int tpn = s->ntasks_per_node > 0 ? s->ntasks_per_node : 1;
  set_env("SLURM_JOB_ID", "%u", j->job_id);
  set_env("SLURM_JOBID", "%u", j->job_id);
  set_env("SLURM_JOB_NODELIST", "%s", j->nodes);
  set_env("SLURM_NODELIST", "%s", j->nodes);
  set_env("SLURM_JOB_NUM_NODES", "%u", j->num_nodes);
  set_env("SLURM_NNODES", "%u", j->num_nodes);
  set_env("SLURM_NTASKS", "%u", j->num_nodes * (uint32_t)tpn);
  set_env("SLURM_NTASKS_PER_NODE", "%d", tpn);
  set_env("SLURM_TASKS_PER_NODE", "%d(x%u)", tpn, j->num_nodes);
  /* min_cpus asked tpn CPUs on each node */
  set_env("SLURM_JOB_CPUS_PER_NODE", "%d(x%u)", tpn, j->num_nodes);
  if (j->partition)
    set_env("SLURM_JOB_PARTITION", "%s", j->partition);
}

/* Submits the request and waits, as long as it takes, until it runs. */
static int allocate(slurm_state *s) {
  int rc;
  if ((rc = distc__slurm_load()) != 0 || (rc = distc__slurm_conf_check()) != 0 ||
      (rc = distc__slurm_ctl_check(CTL_CHECK_S)) != 0)
    return rc;
  slurm_init(NULL);
  int tpn = s->ntasks_per_node > 0 ? s->ntasks_per_node : 1;
  job_desc_msg_t d;
  slurm_init_job_desc_msg(&d);
  char cwd[PATH_MAX];
  d.name = "distc";
  d.user_id = getuid();
  d.group_id = getgid();
  d.min_nodes = d.max_nodes = (uint32_t)s->nodes;
  d.num_tasks = (uint32_t)(s->nodes * tpn);
  /* num_tasks alone reserves one CPU per node */
  d.min_cpus = (uint32_t)(s->nodes * tpn);
  d.ntasks_per_node = (uint16_t)tpn;
  d.partition = s->partition;
  d.account = s->account;
  d.features = s->constraint;
  if (s->time_min > 0)
    d.time_limit = (uint32_t)s->time_min;
  if (getcwd(cwd, sizeof cwd))
    d.work_dir = cwd;
  resource_allocation_response_msg_t *r = NULL;
  if (slurm_allocate_resources(&d, &r) != SLURM_SUCCESS || r == NULL)
    return distc__seterr(DISTC_ESPAWN,
                         "SLURM refused the allocation of %d node(s) x %d: %s",
                         s->nodes, tpn, slurm_strerror(slurm_get_errno()));
  s->job = r->job_id;
  slurm_free_resource_allocation_response_msg(r);

  /* Waiting has no time limit (salloc's), but an interrupt must not leave
   * the request queued: the signals are taken here until it runs. */
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  uint16_t said = 0xffff;
  int sig = 0;
  rc = 0;
  for (;;) {
    job_info_msg_t *m = NULL;
    if (slurm_load_job(&m, s->job, SHOW_DETAIL) != SLURM_SUCCESS || !m ||
        m->record_count == 0) {
      rc = distc__seterr(DISTC_ESPAWN, "SLURM lost job %u while it waited: %s",
                         s->job, slurm_strerror(slurm_get_errno()));
      if (m)
        slurm_free_job_info_msg(m);
      break;
    }
    slurm_job_info_t *j = &m->job_array[0];
    uint32_t st = j->job_state & JOB_STATE_BASE;
    if (st == JOB_RUNNING) {
      if (s->verbose || said != 0xffff)
        distc__log_print("job %u allocated: %s", s->job, j->nodes);
      export_job(s, j);
      slurm_free_job_info_msg(m);
      break;
    }
    if (st != JOB_PENDING) {
      rc = distc__seterr(DISTC_ESPAWN, "job %u ended before it ran: %s (%s)",
                         s->job, state_name(st),
                         slurm_job_reason_string(j->state_reason));
      slurm_free_job_info_msg(m);
      s->job = 0;
      break;
    }
    if (j->state_reason != said) {
      said = j->state_reason;
      distc__log_print("waiting for allocation: job %u pending (%s)", s->job,
                       slurm_job_reason_string(j->state_reason));
    }
    slurm_free_job_info_msg(m);
    struct timespec t = {0, POLL_PENDING_MS * 1000 * 1000};
    if ((sig = sigtimedwait(&set, NULL, &t)) > 0)
      break;
  }
  if (sig > 0) {
    slurm_kill_job(s->job, SIGKILL, 0);
    distc__log_print("job %u cancelled (%s while it waited)", s->job,
                     strsignal(sig));
    s->job = 0;
    rc = distc__seterr(DISTC_ESPAWN, "interrupted while waiting for the "
                                     "allocation; job cancelled");
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (sig > 0)
    raise(sig); /* what it meant, now that nothing is left queued */
  return rc;
}

/* Inside an allocation: SLURM_JOB_ID with a node list.  (srun's tasks also
 * have both: a distc-launch run by srun would see its own step's job.) */
static bool slurm_detect(void) {
  const char *id = getenv("SLURM_JOB_ID");
  const char *list = getenv("SLURM_JOB_NODELIST");
  if (list == NULL || list[0] == '\0')
    list = getenv("SLURM_NODELIST");
  return id != NULL && id[0] != '\0' && list != NULL && list[0] != '\0';
}

static int slurm_nodes(void *state, int here, distc_host **hosts,
                       int *nhosts) {
  slurm_state *s = state;
  distc__slurm_layout l;
  if (s->nodes == 0 && (s->ntasks_per_node || s->partition || s->time_min ||
                        s->account || s->constraint))
    return distc__seterr(DISTC_EINVAL,
                         "--ntasks-per-node, --partition, --time, --account "
                         "and --constraint go with --nodes N (allocating "
                         "from a login node)");
  if (s->nodes > 0 && s->dry_run) {
    distc__log_print("would allocate %d node(s) x %d task(s)%s%s%s%s, then:",
                     s->nodes, s->ntasks_per_node ? s->ntasks_per_node : 1,
                     s->partition ? " in partition " : "",
                     s->partition ? s->partition : "",
                     s->account ? " for account " : "",
                     s->account ? s->account : "");
    return distc__seterr(DISTC_EINVAL, "--dry-run with --nodes: the nodes are "
                                       "known only once allocated; nothing "
                                       "was allocated");
  }
  int rc;
  if (s->nodes > 0 && (rc = allocate(s)) != 0)
    return rc;
  /* here: the workers -p asked for (0 without -p): spread them over the
   * allocation, since none of them is meant for this host alone. */
  if ((rc = distc__slurm_layout_get(NULL, here, &l)) != 0)
    return rc;
  if (s->verbose) {
    char held[512];
    size_t k = 0;
    held[0] = '\0';
    for (int i = 0; i < l.nhosts && k < sizeof held; i++)
      k += (size_t)snprintf(held + k, sizeof held - k, "%s%s:%d/%d",
                            i ? " " : "", l.hosts[i], l.workers[i], l.held[i]);
    distc__log_print("SLURM job %s on %s (SLURM_JOB_ID, SLURM_JOB_NODELIST): "
                     "%d slots from %s=%s; workers/slots per node: %s",
                     l.job_id, l.nodelist, l.total_held, l.slots_from,
                     getenv(l.slots_from) ? getenv(l.slots_from) : "?", held);
  }
  int n = 0;
  distc_host *out = calloc((size_t)l.nhosts, sizeof *out);
  if (out == NULL) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory listing the hosts");
    goto free_layout;
  }
  for (int i = 0; i < l.nhosts; i++) {
    if (l.workers[i] == 0)
      continue; /* -p N smaller than the allocation */
    out[n] = (distc_host){.name = l.hosts[i], .slots = l.workers[i]};
    l.hosts[i] = NULL; /* moved */
    n++;
  }
  *hosts = out;
  *nhosts = n;
free_layout:
  distc__slurm_layout_free(&l);
  return rc;
}

/* Releases an allocation of ours: the run is over (or never started). */
static void slurm_destroy(void *state) {
  slurm_state *s = state;
  if (s->job != 0) {
    if (slurm_complete_job(s->job, 0) != SLURM_SUCCESS)
      slurm_kill_job(s->job, SIGKILL, 0);
    if (s->verbose)
      distc__log_print("job %u released", s->job);
    s->job = 0;
  }
  free(s->partition);
  free(s->account);
  free(s->constraint);
}

const distc__resource_ops distc__resource_slurm = {
    .name = "slurm",
    .title = "a SLURM allocation's nodes (sbatch, salloc, or --nodes)",
    .options = slurm_options,
    .state_size = sizeof(slurm_state),
    .remote = true,
    .set_option = slurm_set_option,
    .detect = slurm_detect,
    .nodes = slurm_nodes,
    .destroy = slurm_destroy,
};

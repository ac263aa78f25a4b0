/* srun.c — the slurm manager's launch half: ONE srun step for all workers,
 * one proxy per node (proxy.c: the program itself in its proxy role), which
 * starts that node's workers and stays their parent.
 *
 * The step is
 *   srun --jobid=J --nodes=K --ntasks=K --ntasks-per-node=1 --nodelist=LIST
 *        --kill-on-bad-exit=1 --overlap --input=all --mpi=none
 *        /bin/sh -c CHECK distc-proxy DIR PROGRAM ARGS
 * (CHECK: check_sh below)
 * --overlap lets it share the job's CPUs with the batch step and with a
 * later step (distc_addprocs) on SLURM 22.05, where steps are exclusive
 * otherwise; a step takes all of the job's CPUs on its nodes by default, so
 * the proxy's workers may use them all.  --input=all hands srun's stdin to
 * every proxy: the configuration, the secret among it, travels there, never
 * on a command line or in the environment, and its end of file (this
 * process closing it, or dying) stops every worker on every node.  Each
 * node has its own proxy link (proxy_link.c), as an SSH host has, carried
 * over the shared stdin and stdout with every line prefixed "@NODE "
 * (DISTC_PROXY_MUX=SLURMD_NODENAME, proxy.h).  srun's stderr is the user's:
 * SLURM's own messages (a node that cannot run the program) reach them as
 * SLURM wrote them.
 *
 * The master's address: --master-addr, else this host's address on the
 * route to the first node (its name resolved here, else its NodeAddr from
 * the controller), since a node may reach this host on one network only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"
#include "proxy.h"
#include "slurm_api.h"
#include "slurm_layout.h"

extern char **environ;

#define DEFAULT_TIMEOUT_S 60.0
#define PROBE_MS 5000
/* After the proxies' stdin closes they stop their workers (TERM, then KILL
 * after DISTC_PROXY_TERM_GRACE_MS) and exit; srun ends with them. */
#define CLOSE_GRACE_S 2.0
#define TERM_GRACE_S 2.0

typedef struct srun_node {
  distc__plink pl; /* label: the node's name */
  int blas;
} srun_node;

typedef struct srun_state {
  double timeout_s;
  bool verbose, dry_run;
  char *master_addr; /* --master-addr */
  pid_t pid;         /* srun; 0: none */
  bool srun_done;
  int srun_status;
  int in_fd, out_fd; /* srun's stdin (ours to write), stdout (to read) */
  /* out_fd reached its end; it now holds a descriptor that never polls
   * readable, since our caller may poll the number event_fd gave it until
   * destroy */
  bool out_eof;
  bool job_checked; /* after an unexpected end: asked if the job is over */
  bool closing;      /* we closed its stdin: its end is expected */
  bool stopping;     /* workers were signalled: their ends are expected */
  char buf[DISTC_PROXY_LINE_MAX];
  size_t have;
  srun_node *nodes;
  int nnodes;
  int first_index, count;
  /* what the links learnt of each worker (index - first_index), until
   * reap hands it on */
  pid_t *wpid;
  int *wstatus;
  bool *wexited, *wreported;
  int nexited;
} srun_state;

static const distc__option srun_options[] = {
    {"master-addr", true, "A",
     "address of this host the workers dial (default:\nthis host's address "
     "on the route to the nodes)"},
    {NULL, false, NULL, NULL},
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int srun_set_option(void *state, const char *name, const char *value) {
  srun_state *s = state;
  if (strcmp(name, "timeout") == 0) {
    s->timeout_s = atof(value);
  } else if (strcmp(name, "verbose") == 0) {
    s->verbose = true;
  } else if (strcmp(name, "dry-run") == 0) {
    s->dry_run = true;
  } else if (strcmp(name, "master-addr") == 0) {
    if (value == NULL || value[0] == '\0' || strchr(value, ':') != NULL)
      return distc__seterr(DISTC_EINVAL,
                           "--master-addr wants a host name or address of "
                           "this host, got '%s'; e.g. --master-addr "
                           "10.0.0.1",
                           value ? value : "");
    free(s->master_addr);
    if ((s->master_addr = strdup(value)) == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  return 0;
}

/* ---- the master's address ---- */

/* The node's NodeAddr, asked of the controller (the node names of a cluster
 * need not resolve on its login nodes).  Only after checking that libslurm
 * finds its configuration: it would exit() the process otherwise. */
static bool node_addr(const char *node, char *out, size_t cap) {
  if (distc__slurm_load() != 0 || distc__slurm_conf_check() != 0)
    return false;
  slurm_init(NULL);
  node_info_msg_t *m = NULL;
  bool ok = false;
  char name[sizeof ((distc__plink *)0)->label];
  snprintf(name, sizeof name, "%s", node);
  if (slurm_load_node_single(&m, name, SHOW_ALL) == SLURM_SUCCESS && m) {
    if (m->record_count > 0 && m->node_array[0].node_addr)
      ok = snprintf(out, cap, "%s", m->node_array[0].node_addr) < (int)cap;
    slurm_free_node_info_msg(m);
  }
  return ok;
}

/* Chooses the host part of the master's address; *why says how (for -v). */
static int master_host(srun_state *s, char *out, size_t cap, const char **why) {
  if (s->master_addr) {
    snprintf(out, cap, "%s", s->master_addr);
    *why = "--master-addr";
    return 0;
  }
  for (int i = 0; i < s->nnodes; i++)
    if (distc__route_to_host(s->nodes[i].pl.label, out, cap)) {
      *why = "route to the first node";
      return 0;
    }
  char addr[256];
  for (int i = 0; i < s->nnodes; i++)
    if (node_addr(s->nodes[i].pl.label, addr, sizeof addr) &&
        distc__route_to_host(addr, out, cap)) {
      *why = "route to the first node's NodeAddr";
      return 0;
    }
  return distc__seterr(DISTC_EINVAL,
                       "cannot tell which address of this host the nodes "
                       "(%s...) reach: their names do not resolve here and "
                       "the controller gave no NodeAddr; give --master-addr "
                       "with an address of this host they can reach",
                       s->nodes[0].pl.label);
}

/* ---- the proxies' links, over srun's shared stdin and stdout ---- */

static srun_node *find_node(srun_state *s, const char *name) {
  for (int i = 0; i < s->nnodes; i++)
    if (strcmp(s->nodes[i].pl.label, name) == 0)
      return &s->nodes[i];
  return NULL;
}

static void on_worker_exit(void *arg, int index, long pid, int status) {
  srun_state *s = arg;
  int k = index - s->first_index;
  if (k < 0 || k >= s->count || s->wexited[k])
    return;
  /* A worker that fails on its own is named with its node: the master
   * only learns that a connection ended. */
  if (!s->stopping && !s->closing && status != -1 &&
      (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status)))) {
    const srun_node *n = NULL;
    for (int i = 0; i < s->nnodes; i++)
      if (index >= s->nodes[i].pl.first &&
          index < s->nodes[i].pl.first + s->nodes[i].pl.count)
        n = &s->nodes[i];
    if (WIFSIGNALED(status))
      distc__log_print("worker %d (pid %ld on %s) was killed by signal %d",
                       index, pid, n ? n->pl.label : "?", WTERMSIG(status));
    else
      distc__log_print("worker %d (pid %ld on %s) exited with status %d",
                       index, pid, n ? n->pl.label : "?", WEXITSTATUS(status));
  }
  s->wexited[k] = true;
  s->wpid[k] = (pid_t)pid;
  s->wstatus[k] = status;
  s->nexited++;
}

/* "@NODE line" to that node's link. */
static void handle_line(srun_state *s, char *line) {
  char *sp = line[0] == '@' ? strchr(line, ' ') : NULL;
  if (sp == NULL)
    return; /* not ours: nothing else writes to srun's stdout */
  *sp = '\0';
  srun_node *n = find_node(s, line + 1);
  if (n == NULL)
    return;
  size_t len = strlen(sp + 1);
  sp[1 + len] = '\n'; /* the buffer had the newline there */
  distc__plink_input(&n->pl, sp + 1, len + 1);
}

static int write_all(int fd, const char *p, size_t n);

/* What the links queued for their proxies, each line prefixed with its
 * node, onto srun's stdin. */
static int mux_flush(srun_state *s) {
  int rc = 0;
  for (int i = 0; i < s->nnodes; i++) {
    distc__plink *pl = &s->nodes[i].pl;
    char *p = pl->out, *end = pl->out + pl->out_len;
    while (rc == 0 && p < end) {
      char *nl = memchr(p, '\n', (size_t)(end - p));
      size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
      char *line = NULL;
      int k = asprintf(&line, "@%s %.*s", pl->label, (int)n, p);
      if (k < 0)
        return distc__seterr(DISTC_ENOMEM, "out of memory");
      if (s->in_fd < 0 || write_all(s->in_fd, line, (size_t)k) != 0)
        rc = DISTC_EIO;
      explicit_bzero(line, (size_t)k); /* the configuration holds the secret */
      free(line);
      p += n;
    }
    explicit_bzero(pl->out, pl->out_len);
    pl->out_len = 0;
  }
  return rc;
}

/* Reads what srun's stdout holds now; false at its end. */
static bool read_reports(srun_state *s) {
  for (;;) {
    ssize_t r = read(s->out_fd, s->buf + s->have, sizeof s->buf - 1 - s->have);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return errno == EAGAIN;
    if (r == 0)
      return false;
    s->have += (size_t)r;
    char *nl;
    while ((nl = memchr(s->buf, '\n', s->have)) != NULL) {
      *nl = '\0';
      handle_line(s, s->buf); /* may put the newline back */
      size_t used = (size_t)(nl + 1 - s->buf);
      memmove(s->buf, nl + 1, s->have - used);
      s->have -= used;
    }
    if (s->have == sizeof s->buf - 1)
      s->have = 0; /* an overlong line: not the protocol's */
  }
}

static void reap_srun(srun_state *s, bool block) {
  if (s->pid <= 0 || s->srun_done)
    return;
  int status;
  pid_t r;
  while ((r = waitpid(s->pid, &status, block ? 0 : WNOHANG)) < 0 &&
         errno == EINTR)
    ;
  if (r == s->pid || (r < 0 && errno == ECHILD)) {
    s->srun_done = true;
    s->srun_status = r == s->pid ? status : -1;
  }
}

static void out_ended(srun_state *s) {
  if (s->out_eof)
    return;
  s->out_eof = true;
  int quiet = eventfd(0, EFD_CLOEXEC);
  if (quiet >= 0) {
    dup3(quiet, s->out_fd, O_CLOEXEC);
    close(quiet);
  }
}

/* Reads what is there; at the end of srun's stdout, out_ended. */
static void drain_out(srun_state *s) {
  if (!s->out_eof && !read_reports(s))
    out_ended(s);
}

static void close_out(srun_state *s) {
  if (s->out_eof)
    return;
  /* srun has ended: what is left in the pipe is all there is */
  fcntl(s->out_fd, F_SETFL, fcntl(s->out_fd, F_GETFL) | O_NONBLOCK);
  drain_out(s);
  out_ended(s);
}

/* srun has ended: what it still had to say, then every link is gone (its
 * workers still running are reported ended, status unknown). */
static void step_gone(srun_state *s) {
  close_out(s);
  for (int i = 0; i < s->nnodes; i++)
    if (s->nodes[i].pl.phase != DISTC__P_DONE &&
        s->nodes[i].pl.phase != DISTC__P_FAILED)
      distc__plink_gone(&s->nodes[i].pl);
    else
      distc__plink_lose_workers(&s->nodes[i].pl);
}

/* Waits up to secs for srun to end, reading its reports meanwhile. */
static void wait_srun(srun_state *s, double secs) {
  double end = now_s() + secs;
  while (!s->srun_done && now_s() < end) {
    struct pollfd pf = {s->out_fd, POLLIN, 0};
    if (poll(&pf, 1, 20) > 0)
      drain_out(s);
    reap_srun(s, false);
  }
}

static void close_in(srun_state *s) {
  s->closing = true;
  if (s->in_fd >= 0) {
    close(s->in_fd);
    s->in_fd = -1;
  }
}

/* Ends the step: stdin closed (every proxy stops its workers and exits),
 * then SIGTERM to srun (which passes it to the tasks), then SIGKILL. */
static void end_step(srun_state *s) {
  if (s->pid <= 0)
    return;
  close_in(s);
  wait_srun(s, CLOSE_GRACE_S);
  if (!s->srun_done) {
    kill(s->pid, SIGTERM);
    wait_srun(s, TERM_GRACE_S);
  }
  if (!s->srun_done) {
    kill(s->pid, SIGKILL);
    reap_srun(s, true);
  }
  step_gone(s);
}

/* ---- launch ---- */

typedef struct strv {
  char **v;
  int n, cap;
} strv;

static int strv_add(strv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int strv_add(strv *a, const char *fmt, ...) {
  if (a->n + 2 > a->cap) {
    int cap = a->cap ? a->cap * 2 : 32;
    char **v = realloc(a->v, (size_t)cap * sizeof *v);
    if (v == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    a->v = v;
    a->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  int r = vasprintf(&a->v[a->n], fmt, ap);
  va_end(ap);
  if (r < 0)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  a->v[++a->n] = NULL;
  return 0;
}

static void strv_free(strv *a) {
  for (int i = 0; i < a->n; i++)
    free(a->v[i]);
  free(a->v);
  *a = (strv){0};
}

/* A write to a pipe whose reader is gone must be an error, not a SIGPIPE
 * that ends the process (the launcher ignores it; a master calling
 * distc_addprocs may not): blocked, and a pending one taken back. */
static int write_all(int fd, const char *p, size_t n) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  int rc = 0;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      if (errno == EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
      }
      rc = -1;
      break;
    }
    p += w;
    n -= (size_t)w;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* The allocation's CPUs on node name (SLURM_JOB_CPUS_PER_NODE), or 0. */
static int job_cpus(const distc__slurm_layout *l, const char *name) {
  for (int i = 0; l && i < l->nhosts; i++)
    if (strcmp(l->hosts[i], name) == 0)
      return l->cpus[i];
  return 0;
}

/* The nodes of the step and the launch indices of each, in the order of
 * spec->hosts; BLAS threads from the job's CPUs on each node. */
static int plan_nodes(srun_state *s, const distc_launch_spec *spec) {
  s->nodes = calloc((size_t)spec->nhosts + 1, sizeof *s->nodes);
  if (s->nodes == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  distc__slurm_layout l;
  bool have_layout = distc__slurm_layout_get(NULL, 0, &l) == 0;
  int left = spec->count, index = spec->first_index;
  for (int i = 0; i < spec->nhosts && left > 0; i++) {
    const distc_host *h = &spec->hosts[i];
    if (h->here || h->slots <= 0)
      continue;
    int c = h->slots < left ? h->slots : left;
    srun_node *n = &s->nodes[s->nnodes++];
    snprintf(n->pl.label, sizeof n->pl.label, "%s", h->name);
    n->pl.first = index;
    n->pl.count = c;
    int cpus = job_cpus(have_layout ? &l : NULL, h->name);
    n->blas = !spec->blas_auto && spec->blas_threads > 0
                  ? spec->blas_threads
                  : distc__blas_threads(cpus > 0 ? cpus : c, c);
    index += c;
    left -= c;
  }
  if (have_layout)
    distc__slurm_layout_free(&l);
  if (left > 0)
    return distc__seterr(DISTC_EINVAL,
                         "the SLURM allocation's nodes hold no room for %d "
                         "of the %d workers",
                         left, spec->count);
  return 0;
}

/* What each task runs first: into the directory, a check that the program
 * is there, then the program (as the proxy).  A node that lacks either
 * says so on its own line ("fail nodir|noexe|noexec", proxy.h), so the
 * error names that node even though --kill-on-bad-exit ends the others
 * before they can answer.  $1: directory ("" to stay), $2: program. */
static const char check_sh[] =
    "p=\"@$SLURMD_NODENAME\"; d=$1; x=$2; shift 2; "
    "if [ -n \"$d\" ]; then cd \"$d\" 2>/dev/null || "
    "{ echo \"$p fail nodir\"; exit 1; }; fi; "
    "case $x in */*) [ -f \"$x\" ] || { echo \"$p fail noexe\"; exit 1; }; "
    "[ -x \"$x\" ] || { echo \"$p fail noexec\"; exit 1; } ;; "
    "*) command -v \"$x\" >/dev/null 2>&1 || "
    "{ echo \"$p fail noexe\"; exit 1; } ;; esac; exec \"$x\" \"$@\"";

static int build_argv(const srun_state *s, const distc_launch_spec *spec,
                      const char *job, strv *a) {
  int rc = strv_add(a, "srun");
  if (!rc && job)
    rc = strv_add(a, "--jobid=%s", job);
  if (!rc)
    rc = strv_add(a, "--nodes=%d", s->nnodes);
  if (!rc)
    rc = strv_add(a, "--ntasks=%d", s->nnodes);
  if (!rc)
    rc = strv_add(a, "--ntasks-per-node=1");
  char *list = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&list, &len);
  if (f == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  for (int i = 0; i < s->nnodes; i++)
    fprintf(f, "%s%s", i ? "," : "", s->nodes[i].pl.label);
  fclose(f);
  if (!rc)
    rc = strv_add(a, "--nodelist=%s", list);
  free(list);
  if (!rc)
    rc = strv_add(a, "--kill-on-bad-exit=1");
  if (!rc)
    rc = strv_add(a, "--overlap");
  if (!rc)
    rc = strv_add(a, "--input=all");
  if (!rc)
    rc = strv_add(a, "--mpi=none");
  if (!rc)
    rc = strv_add(a, "/bin/sh");
  if (!rc)
    rc = strv_add(a, "-c");
  if (!rc)
    rc = strv_add(a, "%s", check_sh);
  if (!rc)
    rc = strv_add(a, "distc-proxy");
  if (!rc)
    rc = strv_add(a, "%s", spec->dir ? spec->dir : "");
  if (!rc)
    rc = strv_add(a, "%s", spec->exename);
  for (int i = 1; !rc && spec->argv[i]; i++)
    rc = strv_add(a, "%s", spec->argv[i]);
  return rc;
}

/* srun's environment, which it exports to the proxies and they to the
 * workers: ours, --env's entries, and the proxy's role. */
static int build_env(const srun_state *s, const distc_launch_spec *spec,
                     strv *e) {
  int rc = 0;
  for (char **p = environ; !rc && *p; p++) {
    if (strncmp(*p, "DISTC_", 6) == 0)
      continue; /* the launcher's and the master's contracts, not theirs */
    bool replaced = false;
    size_t k = distc__env_key_len(*p);
    for (int i = 0; spec->env && spec->env[i]; i++)
      if (distc__env_key_len(spec->env[i]) == k &&
          strncmp(spec->env[i], *p, k) == 0)
        replaced = true;
    if (!replaced)
      rc = strv_add(e, "%s", *p);
  }
  for (int i = 0; !rc && spec->env && spec->env[i]; i++)
    rc = strv_add(e, "%s", spec->env[i]);
  if (!rc)
    rc = strv_add(e, "%s=%s", DISTC_ENV_ROLE, DISTC_ROLE_PROXY);
  if (!rc)
    rc = strv_add(e, "%s=%g", DISTC_ENV_TIMEOUT, s->timeout_s);
  if (!rc)
    rc = strv_add(e, "%s=SLURMD_NODENAME", DISTC_ENV_PROXY_MUX);
  return rc;
}

static void print_command(const strv *a) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL)
    return;
  for (int i = 0; i < a->n; i++) {
    if (i)
      fputc(' ', f);
    distc__shell_quote(f, a->v[i]);
  }
  if (fclose(f) == 0)
    distc__log_print("%s", text);
  free(text);
}

static int spawn_srun(srun_state *s, const strv *a, const strv *e) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  int rc = 0;
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    rc = distc__seterr(DISTC_ESPAWN, "pipe: %s", strerror(errno));
    goto close_pipes;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  /* Its own process group: a Ctrl-C at the terminal reaches the launcher
   * and the master, and the step ends the way this file says, not by
   * srun's own two-Ctrl-C rule. */
  sigset_t none, dfl;
  sigemptyset(&none);
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGPIPE);
  sigaddset(&dfl, SIGINT);
  sigaddset(&dfl, SIGTERM);
  sigaddset(&dfl, SIGHUP);
  sigaddset(&dfl, SIGCHLD);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &dfl);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                    POSIX_SPAWN_SETSIGDEF);
  int err = posix_spawnp(&s->pid, "srun", &fa, &at, a->v, e->v);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (err != 0) {
    s->pid = 0;
    rc = distc__seterr(DISTC_ESPAWN,
                       "cannot run srun: %s (the slurm manager needs SLURM's "
                       "srun on PATH: install slurm-client)",
                       strerror(err));
    goto close_pipes;
  }
  s->in_fd = in[1];
  s->out_fd = out[0];
  in[1] = out[0] = -1;
  fcntl(s->out_fd, F_SETFL, fcntl(s->out_fd, F_GETFL) | O_NONBLOCK);
close_pipes:
  for (int i = 0; i < 2; i++) {
    if (in[i] >= 0)
      close(in[i]);
    if (out[i] >= 0)
      close(out[i]);
  }
  return rc;
}

static const char *how_ended(const srun_state *s, char *buf, size_t cap) {
  if (s->srun_done && s->srun_status != -1 && WIFEXITED(s->srun_status))
    snprintf(buf, cap, "srun exited with status %d",
             WEXITSTATUS(s->srun_status));
  else if (s->srun_done && s->srun_status != -1 && WIFSIGNALED(s->srun_status))
    snprintf(buf, cap, "srun was killed by signal %d",
             WTERMSIG(s->srun_status));
  else
    snprintf(buf, cap, "srun ended");
  return buf;
}

/* Until every proxy said hello (it reached the master; it starts its
 * workers as soon as it reads its start line, already sent), a proxy
 * failed, srun ended, or the timeout. */
static int await_proxies(srun_state *s, const char *exe) {
  double deadline = now_s() + s->timeout_s;
  for (;;) {
    int ready = 0;
    for (int i = 0; i < s->nnodes; i++) {
      distc__plink *pl = &s->nodes[i].pl;
      if (pl->phase == DISTC__P_FAILED)
        return distc__seterr(DISTC_ESPAWN, "%s",
                             pl->error ? pl->error : pl->label);
      ready += pl->phase == DISTC__P_HELLO || pl->phase == DISTC__P_RUNNING;
    }
    if (ready == s->nnodes)
      return 0;
    reap_srun(s, false);
    if (s->srun_done || s->out_eof) {
      close_out(s);
      char missing[512] = "", how[64];
      size_t k = 0;
      for (int i = 0; i < s->nnodes && k < sizeof missing; i++) {
        distc__plink *pl = &s->nodes[i].pl;
        if (pl->phase == DISTC__P_FAILED && pl->error)
          return distc__seterr(DISTC_ESPAWN, "%s", pl->error);
        if (pl->phase != DISTC__P_HELLO && pl->phase != DISTC__P_RUNNING)
          k += (size_t)snprintf(missing + k, sizeof missing - k, "%s%s",
                                k ? ", " : "", pl->label);
      }
      return distc__seterr(DISTC_ESPAWN,
                           "the program did not start on %s: %s (SLURM's "
                           "messages are above); is %s on every node, "
                           "executable there, and linked with libdistc?",
                           missing, how_ended(s, how, sizeof how), exe);
    }
    double left = deadline - now_s();
    if (left <= 0)
      return distc__seterr(DISTC_ETIMEDOUT,
                           "the proxies did not all start within %g s (srun "
                           "may wait for resources: see squeue); raise "
                           "--timeout if the nodes are slow",
                           s->timeout_s);
    struct pollfd pf = {s->out_fd, POLLIN, 0};
    int ms = left > 0.1 ? 100 : (int)(left * 1000) + 1;
    if (poll(&pf, 1, ms) > 0)
      drain_out(s);
  }
}

static int srun_launch(void *state, const distc_launch_spec *spec) {
  srun_state *s = state;
  strv argv = {0}, env = {0};
  int rc;

  if (s->timeout_s <= 0)
    s->timeout_s = DEFAULT_TIMEOUT_S;
  s->in_fd = s->out_fd = -1;
  s->first_index = spec->first_index;
  s->count = spec->count;
  if ((rc = plan_nodes(s, spec)) != 0)
    return rc;
  s->wpid = calloc((size_t)spec->count + 1, sizeof *s->wpid);
  s->wstatus = calloc((size_t)spec->count + 1, sizeof *s->wstatus);
  s->wexited = calloc((size_t)spec->count + 1, sizeof *s->wexited);
  s->wreported = calloc((size_t)spec->count + 1, sizeof *s->wreported);
  if (!s->wpid || !s->wstatus || !s->wexited || !s->wreported)
    return distc__seterr(DISTC_ENOMEM, "out of memory");

  /* "host:port" from the start-up path; the host part is ours to choose. */
  const char *colon = strrchr(spec->master_addr, ':');
  if (colon == NULL)
    return distc__seterr(DISTC_EINVAL, "bad master address '%s'",
                         spec->master_addr);
  char host[256], master[320];
  const char *why = "";
  if ((rc = master_host(s, host, sizeof host, &why)) != 0)
    return rc;
  snprintf(master, sizeof master, strchr(host, ':') ? "[%s]%s" : "%s%s", host,
           colon);

  const char *job = getenv("SLURM_JOB_ID");
  if ((rc = build_argv(s, spec, job, &argv)) != 0 ||
      (rc = build_env(s, spec, &env)) != 0)
    goto out;
  if (s->verbose || s->dry_run) {
    distc__log_print("workers dial %s (%s)", master, why);
    print_command(&argv);
    for (int i = 0; i < s->nnodes; i++)
      distc__log_print("[%s] workers %d..%d, %d BLAS/OpenMP threads each",
                       s->nodes[i].pl.label, s->nodes[i].pl.first,
                       s->nodes[i].pl.first + s->nodes[i].pl.count - 1,
                       s->nodes[i].blas);
  }
  if (s->dry_run)
    goto out;

  if ((rc = spawn_srun(s, &argv, &env)) != 0)
    goto out;
  /* Every proxy's configuration and its start line at once: the start
   * happens on each node as soon as its proxy has said hello. */
  for (int i = 0; i < s->nnodes && rc == 0; i++) {
    srun_node *n = &s->nodes[i];
    n->pl.verbose = s->verbose;
    n->pl.exe = spec->exename;
    n->pl.dir = spec->dir;
    n->pl.hint_reach = "; give --master-addr with an address of this host "
                       "the nodes reach";
    n->pl.on_exit = on_worker_exit;
    n->pl.arg = s;
    distc__plink_config cfg = {.master = master, .secret = spec->secret,
                               .exe = spec->exename, .blas = n->blas,
                               .probe_ms = PROBE_MS};
    int first = n->pl.first, count = n->pl.count;
    if (distc__plink_config_send(&n->pl, &cfg) != 0 ||
        distc__plink_start(&n->pl, first, count) != 0)
      rc = distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  if (rc == 0 && mux_flush(s) != 0) {
    reap_srun(s, false);
    rc = distc__seterr(DISTC_ESPAWN, "srun ended before it read the "
                                     "configuration (its messages are "
                                     "above)");
  }
  if (rc == 0)
    rc = await_proxies(s, spec->exename);
  if (rc != 0) {
    end_step(s);
    goto out;
  }
  for (int i = 0; i < s->nnodes; i++)
    s->nodes[i].pl.reporting = true;
out:
  strv_free(&argv);
  strv_free(&env);
  return rc;
}

/* ---- after launch ---- */

static int srun_signal(void *state, int sig) {
  srun_state *s = state;
  if (s->pid <= 0 || s->in_fd < 0)
    return 0;
  s->stopping = true;
  for (int i = 0; i < s->nnodes; i++)
    distc__plink_signal(&s->nodes[i].pl, sig);
  mux_flush(s); /* an error: srun is gone, and reap says so */
  if (sig == SIGKILL && !s->srun_done) {
    /* nothing may linger: end the step too (srun passes SIGTERM on to
     * the proxies, which then kill what is left) */
    close_in(s);
    kill(s->pid, SIGTERM);
  }
  return 0;
}

/* Whether the controller says job id has ended (or no longer knows it).
 * Asked only once srun has ended on its own, so a controller that cannot be
 * reached costs its MessageTimeout then, never the running program. */
static bool job_over(const char *id) {
  if (id == NULL || distc__slurm_load() != 0 || distc__slurm_conf_check() != 0)
    return false;
  slurm_init(NULL);
  job_info_msg_t *m = NULL;
  char *end;
  unsigned long n = strtoul(id, &end, 10);
  if (*end != '\0')
    return false;
  if (slurm_load_job(&m, (uint32_t)n, SHOW_DETAIL) != SLURM_SUCCESS)
    return slurm_get_errno() == ESLURM_INVALID_JOB_ID;
  bool over = true;
  for (uint32_t i = 0; i < m->record_count; i++) {
    uint32_t st = m->job_array[i].job_state & JOB_STATE_BASE;
    if (st == JOB_RUNNING || st == JOB_PENDING || st == JOB_SUSPENDED)
      over = false;
  }
  slurm_free_job_info_msg(m);
  return over;
}

static int srun_reap(void *state, distc_exit_cb cb, void *arg) {
  srun_state *s = state;
  if (s->pid <= 0)
    return 0;
  drain_out(s);
  reap_srun(s, false);
  if (s->srun_done && !s->job_checked) {
    close_out(s);
    s->job_checked = true;
    /* srun ended though we neither closed its stdin nor signalled: its
     * workers may all have ended on their own, or SLURM ended the step
     * because the job is over (scancel, time limit, a node lost). */
    const char *job = getenv("SLURM_JOB_ID");
    if (!s->closing && !s->stopping && job_over(job)) {
      char how[64];
      distc__log_print("the srun step ended (%s): SLURM job %s is over "
                       "(cancelled or out of time)",
                       how_ended(s, how, sizeof how), job);
      /* Inside a batch script SLURM ends the master with the job; from a
       * salloc shell or a login node nothing else would: distc-launch
       * stops the run as if terminated (its supervision passes SIGTERM to
       * the master and exits non-zero).  A master's own distc_addprocs
       * only loses those workers. */
      if (strcmp(program_invocation_short_name, "distc-launch") == 0)
        kill(getpid(), SIGTERM);
    }
    step_gone(s);
  }
  for (int k = 0; k < s->count; k++)
    if (s->wexited[k] && !s->wreported[k]) {
      s->wreported[k] = true;
      if (cb)
        cb(arg, s->first_index + k, s->wpid[k], s->wstatus[k]);
    }
  return s->count - s->nexited;
}

static int srun_kill_one(void *state, int index, int sig) {
  srun_state *s = state;
  if (s->pid <= 0 || s->in_fd < 0)
    return DISTC_ENOENT;
  for (int i = 0; i < s->nnodes; i++)
    if (distc__plink_has(&s->nodes[i].pl, index)) {
      int rc = distc__plink_kill_one(&s->nodes[i].pl, index, sig);
      if (rc == 0)
        mux_flush(s); /* an error: srun is gone, and reap says so */
      return rc;
    }
  return DISTC_ENOENT;
}

static const char *srun_host_of(void *state, int index) {
  srun_state *s = state;
  for (int i = 0; i < s->nnodes; i++)
    if (distc__plink_has(&s->nodes[i].pl, index))
      return s->nodes[i].pl.label;
  return NULL;
}

static int srun_event_fd(void *state) {
  srun_state *s = state;
  return s->pid > 0 ? s->out_fd : -1; /* valid until destroy */
}

static void srun_destroy(void *state) {
  srun_state *s = state;
  if (s->pid > 0) {
    end_step(s);
    if (s->in_fd >= 0)
      close(s->in_fd);
    if (s->out_fd >= 0)
      close(s->out_fd);
  }
  for (int i = 0; i < s->nnodes; i++)
    distc__plink_free(&s->nodes[i].pl);
  free(s->nodes);
  free(s->wpid);
  free(s->wstatus);
  free(s->wexited);
  free(s->wreported);
  free(s->master_addr);
}

const distc__launch_ops distc__launch_srun = {
    .name = "srun",
    .title = "starting workers with one srun step (a proxy per node)",
    .options = srun_options,
    .state_size = sizeof(srun_state),
    .worker_status = true,
    .set_option = srun_set_option,
    .launch = srun_launch,
    .signal = srun_signal,
    .reap = srun_reap,
    .host_of = srun_host_of,
    .kill_one = srun_kill_one,
    .event_fd = srun_event_fd,
    .destroy = srun_destroy,
};

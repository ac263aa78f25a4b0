/* ssh.c — the ssh launch half: workers on other hosts, started over one
 * libssh session per host (no `ssh` binary), plus the workers -p asks for
 * on this host (through the spawn launch half).
 *
 * Phases, each bounded by the run's timeout:
 *   prepare connect to every host (at most max_connecting at once, as
 *           sshd's MaxStartups expects; ssh_session.c), and start the
 *           bootstrap command right away, so the login shell starts while
 *           other hosts still connect; `host:auto` hosts report their core
 *           count first;
 *   launch  send every bootstrap what to run, and the proxy it becomes
 *           (proxy.c: the program itself in its proxy role) the master's
 *           address and the secret, all over the channel (proxy_link.c);
 *           once every proxy said "hello" (which means it also reached the
 *           master), hand out launch indices and let each start its
 *           workers, without waiting for them: they start while the master
 *           does.
 * From launch on one I/O thread (ssh_io.c) owns every session: it reads
 * the proxies' reports (worker exits, for reap), prints what they and their
 * workers write to stderr, tagged with the host, and in --tunnel mode
 * carries the workers' connections back to the master (ssh_tunnel.c).
 *
 * Lifetime: the proxy stops its workers when its channel ends, and the
 * workers die with the proxy, so closing the sessions — or losing them
 * because this process was killed — leaves nothing behind. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "hostspec.h"
#include "ssh.h"

#define DEFAULT_MAX_CONNECTING 10 /* sshd's default MaxStartups */
#define DEFAULT_TIMEOUT_S 60.0
#define PROBE_MAX_MS 5000
#define KILL_GRACE_S 3.0 /* after SIGKILL, hosts that stay silent are cut */

static const distc__option ssh_options[] = {
    {"ssh-identity", true, "F",
     "private key to use (default: the SSH agent, then\nthe identity files "
     "of the ssh configuration)"},
    {"ssh-config", true, "F",
     "ssh_config file (default ~/.ssh/config and\n/etc/ssh/ssh_config)"},
    {"accept-new-hostkeys", false, NULL, "add keys of hosts not in known_hosts"},
    {"master-addr", true, "A",
     "address of this host the workers dial (default:\nthis host's address "
     "on each SSH connection)"},
    {"tunnel", false, NULL, "workers connect back through the SSH session"},
    {"max-connecting", true, "N", "hosts connected at once (default 10)"},
    {"allow-partial", false, NULL,
     "start on the hosts that work, leave out others"},
    {NULL, false, NULL, NULL},
};

/* Variables that mean something only where they were set. */
static bool never_forwarded(const char *kv) {
  return strncmp(kv, "SSH_", 4) == 0 || strncmp(kv, "DISPLAY=", 8) == 0;
}

double distc__ssh_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int state_init(ssh_state *s) {
  if (s->init)
    return 0;
  int rc = distc__ssh_load();
  if (rc != 0)
    return rc;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->kh_lock, NULL);
  pthread_cond_init(&s->changed, &ca);
  pthread_condattr_destroy(&ca);
  s->wake[0] = s->wake[1] = s->event[0] = s->event[1] = -1;
  if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0 ||
      pipe2(s->event, O_CLOEXEC | O_NONBLOCK) != 0) {
    int e = errno;
    for (int i = 0; i < 2; i++) {
      if (s->wake[i] >= 0)
        close(s->wake[i]);
      s->wake[i] = -1;
    }
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->kh_lock);
    pthread_mutex_destroy(&s->lock);
    return distc__seterr(DISTC_EIO, "cannot create pipes: %s", strerror(e));
  }
  s->max_connecting = DEFAULT_MAX_CONNECTING;
  s->timeout_s = DEFAULT_TIMEOUT_S;
  s->init = true;
  return 0;
}

/* Waits on s->changed until deadline (monotonic seconds); lock held. */
static void wait_until(ssh_state *s, double deadline) {
  double left = deadline - distc__ssh_now();
  if (left <= 0)
    return;
  if (left > 0.2)
    left = 0.2; /* re-check conditions that nobody signals (thread ends) */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  long long ns = (long long)ts.tv_nsec + (long long)(left * 1e9);
  ts.tv_sec += (time_t)(ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  pthread_cond_timedwait(&s->changed, &s->lock, &ts);
}

/* Threads of ours take no signals: the launcher's main thread handles them
 * in its ppoll, and a program using distc_addprocs keeps its own. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return e;
}

/* ---- options ---- */

static int set_str(char **field, const char *value, const char *name) {
  if (value == NULL || value[0] == '\0')
    return distc__seterr(DISTC_EINVAL, "--%s needs a value", name);
  free(*field);
  *field = strdup(value);
  return *field ? 0 : distc__seterr(DISTC_ENOMEM, "out of memory");
}

static int ssh_set_option(void *state, const char *name, const char *value) {
  ssh_state *s = state;
  int rc = state_init(s);
  if (rc != 0)
    return rc;
  if (strcmp(name, "ssh-identity") == 0) {
    if (value == NULL || access(value, R_OK) != 0)
      return distc__seterr(DISTC_EINVAL,
                           "--ssh-identity %s: %s; give a readable private "
                           "key file",
                           value ? value : "", strerror(errno));
    return set_str(&s->identity, value, name);
  }
  if (strcmp(name, "ssh-config") == 0) {
    if (value == NULL || access(value, R_OK) != 0)
      return distc__seterr(DISTC_EINVAL,
                           "--ssh-config %s: %s; give a readable ssh_config "
                           "file",
                           value ? value : "", strerror(errno));
    return set_str(&s->config, value, name);
  }
  if (strcmp(name, "master-addr") == 0) {
    if (value == NULL || value[0] == '\0' ||
        strpbrk(value, " \t\r\n'") != NULL || strlen(value) > 200)
      return distc__seterr(DISTC_EINVAL,
                           "--master-addr wants a host name or address of "
                           "this host, got '%s'; e.g. --master-addr "
                           "10.0.0.1",
                           value ? value : "");
    return set_str(&s->master_addr, value, name);
  }
  if (strcmp(name, "max-connecting") == 0) {
    char *end;
    long n = value ? strtol(value, &end, 10) : 0;
    if (value == NULL || value[0] == '\0' || *end != '\0' || n < 1 ||
        n > 1024)
      return distc__seterr(DISTC_EINVAL,
                           "--max-connecting wants a number 1..1024, got "
                           "'%s'; e.g. --max-connecting 10",
                           value ? value : "");
    s->max_connecting = (int)n;
    return 0;
  }
  if (strcmp(name, "timeout") == 0) {
    double t = value ? atof(value) : 0;
    if (t > 0)
      s->timeout_s = t;
    return 0;
  }
  bool *flag = strcmp(name, "tunnel") == 0                ? &s->tunnel
               : strcmp(name, "accept-new-hostkeys") == 0 ? &s->accept_new
               : strcmp(name, "allow-partial") == 0       ? &s->partial
               : strcmp(name, "verbose") == 0             ? &s->verbose
               : strcmp(name, "dry-run") == 0             ? &s->dry_run
                                                          : NULL;
  if (flag == NULL)
    return distc__seterr(DISTC_EINVAL, "the ssh launcher takes no --%s", name);
  *flag = true;
  return 0;
}

/* ---- connecting (nodes) ---- */

typedef struct connect_job {
  ssh_state *s;
  double deadline;
} connect_job;

static void *connect_main(void *arg) {
  connect_job *j = arg;
  ssh_state *s = j->s;
  pthread_mutex_lock(&s->lock);
  while (s->next_connect < s->nh && distc__ssh_now() < j->deadline) {
    ssh_host *h = &s->h[s->next_connect++];
    pthread_mutex_unlock(&s->lock);
    distc__ssh_connect_host(s, h, j->deadline);
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->changed);
  }
  s->connecting--;
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

/* Joins the failure messages of every failed host into the error. */
static int report_failures(ssh_state *s, const char *what) {
  int failed = 0;
  const char *first = NULL;
  for (int i = 0; i < s->nh; i++)
    if (s->h[i].p.phase == DISTC__P_FAILED) {
      failed++;
      if (first == NULL)
        first = s->h[i].p.error;
    }
  int rc = distc__seterr(DISTC_ESPAWN, "%s", first ? first : what);
  for (int i = 0, k = 0; i < s->nh; i++)
    if (s->h[i].p.phase == DISTC__P_FAILED && k++ > 0)
      distc__adderr("%s", s->h[i].p.error ? s->h[i].p.error : what);
  if (failed > 1)
    distc__adderr("(%d hosts failed; no worker was left running; "
                  "--allow-partial starts the others anyway)",
                  failed);
  return rc;
}

/* Connects to every host of the list that is not this one; settles the
 * slots of `auto` hosts, and with --allow-partial gives 0 slots to the hosts
 * left out. */
static int ssh_prepare(void *state, distc_host *hosts, int nhosts) {
  ssh_state *s = state;
  int rc = state_init(s);
  if (rc != 0)
    return rc;
  if (s->h != NULL)
    return distc__seterr(DISTC_ESTATE, "the ssh launcher prepared twice; "
                                       "this is a bug in distc");
  s->local_count = 0;
  s->h = calloc((size_t)nhosts + 1, sizeof *s->h);
  if (s->h == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  for (int i = 0; i < nhosts; i++) {
    if (hosts[i].here) {
      if (hosts[i].slots == DISTC_SLOTS_AUTO)
        hosts[i].slots = distc__host_cores();
      s->local_count += hosts[i].slots;
      continue;
    }
    ssh_host *h = &s->h[s->nh++];
    h->at = i;
    h->spec = hosts[i];
    h->spec.name = strdup(hosts[i].name);
    h->spec.user = hosts[i].user ? strdup(hosts[i].user) : NULL;
    h->spec.dir = hosts[i].dir ? strdup(hosts[i].dir) : NULL;
    h->spec.exename = hosts[i].exename ? strdup(hosts[i].exename) : NULL;
    if (h->spec.name == NULL || (hosts[i].user && !h->spec.user) ||
        (hosts[i].dir && !h->spec.dir) ||
        (hosts[i].exename && !h->spec.exename))
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    distc__host_label(&h->spec, h->p.label, sizeof h->p.label);
  }

  if (s->dry_run) {
    for (int i = 0; i < s->nh; i++) {
      if (s->h[i].spec.slots == DISTC_SLOTS_AUTO) {
        distc__log_print("[%s] auto: the core count is asked of the host "
                         "when connecting; counted as 1 here",
                         s->h[i].p.label);
        s->h[i].spec.slots = 1;
      }
      s->h[i].p.phase = DISTC__P_CONNECTED;
    }
  } else if (s->nh > 0) {
    double deadline = distc__ssh_now() + s->timeout_s;
    int nthreads = s->max_connecting < s->nh ? s->max_connecting : s->nh;
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    connect_job job = {s, deadline};
    if (t == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    int started = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < nthreads; i++) {
      if (start_thread(&t[i], connect_main, &job) != 0)
        break;
      started++;
      s->connecting++;
    }
    if (started == 0) {
      pthread_mutex_unlock(&s->lock);
      free(t);
      return distc__seterr(DISTC_EIO, "cannot start a thread to connect");
    }
    /* Threads end by themselves: each connect is bounded by the deadline
     * through libssh's timeout. */
    while (s->connecting > 0)
      wait_until(s, distc__ssh_now() + 1);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < started; i++)
      pthread_join(t[i], NULL);
    free(t);
    for (int i = 0; i < s->nh; i++)
      if (s->h[i].p.phase == DISTC__P_NEW)
        distc__plink_fail(&s->h[i].p, "%s: unreachable: not connected within %.3g s",
                  s->h[i].p.label, s->timeout_s);
  }

  int ok = 0;
  for (int i = 0; i < s->nh; i++)
    ok += s->h[i].p.phase == DISTC__P_CONNECTED;
  if (ok < s->nh) {
    if (!s->partial || ok == 0) {
      rc = report_failures(s, "a host could not be connected");
      for (int i = 0; i < s->nh; i++)
        distc__ssh_disconnect(&s->h[i]);
      return rc;
    }
    for (int i = 0; i < s->nh; i++)
      if (s->h[i].p.phase == DISTC__P_FAILED) {
        distc__log(DISTC__LOG_WARN, "leaving out %s", s->h[i].p.error);
        s->h[i].dropped = true;
        distc__ssh_disconnect(&s->h[i]);
      }
  }
  for (int i = 0; i < s->nh; i++)
    hosts[s->h[i].at].slots = s->h[i].dropped ? 0 : s->h[i].spec.slots;
  return 0;
}

/* ---- the control channel ---- */

/* Whether kv can be exported by the remote shell: a variable name, '=', and
 * a value without a newline. */
static bool exportable(const char *kv) {
  const char *eq = strchr(kv, '=');
  if (eq == NULL || eq == kv || strchr(eq, '\n') != NULL)
    return false;
  if (!((kv[0] >= 'A' && kv[0] <= 'Z') || (kv[0] >= 'a' && kv[0] <= 'z') ||
        kv[0] == '_'))
    return false;
  for (const char *p = kv; p < eq; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
          (*p >= '0' && *p <= '9') || *p == '_'))
      return false;
  return true;
}

static int queue_config(ssh_state *s, ssh_host *h,
                        const distc_launch_spec *spec, const char *master) {
  const char *exe = h->spec.exename ? h->spec.exename : spec->exename;
  int probe = (int)(s->timeout_s * 1000 / 2);
  if (probe > PROBE_MAX_MS)
    probe = PROBE_MAX_MS;
  if (probe < 1)
    probe = 1;
  /* First what the bootstrap reads (bootstrap_sh).  The environment's
   * allow list is --env, then the BLAS counts and the DISTC_* user settings
   * of this environment if set; never the rest of it. */
  distc__plink *p = &h->p;
  const char *dir = h->spec.dir ? h->spec.dir : s->dir;
  int rc = distc__plink_line(p, "D%s", dir);
  if (rc == 0)
    rc = distc__plink_line(p, "X%s", exe);
  for (size_t i = 1; spec->argv && spec->argv[0] && spec->argv[i] && rc == 0;
       i++)
    rc = distc__plink_line(p, "A%s", spec->argv[i]);
  if (rc == 0)
    rc = distc__plink_line(p, "E%s=%.17g", DISTC_ENV_TIMEOUT, s->timeout_s);
  for (size_t i = 0; spec->env && spec->env[i] && rc == 0; i++)
    if (!never_forwarded(spec->env[i]))
      rc = distc__plink_line(p, "E%s", spec->env[i]);
  static const char *const pass[] = {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                     "DISTC_LOG", "DISTC_MAX_FRAME"};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(pass) && rc == 0; i++) {
    const char *v = getenv(pass[i]);
    size_t k = strlen(pass[i]);
    bool given = false;
    for (size_t j = 0; spec->env && spec->env[j]; j++)
      given |= strncmp(spec->env[j], pass[i], k) == 0 && spec->env[j][k] == '=';
    if (v != NULL && !given && strchr(v, '\n') == NULL)
      rc = distc__plink_line(p, "E%s=%s", pass[i], v);
  }
  if (rc == 0)
    rc = distc__plink_line(p, ".");
  distc__plink_config c = {
      .master = master,
      .secret = spec->secret,
      .exe = exe,
      /* the host's own rule, unless its allocation says how many CPUs */
      .blas = !spec->blas_auto ? spec->blas_threads
              : h->spec.cpus > 0 ? distc__blas_threads(h->spec.cpus,
                                                       h->spec.slots)
                                 : 0,
      .probe_ms = probe,
  };
  if (rc == 0)
    rc = distc__plink_config_send(p, &c);
  return rc;
}

/* ---- launch ---- */

/* How many remote hosts are still in `phase`; lock held. */
static int count_phase(const ssh_state *s, distc__plink_phase phase) {
  int n = 0;
  for (int i = 0; i < s->nh; i++)
    n += !s->h[i].dropped && s->h[i].p.phase == phase;
  return n;
}

/* Sends a connected host its instructions and the proxy configuration
 * (nothing blocks: the I/O thread writes them). */
static int open_proxy(ssh_state *s, ssh_host *h,
                      const distc_launch_spec *spec) {
  char master[512];
  const char *exe = h->spec.exename ? h->spec.exename : s->exe;
  const char *dir = h->spec.dir ? h->spec.dir : s->dir;
  if (s->tunnel)
    snprintf(master, sizeof master, "127.0.0.1:%d", h->fwd_port);
  else
    snprintf(master, sizeof master, "%s:%s",
             s->master_addr ? s->master_addr : h->local_addr, s->master_port);
  if (spec->verbose || spec->dry_run) {
    char *cmd = distc__ssh_bootstrap_command(false);
    distc__log_print("[%s] ssh %s %s", h->p.label, h->p.label,
            cmd ? cmd : "(out of memory)");
    free(cmd);
    distc__log_print(
            "[%s] then, over the channel: cd %s, run %s as "
            "the proxy, its workers dial the master at %s",
            h->p.label, dir, exe,
            spec->dry_run
                ? (s->tunnel ? "127.0.0.1:<forwarded port>"
                   : s->master_addr
                       ? s->master_addr
                       : "<this host's address as seen from there>:<port>")
                : master);
  }
  if (spec->dry_run)
    return 0;
  /* For the proxy's "fail" lines (proxy_link.c). */
  h->p.exe = exe;
  h->p.dir = dir;
  h->p.hint_host = "in a --hostfile";
  if (asprintf(&h->hint_reach,
               "; give --master-addr with an address of this host that %s "
               "can reach, or --tunnel to connect back through the SSH "
               "session",
               h->spec.name) < 0)
    h->hint_reach = NULL;
  h->p.hint_reach = h->hint_reach;
  h->p.verbose = s->verbose;
  h->p.on_exit = distc__ssh_record_exit;
  h->p.arg = s;
  if (queue_config(s, h, spec, master) != 0) {
    distc__plink_fail(&h->p, "%s: out of memory", h->p.label);
    return -1;
  }
  ssh_set_blocking(h->s, 0);
  return 0;
}

/* Stops what launch started: remote workers are killed, proxies told to
 * end, and we wait (bounded) for their reports; local workers killed. */
static void abort_launch(ssh_state *s) {
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->ctl == NULL)
      continue;
    distc__plink_signal(&h->p, SIGKILL);
    h->p.closing = true;
  }
  distc__ssh_poke(s->wake[1]);
  double deadline = distc__ssh_now() + KILL_GRACE_S;
  for (;;) {
    int running = 0;
    for (int i = 0; i < s->nh; i++)
      running += distc__plink_running(&s->h[i].p);
    bool open = false;
    for (int i = 0; i < s->nh; i++)
      open |= s->h[i].ctl != NULL;
    if ((running == 0 && !open) || distc__ssh_now() >= deadline || !s->io_running)
      break;
    wait_until(s, deadline);
  }
  pthread_mutex_unlock(&s->lock);
  if (s->local != NULL) {
    distc__launch_spawn.signal(s->local, SIGKILL);
    while (distc__launch_spawn.reap(s->local, NULL, NULL) > 0)
      ; /* SIGKILLed children of ours: each reap waits for what has ended */
  }
}

static int ssh_launch(void *state, const distc_launch_spec *spec) {
  ssh_state *s = state;
  int rc;
  if (s->h == NULL)
    return distc__seterr(DISTC_ESTATE, "the ssh launcher launches only "
                                       "after prepare(); this is a bug in "
                                       "distc");
  if (s->launched)
    return distc__seterr(DISTC_ESTATE,
                         "the ssh manager starts workers once per instance; "
                         "open another for more");
  s->launched = true;

  /* Where the master listens: the port for everyone, the host for --tunnel
   * (the far end of the forwarded connections). */
  const char *colon = strrchr(spec->master_addr, ':');
  if (colon == NULL || colon == spec->master_addr ||
      (size_t)(colon - spec->master_addr) >= sizeof s->master_host)
    return distc__seterr(DISTC_EINVAL, "bad master address '%s'",
                         spec->master_addr);
  memcpy(s->master_host, spec->master_addr,
         (size_t)(colon - spec->master_addr));
  s->master_host[colon - spec->master_addr] = '\0';
  snprintf(s->master_port, sizeof s->master_port, "%s", colon + 1);

  char cwd[PATH_MAX];
  const char *dir = spec->dir;
  if (dir == NULL)
    dir = getcwd(cwd, sizeof cwd) ? cwd : ".";
  s->dir = strdup(dir);
  s->exe = strdup(spec->exename);
  if (s->dir == NULL || s->exe == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  /* The bootstrap reads them a line each. */
  for (size_t i = 1; spec->argv && spec->argv[0] && spec->argv[i]; i++)
    if (strchr(spec->argv[i], '\n') != NULL)
      return distc__seterr(DISTC_EINVAL,
                           "argument %zu of the program has a newline, which "
                           "cannot be passed to other hosts",
                           i);
  bool newline = strchr(s->dir, '\n') || strchr(s->exe, '\n');
  for (int i = 0; i < s->nh; i++)
    newline |= (s->h[i].spec.dir && strchr(s->h[i].spec.dir, '\n')) ||
               (s->h[i].spec.exename && strchr(s->h[i].spec.exename, '\n'));
  if (newline)
    return distc__seterr(DISTC_EINVAL, "a directory or program path with a "
                                       "newline cannot be used on other "
                                       "hosts");
  for (size_t i = 0; spec->env && spec->env[i]; i++) {
    if (!exportable(spec->env[i]))
      return distc__seterr(DISTC_EINVAL,
                           "--env %.*s cannot be passed to other hosts: the "
                           "name must be a shell variable name and the value "
                           "one line",
                           (int)strcspn(spec->env[i], "="), spec->env[i]);
    if (never_forwarded(spec->env[i]) && s->nh > 0)
      distc__log(DISTC__LOG_WARN,
              "--env %.*s is not passed to other hosts "
              "(SSH_* and DISPLAY mean something only here)",
              (int)strcspn(spec->env[i], "="), spec->env[i]);
  }

  int local = s->local_count < spec->count ? s->local_count : spec->count;
  if (local > 0) {
    /* This host's workers are children of ours, as the local manager's. */
    s->local = calloc(1, distc__launch_spawn.state_size);
    if (s->local == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    distc_launch_spec ls = *spec;
    ls.count = local;
    ls.started = NULL;
    ls.hosts = NULL;
    ls.nhosts = 0;
    if ((rc = distc__launch_spawn.launch(s->local, &ls)) != 0)
      return rc;
  }

  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->dropped)
      continue;
    open_proxy(s, h, spec);
  }
  if (spec->dry_run) {
    if (spec->started)
      *spec->started = spec->count;
    return 0;
  }

  if (start_thread(&s->io, distc__ssh_io_main, s) != 0) {
    rc = distc__seterr(DISTC_EIO, "cannot start the SSH I/O thread");
    goto fail;
  }
  s->io_running = true;

  /* Phase 1: every proxy says hello (or fails). */
  double deadline = distc__ssh_now() + s->timeout_s;
  pthread_mutex_lock(&s->lock);
  distc__ssh_poke(s->wake[1]);
  while (count_phase(s, DISTC__P_STARTING) > 0 && distc__ssh_now() < deadline)
    wait_until(s, deadline);
  for (int i = 0; i < s->nh; i++)
    if (!s->h[i].dropped && s->h[i].p.phase == DISTC__P_STARTING)
      distc__plink_fail(&s->h[i].p,
                "%s: the program did not answer within %.3g s; raise "
                "--timeout if the host is slow",
                s->h[i].p.label, s->timeout_s);
  int failed = count_phase(s, DISTC__P_FAILED);
  int ok = count_phase(s, DISTC__P_HELLO);
  if (failed > 0 && (!s->partial || ok + local == 0)) {
    rc = report_failures(s, "a host could not start its workers");
    pthread_mutex_unlock(&s->lock);
    goto fail;
  }

  /* Phase 2: indices, contiguous after the local workers. */
  int next = spec->first_index + local;
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->dropped)
      continue;
    if (h->p.phase == DISTC__P_FAILED) {
      distc__log(DISTC__LOG_WARN, "leaving out %s", h->p.error);
      h->dropped = true;
      h->p.closing = true;
      continue;
    }
    int want = spec->first_index + spec->count - next;
    int count = h->spec.slots < want ? h->spec.slots : want;
    if (count <= 0) {
      h->p.closing = true;
      h->dropped = true;
      continue;
    }
    /* Running from now on: they count for reap until their proxy reports
     * them gone, or is gone itself. */
    if (distc__plink_start(&h->p, next, count) != 0) {
      rc = distc__seterr(DISTC_ENOMEM, "out of memory");
      pthread_mutex_unlock(&s->lock);
      goto fail;
    }
    next += count;
  }
  /* Not waited for: the workers start while the master does.  A proxy
   * that cannot start one says so (the I/O thread prints it), and the
   * worker counts as exited before connecting, which fails the start. */
  for (int i = 0; i < s->nh; i++)
    s->h[i].p.reporting = true;
  distc__ssh_poke(s->wake[1]);
  pthread_mutex_unlock(&s->lock);
  int started = next - spec->first_index;
  if (spec->started != NULL)
    *spec->started = started;
  else if (started < spec->count) {
    rc = distc__seterr(DISTC_ESPAWN, "only %d of %d workers could be started",
                       started, spec->count);
    goto fail;
  }
  return 0;

fail:;
  /* The message survives the teardown, which may set errors of its own. */
  char *msg = strdup(distc_errmsg());
  abort_launch(s);
  distc__seterr(rc, "%s", msg ? msg : distc_strerror(rc));
  free(msg);
  return rc;
}

/* ---- signal, reap, teardown ---- */

static int ssh_signal(void *state, int sig) {
  ssh_state *s = state;
  if (s->local != NULL)
    distc__launch_spawn.signal(s->local, sig);
  if (!s->init)
    return 0;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->ctl == NULL || h->dropped)
      continue;
    distc__plink_signal(&h->p, sig);
    if (sig == SIGKILL && h->kill_deadline == 0)
      h->kill_deadline = distc__ssh_now() + KILL_GRACE_S;
  }
  pthread_mutex_unlock(&s->lock);
  distc__ssh_poke(s->wake[1]);
  return 0;
}

static int ssh_kill_one(void *state, int index, int sig) {
  ssh_state *s = state;
  if (s->local != NULL &&
      distc__launch_spawn.kill_one(s->local, index, sig) == 0)
    return 0;
  if (!s->init)
    return DISTC_ENOENT;
  int rc = DISTC_ENOENT;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->nh && rc == DISTC_ENOENT; i++)
    if (s->h[i].ctl != NULL && !s->h[i].dropped &&
        distc__plink_has(&s->h[i].p, index))
      rc = distc__plink_kill_one(&s->h[i].p, index, sig);
  pthread_mutex_unlock(&s->lock);
  if (rc == 0)
    distc__ssh_poke(s->wake[1]);
  return rc;
}

/* The label never changes after prepare, so it may be read unlocked once
 * the index is found under the lock. */
static const char *ssh_host_of(void *state, int index) {
  ssh_state *s = state;
  const char *host = NULL;
  if (!s->init)
    return NULL;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->nh && host == NULL; i++)
    if (distc__plink_has(&s->h[i].p, index))
      host = s->h[i].p.label;
  pthread_mutex_unlock(&s->lock);
  return host;
}

static int ssh_reap(void *state, distc_exit_cb cb, void *arg) {
  ssh_state *s = state;
  int running = 0;
  if (s->local != NULL)
    running += distc__launch_spawn.reap(s->local, cb, arg);
  if (!s->init)
    return running;
  distc__ssh_drain(s->event[0]);
  pthread_mutex_lock(&s->lock);
  exit_rec *ex = s->exits;
  size_t nex = s->nexits;
  s->exits = NULL;
  s->nexits = s->capexits = 0;
  for (int i = 0; i < s->nh; i++)
    running += distc__plink_running(&s->h[i].p);
  pthread_mutex_unlock(&s->lock);
  for (size_t i = 0; cb && i < nex; i++)
    cb(arg, ex[i].index, (pid_t)ex[i].pid, ex[i].status);
  free(ex);
  return running;
}

static int ssh_event_fd(void *state) {
  ssh_state *s = state;
  return s->init ? s->event[0] : -1;
}

static void ssh_destroy(void *state) {
  ssh_state *s = state;
  if (!s->init)
    return;
  if (s->io_running) {
    /* Let the proxies hear the end of their channels first. */
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->nh; i++)
      if (s->h[i].ctl != NULL)
        s->h[i].p.closing = true;
    s->io_stop = true;
    pthread_mutex_unlock(&s->lock);
    distc__ssh_poke(s->wake[1]);
    pthread_join(s->io, NULL);
    s->io_running = false;
  }
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    distc__ssh_tunnels_close(h);
    distc__ssh_disconnect(h);
    distc__plink_free(&h->p);
    free(h->hint_reach);
    free(h->spec.name);
    free(h->spec.user);
    free(h->spec.dir);
    free(h->spec.exename);
  }
  free(s->h);
  if (s->local != NULL) {
    distc__launch_spawn.destroy(s->local);
    free(s->local);
  }
  free(s->identity);
  free(s->config);
  free(s->master_addr);
  free(s->exe);
  free(s->dir);
  free(s->exits);
  for (int i = 0; i < 2; i++) {
    if (s->wake[i] >= 0)
      close(s->wake[i]);
    if (s->event[i] >= 0)
      close(s->event[i]);
  }
  pthread_cond_destroy(&s->changed);
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->kh_lock);
  memset(s, 0, sizeof *s);
}

const distc__launch_ops distc__launch_ssh = {
    .name = "ssh",
    .title = "workers started over SSH (libssh, no ssh binary)",
    .options = ssh_options,
    .state_size = sizeof(ssh_state),
    .set_option = ssh_set_option,
    .event_fd = ssh_event_fd,
    .prepare = ssh_prepare,
    .launch = ssh_launch,
    .signal = ssh_signal,
    .reap = ssh_reap,
    .host_of = ssh_host_of,
    .kill_one = ssh_kill_one,
    .destroy = ssh_destroy,
};

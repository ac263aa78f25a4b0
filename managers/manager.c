/* manager.c — the one place cluster managers are registered and chosen, and
 * the dispatcher every caller goes through.
 *
 * After distc__manager_open() every slot of m->res and m->lau is non-NULL:
 * the dispatcher works on its own copies of the registered halves with the
 * defaults filled in, so callers never test for optional slots. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "manager.h"

/* Every known manager, one line each (detection goes by priority). */
static const distc__manager_def managers[] = {
    {"local", 0, &distc__resource_here, &distc__launch_spawn},
    {"ssh", 0, &distc__resource_hostlist, &distc__launch_ssh},
    {"pbs", 10, &distc__resource_pbs, &distc__launch_ssh},
    /* SLURM jobs may carry PBS variables (spank_pbs): the native one wins */
    {"slurm", 20, &distc__resource_slurm, &distc__launch_srun},
};

/* How often distc__manager_stop() polls reap while it waits. */
#define STOP_POLL_NS (10 * 1000 * 1000)

const distc__manager_def *distc__manager_at(size_t i) {
  return i < DISTC__ARRAY_LEN(managers) ? &managers[i] : NULL;
}

const distc__manager_def *distc__manager_find(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++)
    if (strcmp(managers[i].name, name) == 0)
      return &managers[i];
  return NULL;
}

void distc__manager_list_names(FILE *f) {
  for (size_t i = 0; distc__manager_at(i) != NULL; i++)
    fprintf(f, "%s\n", distc__manager_at(i)->name);
}

bool distc__common_setting(const char *name) {
  return strcmp(name, "timeout") == 0 || strcmp(name, "verbose") == 0 ||
         strcmp(name, "dry-run") == 0;
}

static const distc__option *find_opt(const distc__option *list,
                                     const char *name) {
  for (size_t i = 0; list && list[i].name; i++)
    if (strcmp(list[i].name, name) == 0)
      return &list[i];
  return NULL;
}

const distc__option *distc__manager_option(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++) {
    const distc__option *o = find_opt(managers[i].resource->options, name);
    if (o == NULL)
      o = find_opt(managers[i].launch->options, name);
    if (o != NULL)
      return o;
  }
  return NULL;
}

/* The first manager whose resource (launch) half lists name. */
static const distc__manager_def *resource_owner(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++)
    if (find_opt(managers[i].resource->options, name))
      return &managers[i];
  return NULL;
}

static const distc__manager_def *launch_owner(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++)
    if (find_opt(managers[i].launch->options, name))
      return &managers[i];
  return NULL;
}

static const distc__launch_ops *find_launcher(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++)
    if (strcmp(managers[i].launch->name, name) == 0)
      return managers[i].launch;
  return NULL;
}

/* "local, ssh" (or the launch halves' names) for messages that must say
 * what would have worked. */
static void known_names(char *buf, size_t len, bool launchers) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers) && n < len; i++) {
    const char *name =
        launchers ? managers[i].launch->name : managers[i].name;
    if (launchers && find_launcher(name) != managers[i].launch)
      continue; /* listed once */
    n += snprintf(buf + n, len - n, "%s%s", n ? ", " : "", name);
  }
}

static const distc__manager_def *unknown_manager(const char *name,
                                                 const char *where) {
  char known[256];
  known_names(known, sizeof known, false);
  distc__seterr(DISTC_EINVAL,
                "unknown cluster manager '%s' (from %s); use one of: %s",
                name, where, known);
  return NULL;
}

const distc__manager_def *distc__manager_choose(const char *name,
                                                const char *const *opts,
                                                int nopts, const char **why) {
  static __thread char whybuf[160];
  const distc__manager_def *d = NULL;

  if (name != NULL && name[0] != '\0') {
    *why = "asked for with --manager";
    return (d = distc__manager_find(name)) ? d
                                           : unknown_manager(name, "--manager");
  }
  /* --hosts, --hostfile (and later a batch system's own options) say where
   * the workers go: that is the manager. */
  for (int i = 0; i < nopts; i++)
    if ((d = resource_owner(opts[i])) != NULL) {
      snprintf(whybuf, sizeof whybuf, "implied by --%s", opts[i]);
      *why = whybuf;
      return d;
    }
  const char *env = getenv("DISTC_MANAGER");
  if (env != NULL && env[0] != '\0') {
    /* Named: it wins over implied ones; a misplaced option is refused
     * naming it. */
    if ((d = distc__manager_find(env)) == NULL)
      return unknown_manager(env, "$DISTC_MANAGER");
    *why = "from $DISTC_MANAGER";
    return d;
  } else {
    for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++) {
      const distc__manager_def *c = &managers[i];
      if (c->resource->detect == NULL || (d && c->priority <= d->priority))
        continue;
      if (c->resource->detect())
        d = c;
    }
    if (d != NULL) {
      snprintf(whybuf, sizeof whybuf,
               "detected: running inside its allocation (priority %d)",
               d->priority);
      *why = whybuf;
    }
  }
  /* Options of a launch half (--tunnel) keep a detected manager that takes
   * them (pbs starts over SSH too); otherwise they choose one that does. */
  for (int i = 0; i < nopts; i++) {
    if (d != NULL && find_opt(d->launch->options, opts[i]))
      continue;
    const distc__manager_def *o = launch_owner(opts[i]);
    if (o != NULL) {
      snprintf(whybuf, sizeof whybuf, "implied by --%s", opts[i]);
      *why = whybuf;
      return o;
    }
  }
  if (d == NULL) {
    d = &managers[0];
    *why = "default: no batch allocation detected";
  }
  return d;
}

/* ---- defaults for the optional slots ---- */

/* A half without options still hears the common settings, and ignores them;
 * anything else is the dispatcher's bug, since options are routed by the
 * lists first. */
static int no_options(void *state, const char *name, const char *value) {
  (void)state;
  (void)value;
  if (distc__common_setting(name))
    return 0;
  return distc__seterr(DISTC_EINVAL, "this cluster manager takes no --%s",
                       name);
}

static bool default_detect(void) { return false; }

/* Without a resource of its own the manager runs everything on this host. */
static int default_nodes(void *state, int here, distc_host **hosts,
                         int *nhosts) {
  (void)state;
  distc_host *h = calloc(1, sizeof *h);
  if (h == NULL || (h->name = strdup("localhost")) == NULL) {
    free(h);
    return distc__seterr(DISTC_ENOMEM, "out of memory listing the hosts");
  }
  h->slots = here;
  h->here = true;
  *hosts = h;
  *nhosts = 1;
  return 0;
}

static int default_prepare(void *state, distc_host *hosts, int nhosts) {
  (void)state;
  for (int i = 0; i < nhosts; i++)
    if (hosts[i].slots == DISTC_SLOTS_AUTO)
      hosts[i].slots = hosts[i].here ? distc__host_cores() : 1;
  return 0;
}

static void default_destroy(void *state) { (void)state; }

static const char *default_workdir(void *state) {
  (void)state;
  return NULL;
}

static int no_event_fd(void *state) {
  (void)state;
  return -1;
}

static const char *no_host_of(void *state, int index) {
  (void)state;
  (void)index;
  return NULL;
}

static int no_kill_one(void *state, int index, int sig) {
  (void)state;
  (void)sig;
  return distc__seterr(DISTC_ENOTSUP,
                       "this launcher cannot signal worker %d alone", index);
}

/* calloc(1, 0) may legally return NULL; a half without state still gets a
 * unique non-NULL pointer so NULL can mean "not open". */
static void *new_state(size_t size) { return calloc(1, size ? size : 1); }

int distc__manager_open(distc_manager *m, const distc__manager_def *def,
                        const char *launcher) {
  const distc__launch_ops *lau = def->launch;
  memset(m, 0, sizeof *m);
  if (launcher != NULL && launcher[0] != '\0' &&
      (lau = find_launcher(launcher)) == NULL) {
    char known[256];
    known_names(known, sizeof known, true);
    return distc__seterr(DISTC_EINVAL,
                         "unknown launcher '%s' (from --launcher); use one "
                         "of: %s",
                         launcher, known);
  }
  /* The mandatory slots are the registration contract; a half without them
   * is a programming error in the registry, but say so rather than crash. */
  if (lau->launch == NULL || lau->signal == NULL || lau->reap == NULL)
    return distc__seterr(DISTC_EINVAL,
                         "launcher '%s' lacks a mandatory operation (launch, "
                         "signal or reap); this is a bug in distc",
                         lau->name);
  m->res = *def->resource;
  m->lau = *lau;
  if (m->res.set_option == NULL)
    m->res.set_option = no_options;
  if (m->res.detect == NULL)
    m->res.detect = default_detect;
  if (m->res.nodes == NULL)
    m->res.nodes = default_nodes;
  if (m->res.destroy == NULL)
    m->res.destroy = default_destroy;
  if (m->res.workdir == NULL)
    m->res.workdir = default_workdir;
  if (m->lau.set_option == NULL)
    m->lau.set_option = no_options;
  if (m->lau.prepare == NULL)
    m->lau.prepare = default_prepare;
  if (m->lau.event_fd == NULL)
    m->lau.event_fd = no_event_fd;
  if (m->lau.host_of == NULL)
    m->lau.host_of = no_host_of;
  if (m->lau.kill_one == NULL)
    m->lau.kill_one = no_kill_one;
  if (m->lau.destroy == NULL)
    m->lau.destroy = default_destroy;
  m->rstate = new_state(m->res.state_size);
  m->lstate = new_state(m->lau.state_size);
  if (m->rstate == NULL || m->lstate == NULL) {
    free(m->rstate);
    free(m->lstate);
    m->rstate = m->lstate = NULL;
    return distc__seterr(DISTC_ENOMEM, "out of memory opening manager '%s'",
                         def->name);
  }
  m->def = def;
  return 0;
}

void distc__manager_close(distc_manager *m) {
  if (m->def == NULL)
    return;
  m->lau.destroy(m->lstate);
  m->res.destroy(m->rstate);
  free(m->lstate);
  free(m->rstate);
  memset(m, 0, sizeof *m);
}

int distc__manager_set_option(distc_manager *m, const char *name,
                              const char *value) {
  if (find_opt(m->res.options, name))
    return m->res.set_option(m->rstate, name, value);
  if (find_opt(m->lau.options, name))
    return m->lau.set_option(m->lstate, name, value);
  const distc__manager_def *owner = resource_owner(name);
  if (owner == NULL)
    owner = launch_owner(name);
  if (owner == NULL)
    return distc__seterr(DISTC_EINVAL,
                         "the %s manager takes no option '%s'; see "
                         "distc-launch --help for the options of each",
                         m->def->name, name);
  return distc__seterr(DISTC_EINVAL,
                       "--%s is an option of the %s manager, not of %s; "
                       "drop it, or use --manager %s",
                       name, owner->name, m->def->name, owner->name);
}

int distc__manager_set_common(distc_manager *m, double timeout_s,
                              bool verbose, bool dry_run) {
  char t[64];
  snprintf(t, sizeof t, "%.17g", timeout_s > 0 ? timeout_s : 60.0);
  const char *names[] = {"timeout", verbose ? "verbose" : NULL,
                         dry_run ? "dry-run" : NULL};
  const char *values[] = {t, NULL, NULL};
  int rc = 0;
  for (size_t i = 0; i < DISTC__ARRAY_LEN(names) && rc == 0; i++) {
    if (names[i] == NULL)
      continue;
    rc = m->res.set_option(m->rstate, names[i], values[i]);
    if (rc == 0)
      rc = m->lau.set_option(m->lstate, names[i], values[i]);
  }
  return rc;
}

int distc__manager_nodes(distc_manager *m, int here, distc_host **hosts,
                         int *nhosts) {
  *hosts = NULL;
  *nhosts = 0;
  int rc = m->res.nodes(m->rstate, here, hosts, nhosts);
  if (rc == 0)
    rc = m->lau.prepare(m->lstate, *hosts, *nhosts);
  if (rc != 0) {
    distc__host_free(*hosts, *nhosts);
    *hosts = NULL;
    *nhosts = 0;
  }
  return rc;
}

int distc__manager_launch(distc_manager *m, const distc_launch_spec *spec) {
  return m->lau.launch(m->lstate, spec);
}

int distc__manager_signal(distc_manager *m, int sig) {
  return m->lau.signal(m->lstate, sig);
}

int distc__manager_reap(distc_manager *m, distc_exit_cb cb, void *arg) {
  return m->lau.reap(m->lstate, cb, arg);
}

int distc__manager_event_fd(distc_manager *m) {
  return m->lau.event_fd(m->lstate);
}

const char *distc__manager_host_of(distc_manager *m, int index) {
  return m->lau.host_of(m->lstate, index);
}

int distc__manager_kill_one(distc_manager *m, int index, int sig) {
  return m->lau.kill_one(m->lstate, index, sig);
}

bool distc__manager_remote(const distc_manager *m) { return m->res.remote; }

const char *distc__manager_name(const distc_manager *m) {
  return m->def ? m->def->name : "(none)";
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void pause_poll(void) {
  struct timespec ts = {0, STOP_POLL_NS};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

int distc__manager_stop(distc_manager *m, int sig, double timeout_s,
                        distc_exit_cb cb, void *arg) {
  int rc = 0;

  if (sig != 0)
    rc = distc__manager_signal(m, sig);
  double deadline = now_s() + (timeout_s > 0 ? timeout_s : 0);
  int running = distc__manager_reap(m, cb, arg);
  while (running > 0 && now_s() < deadline) {
    pause_poll();
    running = distc__manager_reap(m, cb, arg);
  }
  if (running <= 0)
    return rc;

  /* SIGKILL cannot be caught, so every worker now dies; keep reaping until
   * the last one is gone, or it would be left a zombie (or, for a remote
   * launch half, a process on another host). */
  int krc = distc__manager_signal(m, SIGKILL);
  if (rc == 0)
    rc = krc;
  while ((running = distc__manager_reap(m, cb, arg)) > 0)
    pause_poll();
  return rc;
}

void distc__host_free(distc_host *h, int n) {
  if (h == NULL)
    return;
  for (int i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].user);
    free(h[i].dir);
    free(h[i].exename);
  }
  free(h);
}

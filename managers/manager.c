/* manager.c — the one place cluster managers are registered and chosen.
 *
 * After distc_manager_open() every slot of m->ops is non-NULL: the dispatcher
 * works on its own copy of the registered table with the defaults filled in,
 * so callers never test for optional slots. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "manager.h"

/* Every known manager, in no particular order (detection goes by priority).
 * SLURM and PBS join here. */
static const distc_manager_ops *const managers[] = {
    &distc_manager_local,
    &distc_manager_ssh,
};

/* How often distc_manager_stop() polls reap while it waits. */
#define STOP_POLL_NS (10 * 1000 * 1000)

const distc_manager_ops *distc_manager_find(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++)
    if (strcmp(managers[i]->name, name) == 0)
      return managers[i];
  return NULL;
}

/* "local, ssh, slurm" for messages that must say what would have worked. */
static void known_names(char *buf, size_t len) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers) && n < len; i++)
    n += snprintf(buf + n, len - n, "%s%s", i ? ", " : "", managers[i]->name);
}

void distc_manager_list_names(FILE *f) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++)
    fprintf(f, "%s\n", managers[i]->name);
}

static bool lists(const distc_manager_ops *o, const char *name) {
  for (size_t i = 0; o->options && o->options[i]; i++)
    if (strcmp(o->options[i], name) == 0)
      return true;
  return false;
}

const distc_manager_ops *distc_manager_for_option(const char *name) {
  for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++)
    if (lists(managers[i], name))
      return managers[i];
  return NULL;
}

bool distc_manager_has_option(const distc_manager *m, const char *name) {
  return m->ops != NULL && lists(m->ops, name);
}

int distc_manager_set_common(distc_manager *m, double timeout_s, bool verbose,
                             bool dry_run) {
  char t[64];
  snprintf(t, sizeof t, "%.17g", timeout_s > 0 ? timeout_s : 60.0);
  int rc = m->ops->set_option(m->state, "timeout", t);
  if (rc == 0 && verbose)
    rc = m->ops->set_option(m->state, "verbose", NULL);
  if (rc == 0 && dry_run)
    rc = m->ops->set_option(m->state, "dry-run", NULL);
  return rc;
}

static int unknown_manager(const char *name, const char *where) {
  char known[256];
  known_names(known, sizeof known);
  return distc__seterr(DISTC_EINVAL,
                       "unknown cluster manager '%s' (from %s); use one of: %s",
                       name, where, known);
}

static bool default_detect(void) { return false; }

/* Without a resource half the manager runs everything on this host. */
static int default_nodes(void *state, int requested, distc_host **hosts,
                         int *nhosts) {
  (void)state;
  distc_host *h = calloc(1, sizeof *h);
  if (h == NULL)
    goto fail_host;
  h->name = strdup("localhost");
  if (h->name == NULL)
    goto fail_name;
  h->slots = requested;
  *hosts = h;
  *nhosts = 1;
  return 0;

fail_name:
  free(h);
fail_host:
  return distc__seterr(DISTC_ENOMEM, "out of memory listing the hosts");
}

static void default_destroy(void *state) { (void)state; }

static bool common_setting(const char *name) {
  return strcmp(name, "timeout") == 0 || strcmp(name, "verbose") == 0 ||
         strcmp(name, "dry-run") == 0;
}

/* A manager without options still hears the common settings, and ignores
 * them; anything else is the caller's bug, since options are checked
 * against the list first. */
static int no_options(void *state, const char *name, const char *value) {
  (void)state;
  (void)value;
  if (common_setting(name))
    return 0;
  return distc__seterr(DISTC_EINVAL, "this cluster manager takes no --%s",
                       name);
}

static int no_event_fd(void *state) {
  (void)state;
  return -1;
}

int distc_manager_open(distc_manager *m, const char *name, bool verbose) {
  const distc_manager_ops *chosen = NULL;
  const char *why;
  char whybuf[128];
  int rc;

  m->ops = NULL;
  m->state = NULL;

  const char *env = getenv("DISTC_MANAGER");
  if (name != NULL && name[0] != '\0') {
    chosen = distc_manager_find(name);
    if (chosen == NULL)
      return unknown_manager(name, "--manager");
    why = "asked for with --manager";
  } else if (env != NULL && env[0] != '\0') {
    chosen = distc_manager_find(env);
    if (chosen == NULL)
      return unknown_manager(env, "$DISTC_MANAGER");
    why = "from $DISTC_MANAGER";
  } else {
    for (size_t i = 0; i < DISTC__ARRAY_LEN(managers); i++) {
      const distc_manager_ops *o = managers[i];
      if (o->detect == NULL || (chosen && o->priority <= chosen->priority))
        continue;
      if (o->detect())
        chosen = o;
    }
    if (chosen != NULL) {
      snprintf(whybuf, sizeof whybuf,
               "detected: running inside its allocation (priority %d)",
               chosen->priority);
      why = whybuf;
    } else {
      chosen = &distc_manager_local;
      why = "default: no batch allocation detected";
    }
  }

  /* The mandatory slots are the registration contract; a table without them
   * is a programming error in this file's list, but say so rather than
   * crash on the first call. */
  if (chosen->launch == NULL || chosen->signal == NULL || chosen->reap == NULL)
    return distc__seterr(DISTC_EINVAL,
                         "cluster manager '%s' lacks a mandatory operation "
                         "(launch, signal or reap); this is a bug in distc",
                         chosen->name);

  distc_manager_ops *ops = malloc(sizeof *ops);
  if (ops == NULL) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory opening manager '%s'",
                       chosen->name);
    goto fail_ops;
  }
  *ops = *chosen;
  if (ops->detect == NULL)
    ops->detect = default_detect;
  if (ops->nodes == NULL)
    ops->nodes = default_nodes;
  if (ops->destroy == NULL)
    ops->destroy = default_destroy;
  if (ops->event_fd == NULL)
    ops->event_fd = no_event_fd;
  if (ops->set_option == NULL)
    ops->set_option = no_options;

  /* calloc(1, 0) may legally return NULL; a manager without state still
   * gets a unique non-NULL pointer so NULL can mean "not open". */
  m->state = calloc(1, chosen->state_size ? chosen->state_size : 1);
  if (m->state == NULL) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory opening manager '%s'",
                       chosen->name);
    goto fail_state;
  }
  m->ops = ops;

  if (verbose)
    fprintf(stderr, "distc-launch: cluster manager %s (%s)\n", chosen->name,
            why);
  return 0;

fail_state:
  free(ops);
fail_ops:
  return rc;
}

void distc_manager_close(distc_manager *m) {
  if (m->ops == NULL)
    return;
  m->ops->destroy(m->state);
  free(m->state);
  free((distc_manager_ops *)m->ops);
  m->ops = NULL;
  m->state = NULL;
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

int distc_manager_stop(distc_manager *m, int sig, double timeout_s,
                       distc_exit_cb cb, void *arg) {
  int rc = 0;

  if (sig != 0)
    rc = m->ops->signal(m->state, sig);
  double deadline = now_s() + (timeout_s > 0 ? timeout_s : 0);
  int running = m->ops->reap(m->state, cb, arg);
  while (running > 0 && now_s() < deadline) {
    pause_poll();
    running = m->ops->reap(m->state, cb, arg);
  }
  if (running <= 0)
    return rc;

  /* SIGKILL cannot be caught, so every worker now dies; keep reaping until
   * the last one is gone, or it would be left a zombie (or, for a remote
   * manager, a process on another host). */
  int krc = m->ops->signal(m->state, SIGKILL);
  if (rc == 0)
    rc = krc;
  while ((running = m->ops->reap(m->state, cb, arg)) > 0)
    pause_poll();
  return rc;
}

void distc_host_free(distc_host *h, int n) {
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

/* startup.c — the one way a cluster starts, for distc-launch and
 * distc_addprocs alike:
 *
 *   choose → configure → nodes (and the launch half's prepare) → count →
 *   BLAS threads per host → launch
 *
 * What differs between the two callers (the launcher opens the listeners and
 * then starts the master; addprocs already has both) happens between
 * distc__startup_plan and distc__startup_launch.
 *
 * The cores of this host are counted only when something depends on them
 * (-p auto, the automatic BLAS count), from sysfs (cores.c), never hwloc:
 * loading a topology costs tens of milliseconds, a launch of 8 workers not
 * much more. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "manager.h"

static int configure(distc__startup *st) {
  distc_manager *m = &st->m;
  int rc = distc__manager_set_common(m, st->timeout_s, st->verbose,
                                     st->dry_run);
  for (int i = 0; i < st->nopts && rc == 0; i++) {
    const distc__mopt *o = &st->opts[i];
    const distc__option *d = distc__manager_option(o->name);
    if (d != NULL && d->has_arg && (o->value == NULL || o->value[0] == '\0'))
      return distc__seterr(DISTC_EINVAL,
                           "--%s needs a value; see distc-launch --help",
                           o->name);
    if (d != NULL && !d->has_arg && o->value != NULL)
      return distc__seterr(DISTC_EINVAL,
                           "--%s takes no value, got '%s'; write just --%s",
                           o->name, o->value, o->name);
    rc = distc__manager_set_option(m, o->name, o->value);
  }
  return rc;
}

static int choose_and_open(distc__startup *st) {
  const char **names = NULL;
  if (st->nopts > 0) {
    names = calloc((size_t)st->nopts, sizeof *names);
    if (names == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    for (int i = 0; i < st->nopts; i++)
      names[i] = st->opts[i].name;
  }
  const char *why = NULL;
  const distc__manager_def *def =
      distc__manager_choose(st->manager, names, st->nopts, &why);
  free(names);
  if (def == NULL)
    return DISTC_EINVAL;
  int rc = distc__manager_open(&st->m, def, st->launcher);
  if (rc == 0 && st->verbose)
    distc__log_print("cluster manager %s (%s)%s%s", def->name, why,
                     st->m.lau.name != def->launch->name ? ", launcher " : "",
                     st->m.lau.name != def->launch->name ? st->m.lau.name
                                                         : "");
  return rc;
}

int distc__startup_plan(distc__startup *st) {
  int rc, cores = 0;

  st->hosts = NULL;
  st->nhosts = st->count = st->here = st->blas_here = 0;
  if ((rc = choose_and_open(st)) != 0)
    return rc;
  if ((rc = configure(st)) != 0)
    goto close_manager;

  /* A remote manager starts workers here only when -p asks for them. */
  bool remote = distc__manager_remote(&st->m);
  int here = 0;
  if (!st->outside_only && (st->procs_given || !remote)) {
    if (st->procs > 0) {
      here = st->procs;
    } else {
      cores = distc__host_cores();
      here = cores;
    }
  }
  if ((rc = distc__manager_nodes(&st->m, here, &st->hosts, &st->nhosts)) != 0)
    goto close_manager;

  for (int i = 0; i < st->nhosts; i++) {
    int n = st->hosts[i].slots > 0 ? st->hosts[i].slots : 0;
    if (st->limit > 0 && st->count + n > st->limit)
      n = st->limit - st->count;
    st->count += n;
    if (st->hosts[i].here)
      st->here += n;
  }
  if (st->count <= 0 && !st->outside_only) {
    rc = distc__seterr(DISTC_EINVAL,
                       "the %s manager has no slots for workers; give -p N",
                       distc__manager_name(&st->m));
    goto free_hosts;
  }
  if (st->limit > 0 && st->count < st->limit) {
    rc = distc__seterr(DISTC_EINVAL,
                       "%s wants %d workers but the hosts give %d slots; "
                       "give count 0 for all of them",
                       st->who ? st->who : "distc", st->limit, st->count);
    goto free_hosts;
  }

  /* The one rule: a host's physical cores (or the CPUs its allocation
   * gives it) over the workers on it; each other host applies it to itself
   * (blas_auto). */
  st->blas_here = st->blas_threads;
  if (st->blas_here == 0) {
    int cpus = 0;
    for (int i = 0; i < st->nhosts; i++)
      if (st->hosts[i].here && st->hosts[i].cpus > 0)
        cpus = st->hosts[i].cpus;
    if (cpus == 0 && cores == 0 && st->here > 0)
      cores = distc__host_cores();
    st->blas_here = distc__blas_threads(cpus ? cpus : cores,
                                        st->here + st->workers_before);
  }
  st->workdir = st->m.res.workdir(st->m.rstate);
  if (st->verbose) {
    if (remote)
      distc__log_print("%d workers, %d of them on this host; BLAS/OpenMP "
                       "threads: %s",
                       st->count, st->here,
                       st->blas_threads ? "as given"
                                        : "cores / workers of each host");
    else if (cores > 0)
      distc__log_print("%d workers, %d BLAS/OpenMP threads each (%d cores "
                       "here)",
                       st->count, st->blas_here, cores);
    else
      distc__log_print("%d workers, %d BLAS/OpenMP threads each", st->count,
                       st->blas_here);
  }
  return 0;

free_hosts:
  distc__startup_free(st);
close_manager:
  distc__manager_close(&st->m);
  return rc;
}

int distc__startup_launch(distc__startup *st, const distc__startup_run *run) {
  distc_launch_spec spec = {
      .count = st->count,
      .first_index = run->first_index,
      .exename = run->exename,
      .argv = run->argv,
      .dir = run->dir,
      .env = run->env,
      .master_addr = run->master_addr,
      .secret = run->secret,
      .blas_threads = st->blas_here,
      .blas_auto = st->blas_threads == 0,
      .bind_cpu = run->bind_cpu,
      .verbose = st->verbose,
      .dry_run = st->dry_run,
      .started = run->started,
      .local_addr = run->local_addr,
      .hosts = st->hosts,
      .nhosts = st->nhosts,
  };
  int rc = distc__manager_launch(&st->m, &spec);
  if (rc == 0 && run->started != NULL && *run->started > st->count)
    *run->started = st->count;
  return rc;
}

void distc__startup_free(distc__startup *st) {
  distc__host_free(st->hosts, st->nhosts);
  st->hosts = NULL;
  st->nhosts = 0;
}

char *distc__startup_hostmap(const distc__startup *st, int started) {
  if (started != st->count || st->count <= 0)
    return NULL;
  size_t cap = 1;
  for (int i = 0; i < st->nhosts; i++)
    cap += strlen(st->hosts[i].name) + 16;
  char *s = malloc(cap), *p = s;
  if (s == NULL)
    return NULL;
  *s = '\0';
  /* As the launch halves number them: this host's workers, then each
   * other host's in order, until the count is reached. */
  int left = st->count;
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < st->nhosts && left > 0; i++) {
      int n = st->hosts[i].slots > 0 ? st->hosts[i].slots : 0;
      if (n > left)
        n = left;
      if (n <= 0 || st->hosts[i].here != (pass == 0))
        continue;
      left -= n;
      p += snprintf(p, cap - (size_t)(p - s), "%s%s:%d", p > s ? "," : "",
                    st->hosts[i].name, n);
    }
  }
  return s;
}

/* slurm_layout.c — hosts, slots and BLAS threads of a SLURM allocation from
 * the job's environment (see slurm_layout.h). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "slurm_api.h"
#include "slurm_layout.h"

const char *distc__slurm_env(const char *const *env, const char *key) {
  if (!env)
    return getenv(key);
  size_t k = strlen(key);
  for (; *env; env++)
    if (strncmp(*env, key, k) == 0 && (*env)[k] == '=')
      return *env + k + 1;
  return NULL;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

int distc__slurm_nodelist(const char *list, char ***hosts, int *n) {
  *hosts = NULL;
  *n = 0;
  if (!list || !*list)
    return distc__seterr(DISTC_EINVAL, "the SLURM node list is empty: run "
                                       "inside an allocation (sbatch, salloc)");
  int rc = distc__slurm_load();
  if (rc)
    return rc;
  hostlist_t hl = slurm_hostlist_create(list);
  if (!hl)
    return distc__seterr(DISTC_EINVAL, "libslurm cannot read the node list "
                                       "'%s'", list);
  int cap = slurm_hostlist_count(hl);
  char **names = NULL;
  int got = 0;
  if (cap <= 0) {
    rc = distc__seterr(DISTC_EINVAL, "the node list '%s' names no node", list);
    goto out_hl;
  }
  names = calloc((size_t)cap, sizeof *names);
  if (!names) {
    rc = distc__seterr(DISTC_ENOMEM, "no memory for %d node names", cap);
    goto out_hl;
  }
  char *h;
  while (got < cap && (h = slurm_hostlist_shift(hl))) {
    /* libslurm's string: copy it so that callers free with free() */
    bool ok = distc__slurm_hostname_ok(h);
    if (ok)
      names[got] = strdup(h);
    if (!ok)
      rc = distc__seterr(DISTC_EINVAL, "the node list '%s' gives '%s', which "
                                       "is no host name: check its brackets "
                                       "and commas", list, h);
    free(h);
    if (rc)
      goto out_names;
    if (!names[got]) {
      rc = distc__seterr(DISTC_ENOMEM, "no memory for a node name");
      goto out_names;
    }
    got++;
  }
  if (got != cap) {
    rc = distc__seterr(DISTC_EINVAL, "libslurm counted %d nodes in '%s' but "
                                     "gave %d", cap, list, got);
    goto out_names;
  }
  slurm_hostlist_destroy(hl);
  *hosts = names;
  *n = got;
  return 0;
out_names:
  free_names(names, got);
out_hl:
  slurm_hostlist_destroy(hl);
  return rc;
}

/* A positive decimal number at *p, advancing past it; -1 if none. */
static int number(const char **p) {
  const char *s = *p;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (errno || v <= 0 || v > INT_MAX)
    return -1;
  *p = end;
  return (int)v;
}

int distc__slurm_counts(const char *var, const char *value, int n,
                        int **counts) {
  *counts = NULL;
  if (!value || !*value)
    return distc__seterr(DISTC_EINVAL, "%s is not set: run inside an "
                                       "allocation (sbatch, salloc)", var);
  int *c = calloc(n > 0 ? (size_t)n : 1, sizeof *c);
  if (!c)
    return distc__seterr(DISTC_ENOMEM, "no memory for %d counts", n);
  int got = 0;
  const char *p = value;
  for (;;) {
    int v = number(&p), reps = 1;
    if (v < 0)
      goto bad;
    if (*p == '(') {
      if (p[1] != 'x')
        goto bad;
      p += 2;
      if ((reps = number(&p)) < 0 || *p != ')')
        goto bad;
      p++;
    }
    if (reps > n - got)
      goto count;
    for (int i = 0; i < reps; i++)
      c[got++] = v;
    if (*p == '\0')
      break;
    if (*p != ',')
      goto bad;
    p++;
  }
  if (got != n)
    goto count;
  *counts = c;
  return 0;
bad:
  free(c);
  return distc__seterr(DISTC_EINVAL, "%s='%s' is not SLURM's per-node count "
                                     "form (e.g. '2(x3),1'): near '%s'",
                       var, value, p);
count:
  free(c);
  return distc__seterr(DISTC_EINVAL, "%s='%s' does not describe the %d "
                                     "node(s) of SLURM_JOB_NODELIST",
                       var, value, n);
}

int distc__slurm_spread(const int *held, int n, int requested, int *workers) {
  long total = 0;
  for (int i = 0; i < n; i++)
    total += held[i];
  if (requested <= 0) {
    memcpy(workers, held, (size_t)n * sizeof *workers);
    return 0;
  }
  if (requested > total)
    return distc__seterr(DISTC_EINVAL,
                         "-p %d asks for more workers than the SLURM "
                         "allocation holds: %ld slot(s) on %d node(s); ask "
                         "for at most -p %ld, or allocate more (e.g. sbatch "
                         "-N/--ntasks-per-node)",
                         requested, total, n, total);
  memset(workers, 0, (size_t)n * sizeof *workers);
  for (int left = requested; left > 0;)
    for (int i = 0; i < n && left > 0; i++)
      if (workers[i] < held[i]) {
        workers[i]++;
        left--;
      }
  return 0;
}

void distc__slurm_layout_free(distc__slurm_layout *l) {
  free(l->job_id);
  free(l->nodelist);
  free_names(l->hosts, l->nhosts);
  free(l->held);
  free(l->cpus);
  free(l->workers);
  free(l->blas);
  memset(l, 0, sizeof *l);
}

int distc__slurm_layout_get(const char *const *env, int requested,
                            distc__slurm_layout *l) {
  memset(l, 0, sizeof *l);
  const char *id = distc__slurm_env(env, "SLURM_JOB_ID");
  const char *list = distc__slurm_env(env, "SLURM_JOB_NODELIST");
  if (!list)
    list = distc__slurm_env(env, "SLURM_NODELIST");
  if (!id || !*id || !list || !*list)
    return distc__seterr(DISTC_EINVAL,
                         "not inside a SLURM allocation (SLURM_JOB_ID and "
                         "SLURM_JOB_NODELIST unset): run distc-launch in an "
                         "sbatch script or salloc shell");
  int rc = 0;
  if (!(l->job_id = strdup(id)) || !(l->nodelist = strdup(list))) {
    rc = distc__seterr(DISTC_ENOMEM, "no memory");
    goto fail;
  }
  if ((rc = distc__slurm_nodelist(list, &l->hosts, &l->nhosts)))
    goto fail;
  const char *cpus = distc__slurm_env(env, "SLURM_JOB_CPUS_PER_NODE");
  const char *ntasks = distc__slurm_env(env, "SLURM_NTASKS");
  if (!ntasks)
    ntasks = distc__slurm_env(env, "SLURM_NPROCS");
  /* Without a task count (salloc -N2, sbatch -N2) SLURM still writes
   * SLURM_TASKS_PER_NODE, one per node: the CPUs are what the job holds. */
  l->slots_from = ntasks ? "SLURM_TASKS_PER_NODE" : "SLURM_JOB_CPUS_PER_NODE";
  if ((rc = distc__slurm_counts(l->slots_from,
                                distc__slurm_env(env, l->slots_from),
                                l->nhosts, &l->held)))
    goto fail;
  if (cpus) {
    if ((rc = distc__slurm_counts("SLURM_JOB_CPUS_PER_NODE", cpus, l->nhosts,
                                  &l->cpus)))
      goto fail;
  } else if (!(l->cpus = malloc((size_t)l->nhosts * sizeof *l->cpus))) {
    rc = distc__seterr(DISTC_ENOMEM, "no memory");
    goto fail;
  } else {
    memcpy(l->cpus, l->held, (size_t)l->nhosts * sizeof *l->cpus);
  }
  l->workers = calloc((size_t)l->nhosts, sizeof *l->workers);
  l->blas = calloc((size_t)l->nhosts, sizeof *l->blas);
  if (!l->workers || !l->blas) {
    rc = distc__seterr(DISTC_ENOMEM, "no memory");
    goto fail;
  }
  if ((rc = distc__slurm_spread(l->held, l->nhosts, requested, l->workers)))
    goto fail;
  for (int i = 0; i < l->nhosts; i++) {
    l->total_held += l->held[i];
    l->total_workers += l->workers[i];
    /* the node's CPUs shared among its workers, as for every host */
    l->blas[i] = l->workers[i] > 0 && l->cpus[i] / l->workers[i] > 1
                     ? l->cpus[i] / l->workers[i]
                     : 1;
  }
  return 0;
fail:
  distc__slurm_layout_free(l);
  return rc;
}

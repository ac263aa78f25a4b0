/* pbs.c — the pbs manager's resource half: the nodes of the PBS job this
 * runs in (PBS Pro, OpenPBS, Torque), from $PBS_NODEFILE.  Paired with the
 * ssh launch half (PBS sites allow SSH between a job's own nodes), as Hydra
 * pairs its PBS resource manager with its ssh bootstrap.
 *
 * The node file has one line per slot: a host repeated once per process
 * the job asked for (Torque `nodes=2:ppn=4`, PBS Pro `select=2:ncpus=4:
 * mpiprocs=4`), short or fully qualified names, the first node first.
 * Without -p every line is a worker, as mpirun does; -p N spreads N over
 * the nodes, one at a time in node order, never more than a node's lines.
 * The node this runs on (the job's first, usually) gets its workers as
 * children of distc-launch rather than over SSH. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"

/* Longest host name a node file line may hold (RFC 1035: 253). */
#define PBS_NAME_MAX 255

static bool pbs_detect(void) {
  const char *job = getenv("PBS_JOBID"), *file = getenv("PBS_NODEFILE");
  const char *env = getenv("PBS_ENVIRONMENT");
  if (job == NULL || job[0] == '\0' || file == NULL || file[0] == '\0')
    return false;
  /* Set by every PBS flavour for a job; a login shell that merely kept the
   * variables of an old job says something else (or nothing). */
  return env == NULL || strcmp(env, "PBS_BATCH") == 0 ||
         strcmp(env, "PBS_INTERACTIVE") == 0;
}

/* This host's names: the one it reports, and its short form. */
static bool is_this_host(const char *name) {
  char me[PBS_NAME_MAX + 1];
  const char *fake = getenv("DISTC_HOSTNAME"); /* the runtime's, for tests */
  if (fake != NULL && fake[0] != '\0')
    snprintf(me, sizeof me, "%s", fake);
  else if (gethostname(me, sizeof me) != 0)
    return false;
  me[sizeof me - 1] = '\0';
  if (strcmp(me, name) == 0)
    return true;
  size_t a = strcspn(me, "."), b = strcspn(name, ".");
  return a == b && strncmp(me, name, a) == 0;
}

static bool host_char(char c) {
  return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* Adds one slot on `name`, keeping the order of first appearance. */
static int add_slot(distc_host **hosts, int *n, int *cap, const char *name) {
  for (int i = 0; i < *n; i++)
    if (strcmp((*hosts)[i].name, name) == 0) {
      (*hosts)[i].slots++;
      return 0;
    }
  if (*n == *cap) {
    int ncap = *cap ? *cap * 2 : 16;
    distc_host *grown = realloc(*hosts, (size_t)ncap * sizeof *grown);
    if (grown == NULL)
      return DISTC_ENOMEM;
    *hosts = grown;
    *cap = ncap;
  }
  distc_host *h = &(*hosts)[*n];
  *h = (distc_host){.name = strdup(name), .slots = 1};
  if (h->name == NULL)
    return DISTC_ENOMEM;
  (*n)++;
  return 0;
}

/* The node file as hosts and slots; errors name the file and the line. */
static int read_nodefile(const char *path, distc_host **hosts, int *nhosts) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return distc__seterr(DISTC_EINVAL,
                         "PBS_NODEFILE %s: %s; is this a PBS job (qsub) on "
                         "a node that sees the file?",
                         path, strerror(errno));
  distc_host *h = NULL;
  int n = 0, cap = 0, lineno = 0, rc = 0;
  char *line = NULL;
  size_t len = 0;
  while (getline(&line, &len, f) > 0) {
    lineno++;
    /* CRLF files, trailing blanks, blank lines: all seen in the wild. */
    char *s = line;
    while (isspace((unsigned char)*s))
      s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
      *--e = '\0';
    if (*s == '\0')
      continue;
    size_t good = 0;
    while (s[good] && host_char(s[good]))
      good++;
    if (s[good] != '\0' || good > PBS_NAME_MAX) {
      rc = distc__seterr(DISTC_EINVAL,
                         "%s:%d: '%.64s' is not a host name; a PBS node file "
                         "has one host name per line",
                         path, lineno, s);
      goto fail;
    }
    if (add_slot(&h, &n, &cap, s) != 0) {
      rc = distc__seterr(DISTC_ENOMEM, "out of memory reading %s", path);
      goto fail;
    }
  }
  if (ferror(f)) {
    rc = distc__seterr(DISTC_EIO, "cannot read %s: %s", path,
                       strerror(errno));
    goto fail;
  }
  if (n == 0) {
    rc = distc__seterr(DISTC_EINVAL,
                       "%s lists no nodes; is PBS_NODEFILE the job's node "
                       "file?",
                       path);
    goto fail;
  }
  free(line);
  fclose(f);
  *hosts = h;
  *nhosts = n;
  return 0;

fail:
  free(line);
  fclose(f);
  distc__host_free(h, n);
  return rc;
}

/* CPUs the job holds per node, for the BLAS threads of its workers: PBS
 * Pro's NCPUS (of the chunk), Torque's PBS_NUM_PPN; 0 when neither says. */
static int job_cpus(void) {
  static const char *const vars[] = {"NCPUS", "PBS_NUM_PPN"};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(vars); i++) {
    const char *v = getenv(vars[i]);
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    if (v != NULL && *v != '\0' && *end == '\0' && n > 0 && n <= 1 << 20)
      return (int)n;
  }
  return 0;
}

static int pbs_nodes(void *state, int here, distc_host **hosts,
                     int *nhosts) {
  (void)state;
  const char *path = getenv("PBS_NODEFILE");
  if (path == NULL || path[0] == '\0')
    return distc__seterr(DISTC_EINVAL,
                         "the pbs manager runs inside a PBS job: "
                         "PBS_NODEFILE is not set; submit with qsub, or use "
                         "--manager ssh --hosts ...");
  distc_host *h = NULL;
  int n = 0;
  int rc = read_nodefile(path, &h, &n);
  if (rc != 0)
    return rc;
  int total = 0;
  for (int i = 0; i < n; i++)
    total += h[i].slots;
  /* -p N: N workers over the nodes, one at a time in node order. */
  if (here > 0) {
    if (here > total) {
      distc__host_free(h, n);
      return distc__seterr(DISTC_EINVAL,
                           "-p %d is more workers than the job holds: %s "
                           "lists %d slot%s on %d node%s; give -p %d or "
                           "less, or ask qsub for more",
                           here, path, total, total == 1 ? "" : "s", n,
                           n == 1 ? "" : "s", total);
    }
    int *want = calloc((size_t)n, sizeof *want);
    if (want == NULL) {
      distc__host_free(h, n);
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    }
    for (int left = here; left > 0;)
      for (int i = 0; i < n && left > 0; i++)
        if (want[i] < h[i].slots) {
          want[i]++;
          left--;
        }
    for (int i = 0; i < n; i++)
      h[i].slots = want[i];
    free(want);
  }
  int cpus = job_cpus();
  for (int i = 0; i < n; i++) {
    h[i].here = is_this_host(h[i].name);
    h[i].cpus = cpus;
  }
  *hosts = h;
  *nhosts = n;
  return 0;
}

/* The directory qsub was run from, where a job's processes work unless
 * --dir says otherwise. */
static const char *pbs_workdir(void *state) {
  (void)state;
  const char *d = getenv("PBS_O_WORKDIR");
  return d != NULL && d[0] == '/' ? d : NULL;
}

const distc__resource_ops distc__resource_pbs = {
    .name = "pbs",
    .title = NULL,
    .options = NULL,
    .remote = true,
    .detect = pbs_detect,
    .nodes = pbs_nodes,
    .workdir = pbs_workdir,
};

/* slurm_layout.h — where workers go inside a SLURM allocation, computed
 * from the environment SLURM gives a job (no daemon is asked).
 *
 * The node names come from SLURM_JOB_NODELIST expanded by libslurm's
 * hostlist API (never a parser of our own); the slots of each node from
 * SLURM_TASKS_PER_NODE when the job was given a task count (SLURM_NTASKS
 * set), else from SLURM_JOB_CPUS_PER_NODE, both in SLURM's compressed form
 * "2(x3),1" = 2,2,2,1. */
#ifndef DISTC_SLURM_LAYOUT_H
#define DISTC_SLURM_LAYOUT_H

typedef struct distc__slurm_layout {
  char *job_id;      /* SLURM_JOB_ID */
  char *nodelist;    /* SLURM_JOB_NODELIST as given */
  int nhosts;
  char **hosts;      /* the allocation's nodes, in SLURM's order */
  int *held;         /* slots the allocation holds on each node */
  int *cpus;         /* CPUs of the job on each node */
  int *workers;      /* workers to start on each node (may be 0) */
  int *blas;         /* BLAS/OpenMP threads per worker on each node */
  int total_held;
  int total_workers;
  /* which variable gave the slots: "SLURM_TASKS_PER_NODE" or
   * "SLURM_JOB_CPUS_PER_NODE" (for -v) */
  const char *slots_from;
} distc__slurm_layout;

/* Expands a SLURM node list ("n[1-3,7]", "a1,b[01-02]") with libslurm into
 * *n names the caller frees with distc_host_free-like loops (free each, then
 * the array).  DISTC_EINVAL, quoting the list, when libslurm refuses it or
 * gives back something that is no host name (it accepts "b[" as "b]");
 * DISTC_ENOTSUP when libslurm cannot be loaded. */
int distc__slurm_nodelist(const char *list, char ***hosts, int *n);

/* Expands the per-node count form of variable `var` ("2(x3),1") into n
 * counts (malloc'd, the caller frees).  DISTC_EINVAL naming var and value
 * when it is malformed or does not describe exactly n nodes. */
int distc__slurm_counts(const char *var, const char *value, int n,
                        int **counts);

/* Spreads `requested` workers over nodes holding held[0..n-1] slots: one
 * per node in turn while a node has room, so every node gets a share
 * before any gets a second.  requested <= 0: one per held slot.
 * DISTC_EINVAL when requested exceeds the sum, saying what is held. */
int distc__slurm_spread(const int *held, int n, int requested, int *workers);

/* The layout of the allocation described by env ("K=V" entries,
 * NULL-terminated; NULL: this process's environment) for `requested`
 * workers (<= 0: one per held slot).  0, or DISTC_EINVAL /
 * DISTC_ENOTSUP with a message.  On success free with
 * distc__slurm_layout_free. */
int distc__slurm_layout_get(const char *const *env, int requested,
                            distc__slurm_layout *l);
void distc__slurm_layout_free(distc__slurm_layout *l);

/* The value of `key` in env (NULL: getenv), or NULL. */
const char *distc__slurm_env(const char *const *env, const char *key);

#endif

/* slurm.c — the slurm manager's resource half: inside an allocation
 * (sbatch, salloc), the allocation's nodes and slots, from the environment
 * SLURM gives the job (slurm_layout.c).  Its launch half is srun.c: one
 * srun step, one proxy per node.
 *
 * -p N spreads N workers over the allocation (an error if it holds fewer
 * slots); without -p one worker per slot, as srun would start tasks.  No
 * worker runs outside the allocation: the master's host is one of its nodes
 * in a batch script, and a login node in a salloc shell. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "manager.h"
#include "slurm_layout.h"

typedef struct slurm_state {
  bool verbose;
} slurm_state;

static int slurm_set_option(void *state, const char *name, const char *value) {
  slurm_state *s = state;
  (void)value;
  if (strcmp(name, "verbose") == 0)
    s->verbose = true;
  return 0; /* the other common settings */
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
  /* here: the workers -p asked for (0 without -p): spread them over the
   * allocation, since none of them is meant for this host alone. */
  int rc = distc__slurm_layout_get(NULL, here, &l);
  if (rc != 0)
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

const distc__resource_ops distc__resource_slurm = {
    .name = "slurm",
    .title = "inside a SLURM allocation (sbatch, salloc): its nodes; -p N "
             "spreads N workers over them",
    .options = NULL,
    .state_size = sizeof(slurm_state),
    .remote = true,
    .spreads_procs = true,
    .set_option = slurm_set_option,
    .detect = slurm_detect,
    .nodes = slurm_nodes,
};

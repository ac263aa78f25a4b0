/* topology.c — cores and CPUs of this host, from hwloc.
 *
 * Loaded only when needed (-p auto, --bind, the automatic BLAS thread
 * count): discovery reads sysfs and costs milliseconds.  hwloc's default
 * topology holds only the PUs this process may use (cgroup cpuset, taskset),
 * so "cores" means cores we can run on, as `hwloc-calc` counts them. */
#include <errno.h>
#include <hwloc.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "launcher.h"

struct distc__topology {
  hwloc_topology_t topo;
  hwloc_obj_type_t unit; /* CORE, or PU where the platform has no cores */
  int nunits;
};

int distc__topology_open(distc__topology **out) {
  distc__topology *t = calloc(1, sizeof *t);
  int rc;

  if (t == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory reading the topology");
  if (hwloc_topology_init(&t->topo) != 0) {
    rc = distc__seterr(DISTC_EIO, "hwloc cannot start: %s", strerror(errno));
    goto free_t;
  }
  if (hwloc_topology_load(t->topo) != 0) {
    rc = distc__seterr(DISTC_EIO,
                       "hwloc cannot read this host's topology: %s; give -p N "
                       "and --blas-threads N to do without it",
                       strerror(errno));
    goto destroy_topo;
  }
  t->unit = HWLOC_OBJ_CORE;
  t->nunits = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_CORE);
  if (t->nunits <= 0) {
    t->unit = HWLOC_OBJ_PU;
    t->nunits = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PU);
  }
  if (t->nunits <= 0) {
    rc = distc__seterr(DISTC_EIO,
                       "hwloc found no cores on this host; give -p N and "
                       "--blas-threads N");
    goto destroy_topo;
  }
  *out = t;
  return 0;

destroy_topo:
  hwloc_topology_destroy(t->topo);
free_t:
  free(t);
  return rc;
}

void distc__topology_close(distc__topology *t) {
  if (t == NULL)
    return;
  hwloc_topology_destroy(t->topo);
  free(t);
}

int distc__topology_cores(const distc__topology *t) { return t->nunits; }

int distc__topology_core_cpu(const distc__topology *t, int core) {
  hwloc_obj_t obj =
      hwloc_get_obj_by_type(t->topo, t->unit, (unsigned)(core % t->nunits));
  if (obj == NULL || obj->cpuset == NULL)
    return -1;
  return hwloc_bitmap_first(obj->cpuset);
}

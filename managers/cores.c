/* cores.c — this host's physical cores, counted the way the SSH manager's
 * `host:auto` asks a remote host (DISTC_CORES_SH), so both agree.
 *
 * Without hwloc on purpose: this runs inside libdistc on remote hosts (the
 * proxy), which must not need more than the program itself links. */
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"

#define SYS_CPU "/sys/devices/system/cpu"

/* CPUs this process may run on (taskset, cgroup cpuset). */
static int allowed_cpus(void) {
  for (int ncpu = CPU_SETSIZE; ncpu <= (1 << 20); ncpu *= 2) {
    cpu_set_t *set = CPU_ALLOC(ncpu);
    if (set == NULL)
      return -1;
    size_t size = CPU_ALLOC_SIZE(ncpu);
    if (sched_getaffinity(0, size, set) == 0) {
      int n = CPU_COUNT_S(size, set);
      CPU_FREE(set);
      return n;
    }
    CPU_FREE(set);
  }
  return -1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Distinct thread_siblings_list values: one per physical core. */
static int physical_cores(void) {
  DIR *d = opendir(SYS_CPU);
  if (d == NULL)
    return -1;
  char **lists = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "cpu", 3) != 0 || e->d_name[3] < '0' ||
        e->d_name[3] > '9')
      continue;
    char path[512], buf[256];
    snprintf(path, sizeof path, SYS_CPU "/%s/topology/thread_siblings_list",
             e->d_name);
    FILE *f = fopen(path, "re");
    if (f == NULL)
      continue;
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok)
      continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      char **grown = realloc(lists, ncap * sizeof *grown);
      if (grown == NULL)
        break;
      lists = grown;
      cap = ncap;
    }
    if ((lists[n] = strdup(buf)) != NULL)
      n++;
  }
  closedir(d);
  int count = 0;
  if (n > 0) {
    qsort(lists, n, sizeof *lists, cmp_str);
    count = 1;
    for (size_t i = 1; i < n; i++)
      count += strcmp(lists[i], lists[i - 1]) != 0;
  }
  for (size_t i = 0; i < n; i++)
    free(lists[i]);
  free(lists);
  return count > 0 ? count : -1;
}

int distc__host_cores(void) {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int allowed = allowed_cpus();
  int physical = physical_cores();
  if (online < 1)
    online = 1;
  if (allowed < 1)
    allowed = (int)online;
  if (physical < 1)
    physical = (int)online;
  long cores = (long)physical * allowed / online;
  return cores >= 1 ? (int)cores : 1;
}

int distc__blas_threads(int cores, int workers) {
  if (workers < 1)
    workers = 1;
  return cores / workers > 1 ? cores / workers : 1;
}

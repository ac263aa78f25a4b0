/* slurm_prog.c — the libdistc program the SLURM tests run on the testbed's
 * nodes.
 *
 *   slurm_prog where          one line per process: "master on HOST", then
 *                             "worker ID on HOST" for each worker
 *   slurm_prog exit N         where, then the master exits with status N
 *   slurm_prog hang           where, "ready", then waits to be killed
 *   slurm_prog noop           one no-op call on each worker (the benchmark)
 *   slurm_prog addprocs N     where, then distc_addprocs of N workers with
 *                             the slurm manager, where again
 *   slurm_prog worker-exit N  where, then the last worker exits with status
 *                             N by itself; the master ends with 0
 *
 * Each node of the testbed has its own hostname (UTS namespace), so the
 * host a worker names is the node it runs on. */
#include <distc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXW 256

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "slurm_prog: %s: %s\n", what, distc_errmsg());
    exit(1);
  }
}

DISTC_FUNCTION(hostname) {
  (void)args;
  (void)ctx;
  char h[256];
  if (gethostname(h, sizeof h) != 0)
    strcpy(h, "?");
  return distc_string(h);
}

DISTC_FUNCTION(exit_with) {
  (void)ctx;
  fflush(stdout);
  _exit((int)distc_value_int(distc_list_at(args, 0)));
}

DISTC_FUNCTION(noop) {
  (void)args;
  (void)ctx;
  return distc_nil();
}

static int workers(int *ids) {
  int n = distc_workers(ids, MAXW);
  return n == 1 && ids[0] == DISTC_MASTER ? 0 : n;
}

static void print_where(void) {
  int ids[MAXW];
  char h[256];
  gethostname(h, sizeof h);
  printf("master on %s\n", h);
  int n = workers(ids);
  for (int i = 0; i < n; i++) {
    distc_value *v;
    check(distc_remotecall_fetch(ids[i], "hostname", NULL, &v), "hostname");
    printf("worker %d on %s\n", ids[i], distc_value_str(v, NULL));
    distc_value_free(v);
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  check(distc_init(&argc, &argv), "distc_init");
  const char *what = argc > 1 ? argv[1] : "where";
  if (strcmp(what, "where") == 0) {
    print_where();
  } else if (strcmp(what, "exit") == 0 && argc > 2) {
    print_where();
    check(distc_finalize(), "distc_finalize");
    return atoi(argv[2]);
  } else if (strcmp(what, "hang") == 0) {
    print_where();
    printf("ready\n");
    fflush(stdout);
    for (;;)
      pause();
  } else if (strcmp(what, "noop") == 0) {
    int ids[MAXW], n = workers(ids);
    for (int i = 0; i < n; i++) {
      distc_value *v;
      check(distc_remotecall_fetch(ids[i], "noop", NULL, &v), "noop");
      distc_value_free(v);
    }
  } else if (strcmp(what, "addprocs") == 0 && argc > 2) {
    print_where();
    distc_addprocs_opts o = {.count = atoi(argv[2]), .manager = "slurm",
                             .timeout_s = 30};
    int added[MAXW];
    int k = distc_addprocs(&o, added);
    if (k < 0) {
      fprintf(stderr, "slurm_prog: addprocs: %s\n", distc_errmsg());
      return 3;
    }
    printf("added %d\n", k);
    print_where();
  } else if (strcmp(what, "worker-exit") == 0 && argc > 2) {
    print_where();
    int ids[MAXW], n = workers(ids);
    distc_value *a = distc_listv(1, distc_int(atoi(argv[2]))), *v = NULL;
    /* fails: the worker is gone before it answers */
    distc_remotecall_fetch(ids[n - 1], "exit_with", a, &v);
    distc_value_free(v);
    distc_value_free(a);
  } else {
    fprintf(stderr, "slurm_prog: unknown case '%s'\n", what);
    return 2;
  }
  check(distc_finalize(), "distc_finalize");
  return 0;
}

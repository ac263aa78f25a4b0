/* test_slurm_layout.c — the slurm manager's resource computations
 * (managers/slurm_layout.c) without any daemon: node lists expanded
 * through libslurm's hostlist API, SLURM's per-node count forms, -p spread
 * over an allocation, BLAS threads per node, and the environments real jobs
 * saw (the files in env/, captured on tests/slurm/testbed.sh's cluster).
 * Usage: test_slurm_layout ENV_DIR.  Ends with "N passed, M failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "common.h"
#include "slurm_layout.h"

static const char *env_dir;

/* "a b c" joined from names, for comparing lists in one CHECK. */
static void join(char *buf, size_t cap, char **names, int n) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? " " : "", names[i]);
}

static void join_int(char *buf, size_t cap, const int *v, int n) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? "," : "", v[i]);
}

static void nodelist_ok(const char *list, const char *want) {
  char **h;
  int n;
  int rc = distc__slurm_nodelist(list, &h, &n);
  CHECK(rc == 0, "'%s': %s", list, distc_errmsg());
  if (rc)
    return;
  char got[512];
  join(got, sizeof got, h, n);
  CHECK(strcmp(got, want) == 0, "'%s' gave '%s', want '%s'", list, got, want);
  for (int i = 0; i < n; i++)
    free(h[i]);
  free(h);
}

static void nodelist_bad(const char *list, const char *in_msg) {
  char **h = (char **)1;
  int n = -1;
  int rc = distc__slurm_nodelist(list, &h, &n);
  CHECK(rc == DISTC_EINVAL, "'%s' accepted (rc %d)", list, rc);
  CHECK(h == NULL && n == 0, "'%s': outputs not cleared", list);
  CHECK(strstr(distc_errmsg(), in_msg) != NULL, "'%s': message '%s' lacks '%s'",
        list, distc_errmsg(), in_msg);
}

static void counts_ok(const char *value, int n, const char *want) {
  int *c;
  int rc = distc__slurm_counts("SLURM_TASKS_PER_NODE", value, n, &c);
  CHECK(rc == 0, "'%s' x%d: %s", value, n, distc_errmsg());
  if (rc)
    return;
  char got[256];
  join_int(got, sizeof got, c, n);
  CHECK(strcmp(got, want) == 0, "'%s' gave %s, want %s", value, got, want);
  free(c);
}

static void counts_bad(const char *value, int n) {
  int *c = (int *)1;
  int rc = distc__slurm_counts("SLURM_TASKS_PER_NODE", value, n, &c);
  CHECK(rc == DISTC_EINVAL && c == NULL, "'%s' x%d accepted", value, n);
  CHECK(strstr(distc_errmsg(), "SLURM_TASKS_PER_NODE") != NULL,
        "'%s': message '%s' does not name the variable", value, distc_errmsg());
}

static void spread(const int *held, int n, int p, const char *want) {
  int w[16];
  int rc = distc__slurm_spread(held, n, p, w);
  if (!want) {
    CHECK(rc == DISTC_EINVAL, "-p %d over %d nodes accepted", p, n);
    return;
  }
  CHECK(rc == 0, "-p %d: %s", p, distc_errmsg());
  char got[256];
  join_int(got, sizeof got, w, n);
  CHECK(strcmp(got, want) == 0, "-p %d gave %s, want %s", p, got, want);
}

/* Reads env/NAME as a NULL-terminated "K=V" array. */
static char **load_env(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", env_dir, name);
  FILE *f = fopen(path, "r");
  if (!f) {
    CHECK(f != NULL, "cannot open %s", path);
    return NULL;
  }
  char **env = calloc(256, sizeof *env);
  char line[4096];
  int n = 0;
  while (n < 255 && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0])
      env[n++] = strdup(line);
  }
  fclose(f);
  return env;
}

static void free_env(char **env) {
  for (int i = 0; env && env[i]; i++)
    free(env[i]);
  free(env);
}

/* The layout of a captured environment for -p p: hosts, held slots,
 * workers and BLAS threads per node. */
static void layout(const char *file, int p, const char *hosts,
                   const char *held, const char *workers, const char *blas,
                   const char *slots_from) {
  char **env = load_env(file);
  if (!env)
    return;
  distc__slurm_layout l;
  int rc = distc__slurm_layout_get((const char *const *)env, p, &l);
  CHECK(rc == 0, "%s -p %d: %s", file, p, distc_errmsg());
  if (rc == 0) {
    char got[512];
    join(got, sizeof got, l.hosts, l.nhosts);
    CHECK(strcmp(got, hosts) == 0, "%s: hosts '%s', want '%s'", file, got, hosts);
    join_int(got, sizeof got, l.held, l.nhosts);
    CHECK(strcmp(got, held) == 0, "%s: held %s, want %s", file, got, held);
    join_int(got, sizeof got, l.workers, l.nhosts);
    CHECK(strcmp(got, workers) == 0, "%s -p %d: workers %s, want %s", file, p,
          got, workers);
    join_int(got, sizeof got, l.blas, l.nhosts);
    CHECK(strcmp(got, blas) == 0, "%s -p %d: blas %s, want %s", file, p, got,
          blas);
    CHECK(strcmp(l.slots_from, slots_from) == 0, "%s: slots from %s", file,
          l.slots_from);
    distc__slurm_layout_free(&l);
  }
  free_env(env);
}

static void layout_bad(const char *file, int p, const char *in_msg) {
  char **env = load_env(file);
  if (!env)
    return;
  distc__slurm_layout l;
  int rc = distc__slurm_layout_get((const char *const *)env, p, &l);
  CHECK(rc == DISTC_EINVAL, "%s -p %d accepted", file, p);
  CHECK(strstr(distc_errmsg(), in_msg) != NULL, "%s -p %d: '%s' lacks '%s'",
        file, p, distc_errmsg(), in_msg);
  if (rc == 0)
    distc__slurm_layout_free(&l);
  free_env(env);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_slurm_layout ENV_DIR\n");
    return 2;
  }
  env_dir = argv[1];

  /* node lists, expanded by libslurm */
  nodelist_ok("node[1-2]", "node1 node2");
  nodelist_ok("n[1-3,7]", "n1 n2 n3 n7");
  nodelist_ok("a1,b[01-02]", "a1 b01 b02");
  nodelist_ok("node[001-003]", "node001 node002 node003");
  nodelist_ok("n[01-03,7]", "n01 n02 n03 n7");
  nodelist_ok("rack[1-2]-node[01-02]",
              "rack1-node01 rack1-node02 rack2-node01 rack2-node02");
  nodelist_ok("node2", "node2");
  nodelist_ok("c1.cluster.example,c2.cluster.example",
              "c1.cluster.example c2.cluster.example");
  nodelist_bad("b[", "no host name");          /* libslurm gives "b]" */
  nodelist_bad("node[3-1]", "node[3-1]");      /* libslurm gives NULL */
  nodelist_bad("x[1-2]y", "x[1-2]y");
  nodelist_bad("", "empty");

  /* per-node count forms */
  counts_ok("3,1", 2, "3,1");
  counts_ok("2(x2)", 2, "2,2");
  counts_ok("2(x3),1", 4, "2,2,2,1");
  counts_ok("1,4(x2),16", 4, "1,4,4,16");
  counts_ok("8", 1, "8");
  counts_bad("2(x3),1", 3);   /* more nodes than the list */
  counts_bad("2(x3)", 4);     /* fewer */
  counts_bad("2(x0)", 1);
  counts_bad("0", 1);
  counts_bad("2(x2", 2);
  counts_bad("2x2", 1);
  counts_bad("a", 1);
  counts_bad("3,,1", 2);
  counts_bad("3,1,", 2);
  counts_bad("", 1);

  /* -p spread */
  int held31[] = {3, 1}, held44[] = {4, 4}, held2221[] = {2, 2, 2, 1};
  spread(held31, 2, 0, "3,1");
  spread(held31, 2, 1, "1,0");
  spread(held31, 2, 2, "1,1");
  spread(held31, 2, 3, "2,1");
  spread(held31, 2, 4, "3,1");
  spread(held31, 2, 5, NULL);
  CHECK(strstr(distc_errmsg(), "holds: 4 slot(s) on 2 node(s)") != NULL,
        "-p 5 message: %s", distc_errmsg());
  spread(held44, 2, 5, "3,2");
  spread(held2221, 4, 6, "2,2,1,1");

  /* environments real jobs saw */
  layout("srun-N2-n4.env", 0, "node1 node2", "3,1", "3,1", "1,1",
         "SLURM_TASKS_PER_NODE");
  layout("srun-N2-n4.env", 2, "node1 node2", "3,1", "1,1", "3,1",
         "SLURM_TASKS_PER_NODE");
  layout_bad("srun-N2-n4.env", 5, "at most -p 4");
  layout("sbatch-N2-tpn2.env", 0, "node1 node2", "2,2", "2,2", "1,1",
         "SLURM_TASKS_PER_NODE");
  layout("sbatch-N2-tpn2.env", 1, "node1 node2", "2,2", "1,0", "2,1",
         "SLURM_TASKS_PER_NODE");
  layout("salloc-N2.env", 0, "node1 node2", "1,1", "1,1", "1,1",
         "SLURM_JOB_CPUS_PER_NODE");
  layout_bad("salloc-N2.env", 3, "holds: 2 slot(s) on 2 node(s)");
  layout("salloc-N2-n4-c2.env", 0, "node1 node2", "3,1", "3,1", "2,2",
         "SLURM_TASKS_PER_NODE");
  layout("salloc-N2-n4-c2.env", 2, "node1 node2", "3,1", "1,1", "6,2",
         "SLURM_TASKS_PER_NODE");

  /* outside an allocation */
  const char *none[] = {"PATH=/bin", NULL};
  distc__slurm_layout l;
  CHECK(distc__slurm_layout_get(none, 0, &l) == DISTC_EINVAL, "no job accepted");
  CHECK(strstr(distc_errmsg(), "sbatch") != NULL, "message: %s", distc_errmsg());
  const char *bad_counts[] = {"SLURM_JOB_ID=1", "SLURM_JOB_NODELIST=n[1-3]",
                              "SLURM_NTASKS=4", "SLURM_TASKS_PER_NODE=2(x2)",
                              NULL};
  CHECK(distc__slurm_layout_get(bad_counts, 0, &l) == DISTC_EINVAL,
        "2(x2) for 3 nodes accepted");
  CHECK(strstr(distc_errmsg(), "3 node(s)") != NULL, "message: %s",
        distc_errmsg());

  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

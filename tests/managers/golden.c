/* golden.c — replays captured environments against the resource halves,
 * without daemons (hwloc's habit): each directory under golden/ is a case:
 *
 *   args     what to do, one a line:
 *              manager NAME       open that manager, or
 *              choose             choose one as distc-launch would
 *              option NAME[=VAL]  a manager option (as --NAME[=VAL])
 *              here N             workers asked for on this host (-p N)
 *   env      optional: K=V lines set first (a batch job's environment,
 *            e.g. SLURM_JOB_NODELIST or PBS_NODEFILE); the DISTC_*, SLURM_*
 *            and PBS_* variables of this process are cleared before
 *   expect   what must come out, one a line:
 *              manager NAME (WHY)   after `choose`
 *              detect yes|no        whether it sees its allocation
 *              host NAME SLOTS [here] [user=U] [port=P] [dir=D] [exename=E]
 *              error TEXT           nodes (or an option) fails, the message
 *                                   containing TEXT ("@" stands for the
 *                                   case's directory)
 * and any data files the case names (node files, host files), found from
 * the case's directory, which is the working directory while it runs.
 *
 * A new resource half adds its cases here: no code.  Prints "ok"/"not ok"
 * per case and "N passed, M failed". */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"

extern char **environ;

static int passed, failed;

static char *slurp(const char *path) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return NULL;
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    fwrite(chunk, 1, n, m);
  fclose(f);
  fclose(m);
  return buf;
}

/* Clears the variables a resource half may look at, so the machine running
 * the test cannot leak into a case. */
static void clear_env(void) {
  static const char *const prefixes[] = {"DISTC_", "SLURM_", "PBS_", "PE_",
                                         "LSB_", "NCPUS=", "OMP_NUM_THREADS="};
  for (;;) {
    bool again = false;
    for (char **e = environ; e && *e && !again; e++)
      for (size_t i = 0; i < DISTC__ARRAY_LEN(prefixes); i++)
        if (strncmp(*e, prefixes[i], strlen(prefixes[i])) == 0) {
          char key[256];
          snprintf(key, sizeof key, "%.*s", (int)strcspn(*e, "="), *e);
          unsetenv(key);
          again = true;
          break;
        }
    if (!again)
      return;
  }
}

static void print_host(FILE *f, const distc_host *h) {
  if (h->slots == DISTC_SLOTS_AUTO)
    fprintf(f, "host %s auto", h->name);
  else
    fprintf(f, "host %s %d", h->name, h->slots);
  if (h->here)
    fputs(" here", f);
  if (h->user)
    fprintf(f, " user=%s", h->user);
  if (h->port)
    fprintf(f, " port=%d", h->port);
  if (h->dir)
    fprintf(f, " dir=%s", h->dir);
  if (h->exename)
    fprintf(f, " exename=%s", h->exename);
  if (h->cpus)
    fprintf(f, " cpus=%d", h->cpus);
  fputc('\n', f);
}

/* Runs the case in the current directory; writes what came out to f. */
static void run_case(const char *args, FILE *f) {
  distc__mopt opts[64];
  char *names[64];
  int nopts = 0, here = 0;
  bool choose = false;
  const char *name = NULL;
  char *copy = strdup(args), *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "manager ", 8) == 0) {
      name = line + 8;
    } else if (strcmp(line, "choose") == 0) {
      choose = true;
    } else if (strncmp(line, "here ", 5) == 0) {
      here = atoi(line + 5);
    } else if (strncmp(line, "option ", 7) == 0 && nopts < 64) {
      char *o = line + 7, *eq = strchr(o, '=');
      if (eq != NULL)
        *eq = '\0';
      names[nopts] = o;
      opts[nopts++] = (distc__mopt){o, eq ? eq + 1 : NULL};
    }
  }
  const distc__manager_def *def;
  if (choose) {
    const char *why = NULL;
    def = distc__manager_choose(NULL, (const char *const *)names, nopts, &why);
    if (def != NULL)
      fprintf(f, "manager %s (%s)\n", def->name, why);
  } else {
    def = distc__manager_find(name ? name : "");
  }
  if (def == NULL) {
    fprintf(f, "error %s\n", distc_errmsg());
    free(copy);
    return;
  }
  distc_manager m;
  int rc = distc__manager_open(&m, def, NULL);
  if (rc == 0) {
    fprintf(f, "detect %s\n", m.res.detect() ? "yes" : "no");
    for (int i = 0; i < nopts && rc == 0; i++)
      rc = distc__manager_set_option(&m, opts[i].name, opts[i].value);
  }
  distc_host *hosts = NULL;
  int n = 0;
  /* The resource half alone: the launch half's prepare reaches hosts. */
  if (rc == 0)
    rc = m.res.nodes(m.rstate, here, &hosts, &n);
  if (rc == 0)
    for (int i = 0; i < n; i++)
      print_host(f, &hosts[i]);
  else
    fprintf(f, "error %s\n", distc_errmsg());
  distc__host_free(hosts, n);
  if (m.def != NULL)
    distc__manager_close(&m);
  free(copy);
}

/* Exactly the expected lines must come out, in order; "error" lines match
 * by substring, "@" standing for the case's directory. */
static bool matches(const char *expect, const char *got, const char *dir) {
  char *e = strdup(expect), *g = strdup(got), *se = NULL, *sg = NULL;
  bool ok = true;
  char *gl = strtok_r(g, "\n", &sg);
  for (char *el = strtok_r(e, "\n", &se); el && ok;
       el = strtok_r(NULL, "\n", &se)) {
    if (el[0] == '#' || el[0] == '\0')
      continue;
    if (gl == NULL) {
      ok = false;
      break;
    }
    if (strncmp(el, "error ", 6) == 0) {
      char want[PATH_MAX + 512] = "";
      for (const char *p = el + 6; *p; p++) {
        if (*p == '@')
          strncat(want, dir, sizeof want - strlen(want) - 1);
        else
          strncat(want, p, 1);
      }
      ok = strncmp(gl, "error ", 6) == 0 && strstr(gl, want) != NULL;
    } else {
      ok = strcmp(el, gl) == 0;
    }
    gl = strtok_r(NULL, "\n", &sg);
  }
  if (gl != NULL)
    ok = false; /* more came out than expected */
  free(e);
  free(g);
  return ok;
}

static void one(const char *root, const char *name) {
  char dir[PATH_MAX], path[PATH_MAX + 16], cwd[PATH_MAX];
  char *keys[256]; /* what the case's env set, unset after it */
  int nkeys = 0;
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  snprintf(path, sizeof path, "%s/args", dir);
  char *args = slurp(path);
  snprintf(path, sizeof path, "%s/expect", dir);
  char *expect = slurp(path);
  snprintf(path, sizeof path, "%s/env", dir);
  char *env = slurp(path);
  if (args == NULL || expect == NULL) {
    failed++;
    printf("not ok - %s\n#   needs files args and expect\n", name);
    goto free_all;
  }
  clear_env();
  char *save = NULL;
  for (char *l = env ? strtok_r(env, "\n", &save) : NULL; l;
       l = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(l, '=');
    if (eq == NULL || l[0] == '#')
      continue;
    *eq = '\0';
    setenv(l, eq + 1, 1);
    if (nkeys < 256)
      keys[nkeys++] = l;
  }
  if (getcwd(cwd, sizeof cwd) == NULL || chdir(dir) != 0) {
    failed++;
    printf("not ok - %s\n#   cannot enter %s\n", name, dir);
    goto free_all;
  }
  char *got = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&got, &len);
  run_case(args, f);
  fclose(f);
  if (chdir(cwd) != 0)
    perror("chdir");
  char real[PATH_MAX];
  if (realpath(dir, real) == NULL)
    snprintf(real, sizeof real, "%s", dir);
  if (matches(expect, got, real)) {
    passed++;
    printf("ok - %s\n", name);
  } else {
    failed++;
    printf("not ok - %s\n# expected:\n%s# got:\n%s", name, expect, got);
  }
  free(got);
free_all:
  for (int i = 0; i < nkeys; i++)
    unsetenv(keys[i]);
  free(args);
  free(expect);
  free(env);
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_case(const struct dirent *d) { return d->d_name[0] != '.'; }

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: golden DIR\n");
    return 2;
  }
  struct dirent **list;
  int n = scandir(argv[1], &list, is_case, by_name);
  if (n < 0) {
    perror(argv[1]);
    return 2;
  }
  for (int i = 0; i < n; i++) {
    one(argv[1], list[i]->d_name);
    free(list[i]);
  }
  free(list);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}

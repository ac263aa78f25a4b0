/* conform_prog.c — the program the manager conformance suite runs
 * (conformance.sh), under every manager alike.
 *
 *   conform_prog where          one line per worker:
 *                               "worker ID PID CWD EXE XTEST_CONFORM"
 *   conform_prog output         every worker prints "conform-output ID"
 *   conform_prog kill           the last worker SIGKILLs itself
 *   conform_prog hang           the worker lines, "conform-ready", then
 *                               waits to be killed or signalled
 *   conform_prog bogus MANAGER  distc_addprocs with an option no manager
 *                               takes; prints the message (no launcher)
 *
 * With CONFORM_MARKER=FILE in its environment, any process of it creates
 * FILE first: a dry run must leave no such file. */
#include <distc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "conform_prog: %s: %s\n", what, distc_errmsg());
    exit(1);
  }
}

/* [pid, cwd, exe, $XTEST_CONFORM or ""] */
DISTC_FUNCTION(whereami) {
  (void)ctx;
  (void)args;
  char cwd[1024], exe[1024];
  if (getcwd(cwd, sizeof cwd) == NULL)
    strcpy(cwd, "?");
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  const char *x = getenv("XTEST_CONFORM");
  return distc_listv(4, distc_int(getpid()), distc_string(cwd),
                     distc_string(exe), distc_string(x ? x : "-"));
}

DISTC_FUNCTION(say) {
  (void)ctx;
  (void)args;
  printf("conform-output %d\n", distc_myid());
  fflush(stdout);
  return distc_nil();
}

DISTC_FUNCTION(die) {
  (void)ctx;
  (void)args;
  raise(SIGKILL);
  return distc_nil();
}

static int workers(int **ids) {
  int n = distc_workers(NULL, 0);
  *ids = calloc((size_t)n + 1, sizeof **ids);
  if (*ids == NULL)
    exit(1);
  return distc_workers(*ids, n);
}

static void print_where(const int *ids, int n) {
  for (int i = 0; i < n; i++) {
    distc_value *r = NULL;
    check(distc_remotecall_fetch(ids[i], "whereami", NULL, &r), "whereami");
    printf("worker %d %lld %s %s %s\n", ids[i],
           (long long)distc_value_int(distc_list_at(r, 0)),
           distc_value_str(distc_list_at(r, 1), NULL),
           distc_value_str(distc_list_at(r, 2), NULL),
           distc_value_str(distc_list_at(r, 3), NULL));
    distc_value_free(r);
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *marker = getenv("CONFORM_MARKER");
  if (marker != NULL)
    close(open(marker, O_WRONLY | O_CREAT, 0644));
  check(distc_init(&argc, &argv), "distc_init");
  const char *what = argc > 1 ? argv[1] : "where";
  int *ids;
  int n = workers(&ids);

  if (strcmp(what, "where") == 0) {
    print_where(ids, n);
  } else if (strcmp(what, "output") == 0) {
    for (int i = 0; i < n; i++)
      check(distc_remotecall_wait(ids[i], "say", NULL), "say");
  } else if (strcmp(what, "kill") == 0) {
    print_where(ids, n);
    int rc = distc_remotecall_wait(ids[n - 1], "die", NULL);
    printf("conform-killed %d rc=%d\n", ids[n - 1], rc);
  } else if (strcmp(what, "hang") == 0) {
    print_where(ids, n);
    printf("conform-ready %ld\n", (long)getpid());
    fflush(stdout);
    for (;;)
      pause();
  } else if (strcmp(what, "bogus") == 0 && argc >= 3) {
    const char *opts[] = {"bogus-option", NULL};
    distc_addprocs_opts o = {
        .count = 1, .manager = argv[2], .manager_options = opts,
        .timeout_s = 10};
    int added[1];
    int rc = distc_addprocs(&o, added);
    printf("rc=%d %s\n", rc, rc < 0 ? distc_errmsg() : "");
  } else {
    fprintf(stderr, "conform_prog: unknown case '%s'\n", what);
    return 2;
  }
  free(ids);
  check(distc_finalize(), "distc_finalize");
  return 0;
}

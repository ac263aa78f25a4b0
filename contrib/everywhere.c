/* everywhere.c — the seed notebook's "function not defined on the worker"
 * error, and its cure.
 *
 * complicated_calculation lives in a shared object (complicated.so) that
 * only the master has loaded at first, like a Julia function defined in the
 * REPL: calling it on a worker fails with an error that says where.  Loading
 * the object on every process (distc_load_everywhere, the analog of
 * `@everywhere using X`) makes the same call work.
 *
 *   distc-launch -p 4 ./everywhere ./libcomplicated.so
 */
#include <distc.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "distc_init: %s\n", distc_errmsg());
    return 1;
  }
  const char *so = argc > 1 ? argv[1] : "./libcomplicated.so";

  /* Defined on the master only. */
  if (!dlopen(so, RTLD_NOW | RTLD_GLOBAL)) {
    fprintf(stderr, "cannot load %s: %s\n", so, dlerror());
    return 1;
  }
  distc_value *v = NULL;
  int rc;
  distc_future *f;
  if (distc_spawnat(DISTC_ANY, "complicated_calculation", NULL, &f) == 0) {
    rc = distc_fetch(f, &v);
    distc_future_free(f);
    if (rc < 0)
      printf("Error (%s):\n%s\n", distc_strerror(rc), distc_errmsg());
  }
  distc_value_free(v);

  /* The cure: load it everywhere, then call again. */
  if (distc_load_everywhere(so) < 0) {
    fprintf(stderr, "load everywhere: %s\n", distc_errmsg());
    return 1;
  }
  if (distc_spawnat(DISTC_ANY, "complicated_calculation", NULL, &f) < 0 ||
      distc_fetch(f, &v) < 0) {
    fprintf(stderr, "still failing: %s\n", distc_errmsg());
    return 1;
  }
  printf("complicated_calculation() on worker %d =", distc_future_where(f));
  double *d = distc_array_data(v);
  for (size_t i = 0; i < distc_array_len(v); i++)
    printf(" %.4f", d[i]);
  printf("\n");
  distc_value_free(v);
  distc_future_free(f);
  return distc_finalize() < 0 ? 1 : 0;
}

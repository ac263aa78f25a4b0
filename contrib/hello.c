/* hello.c — the seed notebook's first steps: @spawn, fetch, @fetchfrom and
 * a @sync block whose workers print, tagged "From worker N:".
 *
 *   distc-launch -p 4 ./hello
 */
#include <distc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* 3 + 3, computed wherever it is sent. */
DISTC_FUNCTION(add) {
  (void)ctx;
  return distc_int(distc_value_int(distc_list_at(args, 0)) +
                   distc_value_int(distc_list_at(args, 1)));
}

/* Prints this process's id, then returns 3 + 3 (the notebook's
 * `@fetch begin println(myid()); 3+3 end`). */
DISTC_FUNCTION(whoami_add) {
  (void)args;
  (void)ctx;
  printf("%d\n", distc_myid());
  return distc_int(3 + 3);
}

/* sleep(s); println(msg) */
DISTC_FUNCTION(sleep_print) {
  (void)ctx;
  usleep((useconds_t)(distc_value_double(distc_list_at(args, 0)) * 1e6));
  printf("%s\n", distc_value_str(distc_list_at(args, 1), NULL));
  return distc_nil();
}

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", what, distc_errmsg());
    exit(1);
  }
}

int main(int argc, char **argv) {
  check(distc_init(&argc, &argv), "distc_init");
  printf("nprocs() = %d, nworkers() = %d\n", distc_nprocs(), distc_nworkers());

  int ids[256];
  int n = distc_workers(ids, 256);
  printf("workers() =");
  for (int i = 0; i < n && i < 256; i++)
    printf(" %d", ids[i]);
  printf("\n");

  /* @spawn 3+3, then fetch */
  distc_value *args = distc_listv(2, distc_int(3), distc_int(3)), *v;
  distc_future *f;
  check(distc_spawnat(DISTC_ANY, "add", args, &f), "spawnat");
  check(distc_fetch(f, &v), "fetch");
  printf("fetch(@spawn 3+3) = %lld (ran on worker %d)\n",
         (long long)distc_value_int(v), distc_future_where(f));
  distc_value_free(v);
  distc_future_free(f);
  distc_value_free(args);

  /* @fetchfrom on each worker: each prints its own id, tagged */
  for (int i = 0; i < n && i < 256; i++) {
    check(distc_remotecall_fetch(ids[i], "whoami_add", NULL, &v), "fetchfrom");
    distc_value_free(v);
  }

  /* @sync begin @spawn (sleep(2); println(...)) ... end; println("Done!") */
  const char *words[] = {"Today is reverse day!", " Stuttgart!", "Hello"};
  const double delays[] = {0.6, 0.3, 0.0};
  distc_future *fs[3];
  for (int i = 0; i < 3; i++) {
    distc_value *a = distc_listv(2, distc_double(delays[i]),
                                 distc_string(words[i]));
    check(distc_spawnat(DISTC_ANY, "sleep_print", a, &fs[i]), "spawnat");
    distc_value_free(a);
  }
  check(distc_wait_all(fs, 3), "sync");
  for (int i = 0; i < 3; i++)
    distc_future_free(fs[i]);
  printf("Done!\n");
  return distc_finalize() < 0 ? 1 : 0;
}

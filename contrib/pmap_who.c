/* pmap_who.c — the seed notebook's check that pmap used several workers:
 *
 *   pmap(M) do m; println(myid()); svdvals(m) end
 *
 * Each item prints the id of the worker that handles it (tagged
 * "From worker N:" on the master's terminal) and returns its square; the
 * results come back in input order whichever worker ran them.
 *
 *   distc-launch -p 4 ./pmap_who
 */
#include <distc.h>
#include <stdio.h>

DISTC_FUNCTION(square_who) {
  (void)ctx;
  int64_t x = distc_value_int(distc_list_at(args, 0));
  printf("%d\n", distc_myid());
  return distc_listv(2, distc_int(x * x), distc_int(distc_myid()));
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "pmap_who: %s\n", distc_errmsg());
    return 1;
  }
  distc_value *in = distc_list(10), *out = NULL;
  for (int i = 0; i < 10; i++)
    distc_list_set(in, (size_t)i, distc_int(i + 1));
  distc_pmap_opts o = {.batch_size = 1}; /* one item at a time, as Julia */
  if (distc_pmap("square_who", in, &o, &out) < 0) {
    fprintf(stderr, "pmap_who: %s\n", distc_errmsg());
    return 1;
  }
  int ok = 1, seen[4096] = {0}, used = 0;
  printf("results:");
  for (size_t i = 0; i < distc_list_len(out); i++) {
    const distc_value *r = distc_list_at(out, i);
    int64_t sq = distc_value_int(distc_list_at(r, 0));
    int who = (int)distc_value_int(distc_list_at(r, 1));
    printf(" %lld", (long long)sq);
    ok &= sq == (int64_t)(i + 1) * (int64_t)(i + 1);
    if (who > 0 && who < 4096 && !seen[who]++)
      used++;
  }
  printf("\n%d workers took part; the results %s the serial map's\n", used,
         ok ? "agree with" : "DIFFER FROM");
  distc_value_free(in);
  distc_value_free(out);
  distc_finalize();
  return ok ? 0 : 1;
}

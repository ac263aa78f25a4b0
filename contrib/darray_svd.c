/* darray_svd.c — the seed notebook's DistributedArrays example: ten random
 * 200x200 matrices in a distributed array (one 200x200x10 array cut along
 * its last dimension), and the singular values of each computed by the
 * owners of the chunks (map), with LAPACK's dgesdd from OpenBLAS, against
 * the same on the master alone.
 *
 *   distc-launch -p 4 ./darray_svd                                          */
#include <distc.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 200
#define NMAT 10

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* svdvals of the k n x n matrices at m (column-major, one after another)
 * into s (n per matrix, largest first).  0 or LAPACK's info. */
static int svdvals(const double *m, size_t n, size_t k, double *s) {
  double *a = malloc(n * n * sizeof *a);
  int info = a ? 0 : -1;
  for (size_t j = 0; j < k && info == 0; j++) {
    memcpy(a, m + j * n * n, n * n * sizeof *a); /* dgesdd overwrites it */
    info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)n, (lapack_int)n,
                          a, (lapack_int)n, s + j * n, NULL, 1, NULL, 1);
  }
  free(a);
  return info;
}

/* map: [chunk, D]: an n x n x k chunk -> n x 1 x k of singular values. */
DISTC_FUNCTION(svdvals_chunk) {
  const distc_value *c = distc_list_at(args, 0);
  const size_t *d = distc_array_dims(c);
  if (distc_array_ndim(c) != 3 || d[0] != d[1])
    return distc_fail(ctx, "svdvals_chunk wants n x n x k chunks");
  distc_value *r = distc_array(DISTC_F64, 3, (size_t[]){d[0], 1, d[2]});
  if (!r)
    return distc_fail(ctx, "out of memory");
  int info = svdvals(distc_array_data(c), d[0], d[2], distc_array_data(r));
  if (info != 0) {
    distc_value_free(r);
    return distc_fail(ctx, "dgesdd failed (info %d)", info);
  }
  return r;
}

/* [D]: this owner's index ranges, as "[lo:hi, ...]" (Julia's 1-based). */
DISTC_FUNCTION(where_am_i) {
  size_t lo[3], hi[3];
  char buf[128];
  if (distc_darray_localindices(distc_list_at(args, 0), lo, hi) < 0)
    return distc_fail(ctx, "%s", distc_errmsg());
  snprintf(buf, sizeof buf, "(%zu:%zu, %zu:%zu, %zu:%zu)", lo[0] + 1, hi[0],
           lo[1] + 1, hi[1], lo[2] + 1, hi[2]);
  return distc_string(buf);
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "distc_init: %s\n", distc_errmsg());
    return 1;
  }
  /* M = [rand(200, 200) for i = 1:10] */
  size_t dims[3] = {N, N, NMAT};
  distc_value *m = distc_array(DISTC_F64, 3, dims);
  double *M = distc_array_data(m);
  srand48(7);
  for (size_t i = 0; i < (size_t)N * N * NMAT; i++)
    M[i] = drand48();

  /* D = distribute(M), one run of whole matrices per worker. */
  int nw = distc_nworkers(), nchunks = nw < NMAT ? nw : NMAT;
  distc_darray_opts o = {.dist = (int[]){1, 1, nchunks}};
  distc_value *d = NULL;
  if (distc_darray_distribute(m, &o, &d) < 0) {
    fprintf(stderr, "distribute: %s\n", distc_errmsg());
    return 1;
  }
  int owners[64], no = distc_darray_procs(d, owners, 64);
  printf("procs(D) =");
  for (int i = 0; i < no && i < 64; i++)
    printf(" %d", owners[i]);
  printf("\n");
  for (int i = 0; i < no && i < 64; i++) {
    distc_value *a = distc_listv(1, distc_value_ref(d)), *v = NULL;
    if (distc_remotecall_fetch(owners[i], "where_am_i", a, &v) == 0)
      printf("localindices on %d: %s\n", owners[i], distc_value_str(v, NULL));
    distc_value_free(v);
    distc_value_free(a);
  }

  /* map(svdvals, M) here, then map(svdvals, D) on the owners. */
  double *serial = malloc((size_t)N * NMAT * sizeof *serial);
  double t0 = now_s();
  int info = svdvals(M, N, NMAT, serial);
  double t_serial = now_s() - t0;
  t0 = now_s();
  distc_value *sv = NULL, *got = NULL;
  int rc = distc_darray_map(d, "svdvals_chunk", NULL, &sv);
  double t_map = now_s() - t0;
  if (rc == 0)
    rc = distc_darray_gather(sv, &got);
  if (info != 0 || rc < 0) {
    fprintf(stderr, "svdvals: %s\n", info ? "dgesdd failed" : distc_errmsg());
    return 1;
  }
  const double *G = distc_array_data(got);
  double worst = 0;
  for (size_t i = 0; i < (size_t)N * NMAT; i++) {
    double e = fabs(G[i] - serial[i]) / (fabs(serial[i]) + 1e-300);
    worst = e > worst ? e : worst;
  }
  printf("first singular values: %.6f %.6f ... %.6f\n", G[0], G[N],
         G[(NMAT - 1) * N]);
  printf("map(svdvals, M) here:         %7.1f ms\n", t_serial * 1e3);
  printf("map(svdvals, D) on %2d owners: %7.1f ms\n", no, t_map * 1e3);
  printf("results %s (largest relative difference %.1e)\n",
         worst < 1e-10 ? "agree" : "DIFFER", worst);
  free(serial);
  distc_value_free(got);
  distc_darray_free(sv);
  distc_darray_free(d);
  distc_value_free(m);
  distc_finalize();
  return worst < 1e-10 ? 0 : 1;
}

/* complicated.c — a plug-in for everywhere.c: one registered function that
 * "takes a long time" and returns randexp(5). */
#include <distc.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

DISTC_FUNCTION(complicated_calculation) {
  (void)args;
  (void)ctx;
  usleep(200000); /* so complex that it takes a long time */
  size_t dims[1] = {5};
  distc_value *v = distc_array(DISTC_F64, 1, dims);
  double *d = distc_array_data(v);
  unsigned seed = (unsigned)getpid();
  for (int i = 0; i < 5; i++)
    d[i] = -log(1.0 - rand_r(&seed) / ((double)RAND_MAX + 1));
  return v;
}

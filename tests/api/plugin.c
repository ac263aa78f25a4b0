/* plugin.c — a shared object for the load-everywhere test. */
#include <distc.h>

DISTC_FUNCTION(plugin_square) {
  (void)ctx;
  int64_t x = distc_value_int(distc_list_at(args, 0));
  return distc_int(x * x);
}

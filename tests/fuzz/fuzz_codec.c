/* fuzz_codec.c — libFuzzer harness for the wire decoder: any bytes as a
 * payload (layout, segments, msgpack, every extension type), decoded into a
 * value; what decodes is encoded again and must decode to an equal value.
 * Lent arrays are refused here (no lender), as from a peer that may not
 * lend. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The decoder borrows the payload: a copy of exactly size bytes, so a
   * read past its end is caught. */
  char *p = malloc(size ? size : 1);
  if (!p)
    return 0;
  memcpy(p, data, size);
  distc__dec d;
  distc_value *v = NULL;
  if (distc__dec_open(&d, p, size) == 0) {
    distc__dec_value(&d, distc__dec_root(&d), &v);
    distc__dec_close(&d);
  }
  free(p);
  if (!v)
    return 0;
  distc__enc e;
  distc__enc_init(&e);
  struct iovec iov[64];
  size_t total = 0;
  int n = distc__enc_value(&e, v) == 0 ? distc__enc_finish(&e, iov, 64, &total)
                                        : -1;
  if (n > 0) {
    char *q = malloc(total ? total : 1), *at = q;
    for (int i = 0; q && i < n; i++) {
      memcpy(at, iov[i].iov_base, iov[i].iov_len);
      at += iov[i].iov_len;
    }
    distc_value *back = NULL;
    if (q && distc__dec_open(&d, q, total) == 0) {
      distc__dec_value(&d, distc__dec_root(&d), &back);
      distc__dec_close(&d);
    }
    /* A value that decoded once encodes and decodes to itself. */
    if (q && (!back || !distc_value_equal(v, back)))
      abort();
    distc_value_free(back);
    free(q);
  }
  distc__enc_destroy(&e);
  distc_value_free(v);
  return 0;
}

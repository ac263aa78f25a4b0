/* auth.c — the mutual challenge-response both ends of a connection run.
 *
 * Each side sends a fresh nonce and proves knowledge of the per-run secret
 * with HMAC-SHA256 over both nonces and its role, so the secret never crosses
 * the wire and a recorded answer cannot be replayed (the other nonce is new
 * each time) or reflected (the role is inside the MAC).  Nettle provides the
 * HMAC: libcrypto costs an idle worker 1.5 MiB of resident memory just by
 * being linked, nettle a tenth of that. */
#include <errno.h>
#include <nettle/hmac.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"

void distc__mac(const unsigned char *secret, const char *role,
                const unsigned char *n1, const unsigned char *n2,
                unsigned char *mac) {
  struct hmac_sha256_ctx ctx;
  hmac_sha256_set_key(&ctx, DISTC_SECRET_LEN, secret);
  hmac_sha256_update(&ctx, strlen(role) + 1, (const uint8_t *)role);
  hmac_sha256_update(&ctx, DISTC__NONCE_LEN, n1);
  hmac_sha256_update(&ctx, DISTC__NONCE_LEN, n2);
  hmac_sha256_digest(&ctx, DISTC__MAC_LEN, mac);
}

/* Constant time, so a forger learns nothing from how long a refusal took. */
bool distc__mac_equal(const unsigned char *a, const unsigned char *b) {
  unsigned char d = 0;
  for (int i = 0; i < DISTC__MAC_LEN; i++)
    d |= a[i] ^ b[i];
  return d == 0;
}

int distc__random(void *buf, size_t n) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return distc__seterr(DISTC_EIO, "getrandom: %s", strerror(errno));
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

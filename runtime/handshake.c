/* handshake.c — the one handshake every link runs: the master accepting a
 * worker, a worker dialing its master, a worker dialing another worker and
 * a worker accepting one.
 *
 * The acceptor speaks first (HELLO1: magic, version, its nonce); the dialer
 * answers with its own nonce and a MAC over both (HELLO2), and the acceptor
 * proves itself back with a MAC of its own (auth.c: the role is inside the
 * MAC, so neither answer can be reflected).  Nothing else is read before
 * the dialer's MAC checks out.  Then the dialer sends a HELLO frame that
 * carries its build's fingerprint, and the acceptor answers WELCOME or
 * REFUSE.  The master runs the acceptor's steps from its event loop (the
 * distc__hs_hello1/_check pair); workers run them blocking, with a
 * deadline. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* The roles inside the MACs keep the names of the first link, whose
 * acceptor is always the master. */
#define ROLE_DIALER "worker"
#define ROLE_ACCEPTOR "master"

void distc__hs_hello1(unsigned char *m1, const unsigned char *nonce) {
  memset(m1, 0, DISTC__HELLO1_LEN);
  memcpy(m1, "DSTC", 4);
  m1[4] = DISTC__PROTO_VERSION;
  memcpy(m1 + 8, nonce, DISTC__NONCE_LEN);
}

bool distc__hs_check(const unsigned char *nonce, const unsigned char *m2,
                     unsigned char *proof) {
  unsigned char expect[DISTC__MAC_LEN];
  const unsigned char *nonce_d = m2 + 8;
  distc__mac(distc__C.secret, ROLE_DIALER, nonce, nonce_d, expect);
  if (memcmp(m2, "DSTC", 4) != 0 || m2[4] != DISTC__PROTO_VERSION ||
      !distc__mac_equal(expect, m2 + 8 + DISTC__NONCE_LEN))
    return false;
  distc__mac(distc__C.secret, ROLE_ACCEPTOR, nonce_d, nonce, proof);
  return true;
}

int distc__hs_xfer(int fd, void *buf, size_t n, bool out, double deadline) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = out ? send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                    : recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
      continue;
    }
    if (r == 0)
      return -1;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -1;
    int ms = (int)((deadline - distc__now()) / 1e6);
    if (ms <= 0)
      return -1;
    struct pollfd pf = {fd, out ? POLLOUT : POLLIN, 0};
    poll(&pf, 1, ms);
  }
  return 0;
}

int distc__hs_dial(int fd, double deadline) {
  unsigned char m1[DISTC__HELLO1_LEN], m2[DISTC__HELLO2_LEN],
      mac[DISTC__MAC_LEN], want[DISTC__MAC_LEN];
  if (distc__hs_xfer(fd, m1, sizeof m1, false, deadline) < 0)
    return distc__seterr(DISTC_EIO, "the peer did not start the handshake "
                                    "(closed or timed out)");
  if (memcmp(m1, "DSTC", 4) != 0 || m1[4] != DISTC__PROTO_VERSION)
    return distc__seterr(DISTC_EPROTO, "the peer does not speak distc "
                                       "protocol %d", DISTC__PROTO_VERSION);
  const unsigned char *nonce_a = m1 + 8;
  memcpy(m2, m1, 8);
  if (distc__random(m2 + 8, DISTC__NONCE_LEN) < 0)
    return DISTC_EIO;
  distc__mac(distc__C.secret, ROLE_DIALER, nonce_a, m2 + 8,
             m2 + 8 + DISTC__NONCE_LEN);
  if (distc__hs_xfer(fd, m2, sizeof m2, true, deadline) < 0)
    return distc__seterr(DISTC_EIO, "lost the peer during the handshake");
  if (distc__hs_xfer(fd, mac, sizeof mac, false, deadline) < 0)
    return distc__seterr(DISTC_EAUTH,
                         "the peer refused our secret (authentication "
                         "failed); was this process started by the same run?");
  distc__mac(distc__C.secret, ROLE_ACCEPTOR, m2 + 8, nonce_a, want);
  if (!distc__mac_equal(mac, want))
    return distc__seterr(DISTC_EAUTH, "the peer failed authentication: it "
                                      "does not know the cluster secret");
  return 0;
}

int distc__hs_accept(int fd, double deadline) {
  unsigned char nonce[DISTC__NONCE_LEN], m1[DISTC__HELLO1_LEN],
      m2[DISTC__HELLO2_LEN], proof[DISTC__MAC_LEN];
  if (distc__random(nonce, sizeof nonce) < 0)
    return DISTC_EIO;
  distc__hs_hello1(m1, nonce);
  if (distc__hs_xfer(fd, m1, sizeof m1, true, deadline) < 0 ||
      distc__hs_xfer(fd, m2, sizeof m2, false, deadline) < 0)
    return distc__seterr(DISTC_EIO, "the dialer left during the handshake");
  if (!distc__hs_check(nonce, m2, proof))
    return distc__seterr(DISTC_EAUTH, "a dialer failed authentication");
  if (distc__hs_xfer(fd, proof, sizeof proof, true, deadline) < 0)
    return distc__seterr(DISTC_EIO, "the dialer left during the handshake");
  return 0;
}

int distc__hs_send(int fd, uint8_t type, distc__enc *e, double deadline) {
  struct iovec iov[4];
  size_t total;
  int n = distc__enc_finish(e, iov, 4, &total);
  unsigned char hdr[DISTC__HDR_LEN] = {0};
  for (int i = 0; i < 4; i++)
    hdr[i] = (unsigned char)(total >> (8 * i));
  hdr[4] = type;
  if (n < 0 || distc__hs_xfer(fd, hdr, sizeof hdr, true, deadline) < 0)
    return distc__seterr(DISTC_EIO, "lost the peer during the handshake");
  for (int i = 0; i < n; i++)
    if (distc__hs_xfer(fd, iov[i].iov_base, iov[i].iov_len, true, deadline) <
        0)
      return distc__seterr(DISTC_EIO, "lost the peer during the handshake");
  return 0;
}

int distc__hs_recv(int fd, uint8_t *type, char **payload, uint32_t *len,
                   double deadline) {
  unsigned char hdr[DISTC__HDR_LEN];
  *payload = NULL;
  if (distc__hs_xfer(fd, hdr, sizeof hdr, false, deadline) < 0)
    return distc__seterr(DISTC_EIO, "the peer closed the connection during "
                                    "the handshake");
  uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
               (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
  if (n > DISTC__HS_FRAME_MAX)
    return distc__seterr(DISTC_EPROTO, "the peer sent a malformed handshake "
                                       "frame (%u bytes)", n);
  char *p = malloc((size_t)n + 1);
  if (!p)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  if (distc__hs_xfer(fd, p, n, false, deadline) < 0) {
    free(p);
    return distc__seterr(DISTC_EIO, "the peer closed the connection during "
                                    "the handshake");
  }
  *type = hdr[4];
  *payload = p;
  *len = n;
  return 0;
}

bool distc__hs_same_binary(const unsigned char *fp, char *why, size_t n,
                           const char *who) {
  if (memcmp(fp, distc__fingerprint(), DISTC__FP_LEN) == 0)
    return true;
  char mine[17], theirs[17];
  distc__fingerprint_hex(distc__fingerprint(), mine);
  distc__fingerprint_hex(fp, theirs);
  snprintf(why, n,
           "%s runs a different binary than this process (build %s, here "
           "%s): every process must run the same executable",
           who, theirs, mine);
  return false;
}

/* fuzz_handshake.c — libFuzzer harness for the master's side of the
 * connection handshake, played over a real socket against a master running
 * in this process (the static runtime, as tests/unit/test_handshake.c).
 *
 * The first byte chooses how far the peer gets honestly: 0, it sends the
 * rest as its first message in place of the authenticated hello; 1, it
 * authenticates with the run's secret and sends the rest as a HELLO
 * payload; 2, it authenticates and sends the rest raw (a frame header of
 * its own).  The master must answer or hang up, never crash; each peer
 * hangs up after at most a short wait. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static int dial(void) {
  char host[64];
  snprintf(host, sizeof host, "%s", distc__C.master_addr);
  char *colon = strrchr(host, ':');
  if (!colon)
    abort();
  *colon = '\0';
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(colon + 1))};
  inet_pton(AF_INET, host, &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  /* Closed with a reset: a TIME_WAIT per input would use up the
   * ephemeral ports within a minute of fuzzing. */
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  int one = 1; /* each message at once, as a worker sends them */
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
      connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    abort();
  return fd;
}

/* Reads up to n bytes, waiting at most ms for each piece. */
static size_t read_n(int fd, void *buf, size_t n, int ms) {
  size_t have = 0;
  while (have < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
      break;
    ssize_t r = recv(fd, (char *)buf + have, n - have, 0);
    if (r <= 0)
      break;
    have += (size_t)r;
  }
  return have;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  setenv("DISTC_LOG", "error", 1); /* no line per dropped peer */
  setenv("DISTC_MAX_FRAME", "65536", 1);
  if (distc_init(argc, argv) < 0)
    abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 8192)
    return 0;
  int mode = data[0] % 3;
  data++;
  size--;
  int fd = dial();
  unsigned char m1[DISTC__HELLO1_LEN], m2[DISTC__HELLO2_LEN], mac[64];
  /* 5 s: a loaded 2-core CI machine can starve the master's thread for a
   * while; an I/O thread that is stuck is still caught. */
  if (read_n(fd, m1, sizeof m1, 5000) != sizeof m1) {
    fprintf(stderr, "the master did not greet a connection within 5 s\n");
    abort();
  }
  if (mode == 0) {
    send(fd, data, size, MSG_NOSIGNAL);
  } else {
    memcpy(m2, m1, 8);
    memset(m2 + 8, 0x5a, DISTC__NONCE_LEN);
    distc__mac(distc__C.secret, "worker", m1 + 8, m2 + 8,
               m2 + 8 + DISTC__NONCE_LEN);
    send(fd, m2, sizeof m2, MSG_NOSIGNAL);
    if (read_n(fd, mac, DISTC__MAC_LEN, 5000) != DISTC__MAC_LEN) {
      fprintf(stderr, "the master did not answer a correct peer in 5 s\n");
      abort();
    }
    if (mode == 1) {
      unsigned char h[DISTC__HDR_LEN] = {0};
      for (int i = 0; i < 4; i++)
        h[i] = (unsigned char)(size >> (8 * i));
      h[4] = DISTC__F_HELLO;
      send(fd, h, sizeof h, MSG_NOSIGNAL);
    }
    send(fd, data, size, MSG_NOSIGNAL);
  }
  /* Whatever the master answers (WELCOME, REFUSE, a hang-up); a peer that
   * sent too little is left waiting by the master, so wait only briefly. */
  char buf[4096];
  read_n(fd, buf, mode == 1 ? sizeof buf : 16, mode == 1 ? 50 : 5);
  close(fd);
  return 0;
}

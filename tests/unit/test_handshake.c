/* test_handshake.c — the connection handshake against hostile peers.
 *
 * The test is a master (distc_init without a launcher) and plays raw peers
 * against its listening socket: garbage, a wrong secret, an oversized or
 * unknown frame, a different binary, and a correct worker.  Then it plays a
 * master that fails authentication against a real worker process (this
 * binary re-executed as a worker).  Linked with the static runtime so it can
 * read the run's secret and address. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "../check.h"

extern char **environ;

static int dial(void) {
  char host[64];
  snprintf(host, sizeof host, "%s", distc__C.master_addr);
  char *colon = strrchr(host, ':');
  *colon = '\0';
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(colon + 1))};
  inet_pton(AF_INET, host, &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    perror("connect");
    exit(1);
  }
  return fd;
}

/* Reads n bytes within 2 s; returns bytes read (< n on EOF or time-out). */
static size_t read_n(int fd, void *buf, size_t n) {
  size_t have = 0;
  while (have < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0)
      break;
    ssize_t r = recv(fd, (char *)buf + have, n - have, 0);
    if (r <= 0)
      break;
    have += (size_t)r;
  }
  return have;
}

/* True when the master closes fd within 2 s. */
static bool closed_by_master(int fd) {
  char b[256];
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0)
      return false;
    ssize_t r = recv(fd, b, sizeof b, 0);
    if (r == 0 || (r < 0 && errno == ECONNRESET))
      return true;
    if (r < 0)
      return false;
  }
}

/* Runs the worker half by hand with the given secret; returns the fd after
 * the MACs were exchanged (mac_ok says whether the master's MAC was right),
 * or -1 when the master hung up. */
static int authenticate(const unsigned char *secret, bool *mac_ok) {
  int fd = dial();
  unsigned char m1[DISTC__HELLO1_LEN], m2[DISTC__HELLO2_LEN], mac[32], want[32];
  if (read_n(fd, m1, sizeof m1) != sizeof m1)
    return -1;
  memcpy(m2, m1, 8);
  distc__random(m2 + 8, DISTC__NONCE_LEN);
  distc__mac(secret, "worker", m1 + 8, m2 + 8, m2 + 8 + DISTC__NONCE_LEN);
  send(fd, m2, sizeof m2, MSG_NOSIGNAL);
  if (read_n(fd, mac, sizeof mac) != sizeof mac) {
    close(fd);
    return -1;
  }
  distc__mac(secret, "master", m2 + 8, m1 + 8, want);
  *mac_ok = distc__mac_equal(mac, want);
  return fd;
}

static void send_frame(int fd, uint8_t type, uint32_t len, const void *p,
                       size_t n) {
  unsigned char h[DISTC__HDR_LEN] = {0};
  for (int i = 0; i < 4; i++)
    h[i] = (unsigned char)(len >> (8 * i));
  h[4] = type;
  send(fd, h, sizeof h, MSG_NOSIGNAL);
  if (n)
    send(fd, p, n, MSG_NOSIGNAL);
}

static void send_hello(int fd, int index, const unsigned char *fp) {
  distc__enc e;
  distc__enc_init(&e);
  msgpack_pack_array(&e.pk, 4);
  msgpack_pack_int(&e.pk, index);
  msgpack_pack_int(&e.pk, getpid());
  msgpack_pack_str(&e.pk, 4);
  msgpack_pack_str_body(&e.pk, "test", 4);
  msgpack_pack_bin(&e.pk, DISTC__FP_LEN);
  msgpack_pack_bin_body(&e.pk, fp, DISTC__FP_LEN);
  struct iovec iov[4];
  size_t total;
  int n = distc__enc_finish(&e, iov, 4, &total);
  char buf[512];
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
    off += iov[i].iov_len;
  }
  send_frame(fd, DISTC__F_HELLO, (uint32_t)off, buf, off);
  distc__enc_destroy(&e);
}

/* Reads the answer to a HELLO: its frame type, and its payload text. */
static int read_answer(int fd, char *text, size_t cap) {
  unsigned char h[DISTC__HDR_LEN];
  if (read_n(fd, h, sizeof h) != sizeof h)
    return -1;
  uint32_t len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
  char *p = malloc(len + 1);
  size_t got = read_n(fd, p, len);
  p[got] = '\0';
  /* the message is the tail of the payload: good enough to search in */
  snprintf(text, cap, "%s", got > 16 ? p + 16 : "");
  free(p);
  return h[4];
}

static void wait_nworkers(int n) {
  for (int i = 0; i < 100 && distc_nprocs() - 1 != n; i++)
    usleep(10000);
}

static void test_master_side(void) {
  unsigned char wrong[DISTC_SECRET_LEN];
  memcpy(wrong, distc__C.secret, sizeof wrong);
  wrong[0] ^= 1;
  bool ok = false;

  /* Garbage instead of a handshake. */
  int fd = dial();
  unsigned char m1[DISTC__HELLO1_LEN];
  CHECK(read_n(fd, m1, sizeof m1) == sizeof m1 && !memcmp(m1, "DSTC", 4),
        "master speaks first");
  char junk[DISTC__HELLO2_LEN];
  memset(junk, 'x', sizeof junk);
  memcpy(junk, "GET / HTTP/1.0\r\n\r\n", 18);
  send(fd, junk, sizeof junk, MSG_NOSIGNAL);
  CHECK(closed_by_master(fd), "garbage is dropped");
  close(fd);

  /* Too little, then silence: dropped after the handshake time-out is not
   * waited for here; a short write must not be taken for a handshake. */
  fd = dial();
  read_n(fd, m1, sizeof m1);
  send(fd, "DSTC", 4, MSG_NOSIGNAL);
  usleep(100000);
  CHECK(distc_nprocs() == 1, "a partial handshake admits nobody");
  /* ... and it is dropped after the short first-message deadline, not the
   * whole handshake's 10 s. */
  double t0 = distc__now();
  bool gone = false;
  while (!gone && distc__now() - t0 < 6e9)
    gone = closed_by_master(fd);
  double took = (distc__now() - t0) / 1e9;
  CHECK(gone && took < DISTC__GATE_FIRST_MS / 1e3 + 1.5,
        "a silent connection was dropped after %.1f s", took);
  close(fd);

  /* Wrong secret: the master never answers with its MAC. */
  fd = authenticate(wrong, &ok);
  CHECK(fd < 0, "wrong secret is dropped before the master proves itself");
  if (fd >= 0)
    close(fd);

  /* Right secret, oversized HELLO. */
  fd = authenticate(distc__C.secret, &ok);
  CHECK(fd >= 0 && ok, "right secret: mutual authentication");
  send_frame(fd, DISTC__F_HELLO, 1u << 30, NULL, 0);
  CHECK(closed_by_master(fd), "oversized hello is dropped");
  close(fd);

  /* A different binary is refused with a message that says so. */
  pthread_mutex_lock(&distc__C.lock);
  distc__C.next_index = 3;
  pthread_mutex_unlock(&distc__C.lock);
  unsigned char otherfp[DISTC__FP_LEN] = {1};
  char text[512];
  fd = authenticate(distc__C.secret, &ok);
  send_hello(fd, 0, otherfp);
  int t = read_answer(fd, text, sizeof text);
  CHECK(t == DISTC__F_REFUSE && strstr(text, "different binary"),
        "refused: type %d %s", t, text);
  close(fd);
  CHECK(distc_nprocs() == 1, "refused worker not admitted");

  /* A correct worker joins as id 2; an unknown frame type drops it. */
  fd = authenticate(distc__C.secret, &ok);
  send_hello(fd, 0, distc__fingerprint());
  t = read_answer(fd, text, sizeof text);
  CHECK(t == DISTC__F_WELCOME, "welcome: type %d", t);
  wait_nworkers(1);
  CHECK(distc_nworkers() == 1 && distc_nprocs() == 2, "joined");
  send_frame(fd, 200, 0, NULL, 0);
  CHECK(closed_by_master(fd), "unknown frame type drops the connection");
  wait_nworkers(0);
  CHECK(distc_nprocs() == 1, "dropped worker left the cluster");
  close(fd);

  /* Index reuse is refused. */
  fd = authenticate(distc__C.secret, &ok);
  send_hello(fd, 0, distc__fingerprint());
  t = read_answer(fd, text, sizeof text);
  CHECK(t == DISTC__F_REFUSE, "an index joins once: type %d", t);
  close(fd);

  /* A frame over the limit (DISTC_MAX_FRAME=65536 here) drops the sender,
   * and sending one is refused before anything is written. */
  fd = authenticate(distc__C.secret, &ok);
  send_hello(fd, 1, distc__fingerprint());
  read_answer(fd, text, sizeof text);
  wait_nworkers(1);
  size_t dims[1] = {100000};
  distc_value *big = distc_listv(1, distc_array(DISTC_F64, 1, dims));
  distc_future *f = NULL;
  int rc = distc_remotecall(3, "echo", big, &f);
  CHECK(rc == DISTC_ETOOBIG && strstr(distc_errmsg(), "frame limit"),
        "sending too much: %d %s", rc, distc_errmsg());
  distc_value_free(big);
  send_frame(fd, DISTC__F_RESULT, 65537, NULL, 0);
  CHECK(closed_by_master(fd), "oversized frame drops the connection");
  close(fd);
  wait_nworkers(0);
  CHECK(distc_nprocs() == 1, "nothing left");
}

/* A fake master that fails authentication against a real worker. */
static void test_worker_side(void) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  bind(lfd, (struct sockaddr *)&sa, sizeof sa);
  listen(lfd, 4);
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  int sp[2], ep[2];
  pipe(sp);
  pipe2(ep, O_CLOEXEC);
  unsigned char secret[DISTC_SECRET_LEN] = {7};
  write(sp[1], secret, sizeof secret);
  close(sp[1]);
  char master[64], sfd[32];
  snprintf(master, sizeof master, "DISTC_MASTER=127.0.0.1:%d", ntohs(sa.sin_port));
  snprintf(sfd, sizeof sfd, "DISTC_SECRET_FD=%d", sp[0]);
  char *env[] = {"DISTC_ROLE=worker", master, sfd, "DISTC_WORKER_INDEX=0",
                 "DISTC_TIMEOUT=5", NULL};
  char *argv[] = {"test_handshake", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
  pid_t pid;
  /* readlink, not exec of /proc/self/exe: under valgrind the latter is the
   * tool, while readlink is virtualised to name this program. */
  char self[4096];
  ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
  self[sn > 0 ? sn : 0] = '\0';
  int rc = posix_spawn(&pid, self, &fa, NULL, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  close(sp[0]);
  close(ep[1]);
  CHECK(rc == 0, "spawn worker: %d", rc);
  int fd = accept(lfd, NULL, NULL);
  unsigned char m1[DISTC__HELLO1_LEN] = {'D', 'S', 'T', 'C', 1}, m2[72],
                      mac[32] = {0};
  send(fd, m1, sizeof m1, MSG_NOSIGNAL);
  CHECK(read_n(fd, m2, sizeof m2) == sizeof m2, "worker answered");
  send(fd, mac, sizeof mac, MSG_NOSIGNAL); /* not the right MAC */
  int st = 0;
  waitpid(pid, &st, 0);
  char err[2048] = "";
  ssize_t n = read(ep[0], err, sizeof err - 1);
  err[n > 0 ? n : 0] = '\0';
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "worker exits 1: %d", st);
  CHECK(strstr(err, "failed authentication") != NULL, "worker says: %s", err);
  close(fd);
  close(lfd);
  close(ep[0]);
}

int main(int argc, char **argv) {
  setenv("DISTC_MAX_FRAME", "65536", 1);
  setenv("DISTC_LOG", "error", 1);
  if (distc_init(&argc, &argv) < 0) {
    printf("distc_init: %s\n", distc_errmsg());
    return 1;
  }
  test_master_side();
  test_worker_side();
  distc_finalize();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

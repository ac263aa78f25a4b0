/* join_door.c — the door through which workers the master did not start
 * join a running cluster (elastic join): a listening socket, an address to
 * publish, and a key file holding the cluster secret.
 *
 * The launcher (--listen) and the library (distc_listen) both open doors,
 * so this lives with the start-up code both link.  The secret is the
 * cluster's own: a joiner proves it with the same mutual HMAC as every
 * launched worker, and derives the same shared-memory names from it.  It is
 * handed over only as a file readable by its owner alone, never on a
 * command line or in the environment, where `ps` and /proc would show it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"

#define KEY_HEADER "distc-join-key 1\n"

int distc__join_listen(const char *spec, int *fd_out, char *addr,
                       size_t addrlen) {
  char host[256] = "";
  const char *port = spec ? spec : "0";
  const char *colon = spec ? strrchr(spec, ':') : NULL;
  if (colon != NULL) {
    if ((size_t)(colon - spec) >= sizeof host)
      return distc__seterr(DISTC_EINVAL, "--listen %s: the address is too "
                           "long", spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    port = colon + 1;
  }
  char *end;
  errno = 0;
  long p = strtol(port, &end, 10);
  if (port[0] == '\0' || *end != '\0' || errno != 0 || p < 0 || p > 65535)
    return distc__seterr(DISTC_EINVAL,
                         "--listen wants [ADDR:]PORT with a port from 0 "
                         "(any) to 65535, got '%s'; e.g. --listen 9000 or "
                         "--listen 10.0.0.1:9000",
                         spec ? spec : "");

  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)p),
                           .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (host[0] != '\0' && strcmp(host, "*") != 0 &&
      inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    struct addrinfo hints = {.ai_family = AF_INET,
                             .ai_socktype = SOCK_STREAM},
                    *res;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0)
      return distc__seterr(DISTC_EINVAL,
                           "--listen %s: cannot resolve %s (%s); give an "
                           "address of this host",
                           spec, host, gai_strerror(g));
    sa.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }

  int rc;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return distc__seterr(DISTC_EIO, "cannot create the join socket: %s",
                         strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof sa;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(fd, 1024) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    rc = distc__seterr(DISTC_EIO,
                       "cannot listen for joining workers on %s: %s; pick "
                       "another port or address",
                       spec ? spec : "0", strerror(errno));
    goto close_fd;
  }
  /* The address to publish: the one bound, or this host's name when bound
   * to every address (workers on other hosts resolve it themselves). */
  char shown[256];
  if (sa.sin_addr.s_addr == htonl(INADDR_ANY)) {
    shown[0] = '\0';
    if (gethostname(shown, sizeof shown - 1) != 0 || shown[0] == '\0')
      snprintf(shown, sizeof shown, "127.0.0.1");
    shown[sizeof shown - 1] = '\0';
  } else {
    inet_ntop(AF_INET, &sa.sin_addr, shown, sizeof shown);
  }
  if ((size_t)snprintf(addr, addrlen, "%s:%d", shown, ntohs(sa.sin_port)) >=
      addrlen) {
    rc = distc__seterr(DISTC_EINVAL, "this host's name is too long to "
                       "publish; give --listen ADDR:PORT");
    goto close_fd;
  }
  *fd_out = fd;
  return 0;

close_fd:
  close(fd);
  return rc;
}

int distc__join_key_default(char *path, size_t len) {
  const char *home = getenv("HOME");
  if (home == NULL || home[0] == '\0')
    return distc__seterr(DISTC_EINVAL, "HOME is not set, so there is no "
                         "default place for the join key; give --join-key "
                         "FILE");
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/.distc", home);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return distc__seterr(DISTC_EIO, "cannot create %s for the join key: %s; "
                         "give --join-key FILE", dir, strerror(errno));
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  if ((size_t)snprintf(path, len, "%s/join-%s-%ld.key", dir, host,
                       (long)getpid()) >= len)
    return distc__seterr(DISTC_EINVAL, "the join key's path under %s is too "
                         "long; give --join-key FILE", dir);
  return 0;
}

int distc__join_key_write(const char *path, const unsigned char *secret) {
  char tmp[PATH_MAX];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >=
      sizeof tmp)
    return distc__seterr(DISTC_EINVAL, "join key path %s is too long", path);
  /* Written aside and renamed into place: a worker polling for the file
   * never reads half a key, and nobody else can open it in between. */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return distc__seterr(DISTC_EIO, "cannot write the join key %s: %s; give "
                         "--join-key a file in a directory you can write",
                         path, strerror(errno));
  char text[sizeof KEY_HEADER + 2 * DISTC_SECRET_LEN + 2];
  int n = snprintf(text, sizeof text, "%s", KEY_HEADER);
  for (int i = 0; i < DISTC_SECRET_LEN; i++)
    n += snprintf(text + n, sizeof text - (size_t)n, "%02x", secret[i]);
  text[n++] = '\n';
  bool ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
  explicit_bzero(text, sizeof text);
  int e = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    e = errno;
  }
  if (!ok || rename(tmp, path) != 0) {
    if (ok)
      e = errno;
    unlink(tmp);
    return distc__seterr(DISTC_EIO, "cannot write the join key %s: %s", path,
                         strerror(e));
  }
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int distc__join_key_read(const char *path, unsigned char *secret) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return distc__seterr(DISTC_EAUTH, "cannot read the join key %s: %s; give "
                         "DISTC_JOIN_KEY the key file the master wrote",
                         path, strerror(errno));
  struct stat st;
  /* As ssh does with private keys: a key others can read is no secret. */
  if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0 ||
      st.st_uid != geteuid()) {
    close(fd);
    return distc__seterr(DISTC_EAUTH,
                         "the join key %s is readable by others or not "
                         "ours (mode %03o): refusing to use it; chmod 600 it",
                         path, (unsigned)(st.st_mode & 0777));
  }
  char text[sizeof KEY_HEADER + 2 * DISTC_SECRET_LEN + 8];
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  int rc = 0;
  size_t h = strlen(KEY_HEADER);
  if (n < (ssize_t)(h + 2 * DISTC_SECRET_LEN) ||
      memcmp(text, KEY_HEADER, h) != 0) {
    rc = distc__seterr(DISTC_EAUTH, "%s is not a distc join key; give the "
                       "file distc-launch --listen printed", path);
    goto wipe;
  }
  for (int i = 0; i < DISTC_SECRET_LEN; i++) {
    int hi = hexval(text[h + 2 * i]), lo = hexval(text[h + 2 * i + 1]);
    if (hi < 0 || lo < 0) {
      rc = distc__seterr(DISTC_EAUTH, "%s is not a distc join key (bad "
                         "digits); give the file distc-launch --listen "
                         "printed", path);
      goto wipe;
    }
    secret[i] = (unsigned char)(hi << 4 | lo);
  }
wipe:
  explicit_bzero(text, sizeof text);
  return rc;
}

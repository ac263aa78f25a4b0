/* route.c — which of this host's addresses another host reaches it at.
 *
 * A master must advertise an address its workers can dial; on a login node
 * or a multi-homed host only the one on the route to them will do (a SLURM
 * node reaches the login side only at the bridge address, for one). */
#include <netdb.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "manager.h"

/* This host's address on the route to addr (numeric), by connecting a UDP
 * socket, which sends nothing. */
static bool route_from(const struct sockaddr *to, socklen_t len, char *out,
                       size_t cap) {
  int fd = socket(to->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  struct sockaddr_storage me;
  socklen_t ml = sizeof me;
  bool ok = connect(fd, to, len) == 0 &&
            getsockname(fd, (struct sockaddr *)&me, &ml) == 0 &&
            getnameinfo((struct sockaddr *)&me, ml, out, (socklen_t)cap, NULL,
                        0, NI_NUMERICHOST) == 0;
  close(fd);
  return ok;
}

bool distc__route_to_host(const char *host, char *out, size_t cap) {
  /* IPv4 only: the master's worker socket listens on IPv4, and the address
   * goes into "host:port" unbracketed. */
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM},
                  *res;
  if (getaddrinfo(host, "9", &hints, &res) != 0)
    return false;
  bool ok = false;
  for (struct addrinfo *a = res; a && !ok; a = a->ai_next)
    ok = route_from(a->ai_addr, a->ai_addrlen, out, cap);
  freeaddrinfo(res);
  return ok;
}

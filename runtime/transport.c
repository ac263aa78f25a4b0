/* transport.c — which path a worker's connection to its master takes.
 *
 * By default a worker on the master's host (same network namespace) takes
 * the master's abstract Unix socket, then moves its frames to shared-memory
 * rings beside it (conn.c, ring.c: the socket stays as doorbell and to show
 * a peer's end) and, for large arrays, the single-copy path
 * (process_vm_readv); any other worker dials TCP.  $DISTC_TRANSPORT
 * forces one, so tests can run every feature over each path and the
 * benchmarks can compare like with like:
 *   tcp   loopback TCP even on the same host, and no single-copy reads
 *         (what an MPI run over --mca btl tcp,self does);
 *   shm   the rings, as unset on the same host, but failing instead of
 *         falling back (no socket to reach, no memfd);
 *   unix  the Unix socket alone; a worker offered it that cannot reach it fails
 *         instead of falling back, so a test forced onto it cannot pass
 *         over TCP.  One offered none (a worker joining by hand through
 *         distc-launch --listen) dials TCP as always. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "transport.h"

int distc__transport_forced(distc__transport *t) {
  const char *s = getenv(DISTC_ENV_TRANSPORT);
  *t = DISTC__TRANSPORT_AUTO;
  if (!s || !*s)
    return 0;
  if (strcmp(s, "tcp") == 0)
    *t = DISTC__TRANSPORT_TCP;
  else if (strcmp(s, "unix") == 0)
    *t = DISTC__TRANSPORT_UNIX;
  else if (strcmp(s, "shm") == 0)
    *t = DISTC__TRANSPORT_SHM;
  else
    return distc__seterr(DISTC_EINVAL,
                         "%s=%s names no transport: use tcp, unix or shm, or "
                         "unset it to let distc choose",
                         DISTC_ENV_TRANSPORT, s);
  return 0;
}

int distc__transport_dial_local(const char *local) {
  distc__transport t;
  int rc = distc__transport_forced(&t);
  if (rc < 0)
    return rc;
  if (t == DISTC__TRANSPORT_TCP)
    return -1;
  if (!local)
    return -1; /* offered none (a worker joining by hand): nothing to force */
  int fd = distc__local_dial(local);
  if (fd < 0 && t != DISTC__TRANSPORT_AUTO)
    return distc__seterr(DISTC_EIO,
                         "%s=unix or shm, but the master's same-host socket %s is "
                         "out of reach (another host or network namespace?): "
                         "unset %s to fall back to TCP",
                         DISTC_ENV_TRANSPORT, local, DISTC_ENV_TRANSPORT);
  return fd;
}

bool distc__transport_cma_allowed(void) {
  distc__transport t;
  if (getenv("DISTC_NO_CMA"))
    return false;
  return distc__transport_forced(&t) == 0 && t != DISTC__TRANSPORT_TCP;
}

/* transport.h — which path a worker's connection to its master takes
 * (transport.c).  Internal. */
#ifndef DISTC_TRANSPORT_H
#define DISTC_TRANSPORT_H

#include <stdbool.h>

#define DISTC_ENV_TRANSPORT "DISTC_TRANSPORT"

typedef enum distc__transport {
  DISTC__TRANSPORT_AUTO, /* unset: shm when the Unix socket is reachable,
                          * else TCP */
  DISTC__TRANSPORT_TCP,  /* TCP only, and no single-copy reads */
  DISTC__TRANSPORT_UNIX, /* the same-host Unix socket when offered, or fail */
  DISTC__TRANSPORT_SHM   /* shared-memory rings beside that socket, or fail */
} distc__transport;

/* The transport $DISTC_TRANSPORT forces, or DISTC__TRANSPORT_AUTO; a
 * negative DISTC_EINVAL (with a message naming the valid values) when it
 * names none. */
int distc__transport_forced(distc__transport *t);

/* Worker side: a connected socket to the master's same-host socket `local`
 * ("@name", NULL when the master has none), or -1 to dial TCP instead.
 * Fails (negative DISTC_E*, with a message) only when the transport is
 * forced and cannot be had. */
int distc__transport_dial_local(const char *local);

/* Master side: whether the single-copy path (process_vm_readv) may be
 * tried with a worker at all: not under DISTC_NO_CMA, not when TCP is
 * forced. */
bool distc__transport_cma_allowed(void);

#endif

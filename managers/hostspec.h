/* hostspec.h — the host list grammar of --hosts and --hostfile (internal).
 *
 * One entry names one SSH host and how many workers it gets:
 *
 *   entry  = [user "@"] host [":" count]
 *          | [user "@"] host ":" port ":" count
 *   host   = name | IPv4 address | "[" IPv6 address "]"
 *   count  = 1 .. DISTC_HOST_MAX_SLOTS | "auto"
 *   port   = 1 .. 65535
 *
 * A bare host gets one worker.  `auto` is the host's physical core count,
 * asked of the host when connecting.  A host file has one host per line in
 * the same grammar, or Open MPI's `host slots=N`, or Julia's
 * `N*[user@]host[:port]` (where, as in Julia, the colon gives the SSH port),
 * followed by optional `dir=PATH` and `exename=PATH` words; `#` starts a
 * comment.  The same user@host:port listed twice is one host whose counts
 * add up. */
#ifndef DISTC_HOSTSPEC_H
#define DISTC_HOSTSPEC_H

#include "manager.h"

#define DISTC_HOST_MAX_SLOTS 4096

/* Parses one entry into *h (fields owned by *h, free with distc__host_free
 * on an array).  DISTC_EINVAL, with a message that quotes the entry and
 * says what is allowed, for anything outside the grammar. */
int distc__host_parse(const char *entry, distc_host *h);

/* Parses a comma-separated --hosts list and appends its hosts to
 * *hosts / *n (a malloc'd array the caller frees with distc__host_free,
 * also on failure). */
int distc__hosts_parse_list(const char *list, distc_host **hosts, int *n);

/* Parses a host file and appends its hosts likewise; messages name
 * "FILE:LINE". */
int distc__hosts_parse_file(const char *path, distc_host **hosts, int *n);

/* "user@host:port" as the user would write it, for messages: the user and
 * port only when given.  Returns buf. */
const char *distc__host_label(const distc_host *h, char *buf, size_t len);

#endif

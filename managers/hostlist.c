/* hostlist.c — the ssh manager's resource half: the hosts given with
 * --hosts and --hostfile (grammar in hostspec.h), plus this host when -p
 * asks for workers here.  Reaching the hosts, and asking an `auto` host its
 * core count, is the launch half's business (its prepare). */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "hostspec.h"
#include "manager.h"

typedef struct hostlist_state {
  distc_host *h;
  int n;
} hostlist_state;

static const distc__option hostlist_options[] = {
    {"hosts", true, "LIST", "e.g. node1:2,user@node2:4,node3:2222:auto"},
    {"hostfile", true, "FILE",
     "one host per line, also 'host slots=N' and\n'N*host', with optional "
     "dir= and exename="},
    {NULL, false, NULL, NULL},
};

static int hostlist_set_option(void *state, const char *name,
                               const char *value) {
  hostlist_state *s = state;
  if (strcmp(name, "hosts") == 0)
    return distc__hosts_parse_list(value ? value : "", &s->h, &s->n);
  if (strcmp(name, "hostfile") == 0)
    return distc__hosts_parse_file(value ? value : "", &s->h, &s->n);
  return 0; /* the common settings */
}

static int hostlist_nodes(void *state, int here, distc_host **hosts,
                          int *nhosts) {
  hostlist_state *s = state;
  if (s->n == 0)
    return distc__seterr(DISTC_EINVAL,
                         "the ssh manager needs hosts; give --hosts "
                         "node1:2,node2:4 or --hostfile FILE");
  int extra = here > 0;
  distc_host *out = calloc((size_t)s->n + (size_t)extra, sizeof *out);
  if (out == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory listing the hosts");
  int n = 0;
  if (extra) {
    out[n] = (distc_host){.name = strdup("localhost"), .slots = here,
                          .here = true};
    if (out[n++].name == NULL)
      goto nomem;
  }
  /* The list moves to the caller: nodes is asked once per run. */
  for (int i = 0; i < s->n; i++)
    out[n++] = s->h[i];
  free(s->h);
  s->h = NULL;
  s->n = 0;
  *hosts = out;
  *nhosts = n;
  return 0;

nomem:
  distc__host_free(out, n);
  return distc__seterr(DISTC_ENOMEM, "out of memory listing the hosts");
}

static void hostlist_destroy(void *state) {
  hostlist_state *s = state;
  distc__host_free(s->h, s->n);
  s->h = NULL;
  s->n = 0;
}

const distc__resource_ops distc__resource_hostlist = {
    .name = "hostlist",
    .title = "workers on the hosts listed (-p N adds N on this host)",
    .options = hostlist_options,
    .state_size = sizeof(hostlist_state),
    .remote = true,
    .set_option = hostlist_set_option,
    .nodes = hostlist_nodes,
    .destroy = hostlist_destroy,
};

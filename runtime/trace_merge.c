/* trace_merge.c — the cluster's timeline in one file: at distc_finalize the
 * master collects every worker's events (a call to distc__trace_events,
 * so workers on other hosts are collected too) and the launcher's part
 * file, and writes them with its own as one JSON array to $DISTC_TRACE.
 * A worker that died before finalize takes its events with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Run on a worker: hands its events over (and forgets them). */
DISTC_FUNCTION(distc__trace_events) {
  size_t n = 0;
  char *s = distc__trace_take(&n);
  if (!s)
    return distc_fail(ctx, "out of memory formatting the trace");
  distc_value *v = distc_bytes(s, n);
  free(s);
  return v;
}

void distc__trace_name_track(void) {
  char host[64], name[160];
  distc__hostname(host, sizeof host);
  if (distc__C.myid == DISTC_MASTER)
    snprintf(name, sizeof name, "master (%s, pid %ld)", host, (long)getpid());
  else
    snprintf(name, sizeof name, "worker %d (%s, pid %ld)", distc__C.myid,
             host, (long)getpid());
  distc__trace_set_track(distc__C.myid, name);
}

/* The launcher's part, read whole and removed. */
static char *read_part(const char *path, size_t *len) {
  char part[4096];
  distc__trace_part_path(path, part, sizeof part);
  FILE *f = fopen(part, "r");
  if (!f)
    return NULL;
  char *text = NULL;
  size_t cap = 0;
  FILE *m = open_memstream(&text, &cap);
  char buf[65536];
  size_t k;
  while (m && (k = fread(buf, 1, sizeof buf, f)) > 0)
    fwrite(buf, 1, k, m);
  fclose(f);
  if (m)
    fclose(m);
  unlink(part);
  *len = text ? strlen(text) : 0;
  return text;
}

void distc__trace_collect(void) {
  distc__cluster *C = &distc__C;
  const char *path = getenv("DISTC_TRACE");
  if (!distc__tracing() || !path || !C->is_master)
    return;
  pthread_mutex_lock(&C->lock);
  int n = C->nids;
  int *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
  for (int i = 0; ids && i < n; i++)
    ids[i] = C->ids[i];
  pthread_mutex_unlock(&C->lock);
  char **parts = calloc((size_t)n + 2, sizeof *parts);
  size_t *lens = calloc((size_t)n + 2, sizeof *lens);
  if (!ids || !parts || !lens) {
    distc__log(DISTC__LOG_ERROR, "out of memory writing the trace");
    goto free_all;
  }
  /* Every worker at once, then the answers in turn. */
  distc_future **fs = calloc((size_t)n + 1, sizeof *fs);
  for (int i = 0; fs && i < n; i++)
    if (distc_remotecall(ids[i], "distc__trace_events", NULL, &fs[i]) < 0)
      distc__log(DISTC__LOG_WARN, "trace: %s", distc_errmsg());
  for (int i = 0; fs && i < n; i++) {
    distc_value *v;
    if (!fs[i])
      continue;
    if (distc_fetch(fs[i], &v) == 0) {
      size_t len;
      const char *s = distc_value_str(v, &len);
      parts[i] = malloc(len + 1);
      if (parts[i]) {
        memcpy(parts[i], s, len);
        lens[i] = len;
      }
    } else {
      distc__log(DISTC__LOG_WARN, "trace of worker %d lost: %s", ids[i],
                 distc_errmsg());
    }
    distc_value_free(v);
    distc_future_free(fs[i]);
  }
  free(fs);
  parts[n] = read_part(path, &lens[n]);
  parts[n + 1] = distc__trace_take(&lens[n + 1]);
  if (distc__trace_write(path, parts, lens, n + 2) < 0)
    distc__log(DISTC__LOG_ERROR, "%s", distc_errmsg());
free_all:
  for (int i = 0; parts && i < n + 2; i++)
    free(parts[i]);
  free(parts);
  free(lens);
  free(ids);
}

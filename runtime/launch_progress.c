/* launch_progress.c — while the master waits for its workers to connect
 * (SSH hosts, batch queues), one status line on a terminal:
 *
 *   workers 37/64 connected, 4.2 s (node3: 2 of 4 connecting...)
 *
 * naming the host with the most workers still out, from the launcher's
 * start-up plan (DISTC_WORKER_HOSTS) or distc_addprocs' own.
 * Only when stderr is a terminal (a log or a pipe never gets carriage
 * returns), and only once the wait has lasted long enough to be worth
 * watching, so a quick local start prints nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "launch_progress.h"

#define SHOW_AFTER_NS 300e6
#define REDRAW_NS 100e6

void distc__launch_progress_start(distc__launch_progress *p, int first, int n,
                                  const char *hosts,
                                  int (*joined_in)(int first, int count)) {
  memset(p, 0, sizeof *p);
  const char *off = getenv("DISTC_NO_PROGRESS");
  p->on = n > 0 && !(off && *off) && isatty(STDERR_FILENO);
  p->t0 = distc__now();
  p->shown = -1;
  p->first = first;
  p->hosts = hosts && *hosts && joined_in ? hosts : NULL;
  p->joined_in = joined_in;
}

/* Writes " (HOST: K of C connecting...)" for the host with the most workers
 * not yet joined, or nothing when all are in or the map does not fit n.
 * Walks the map in place: drawn at most ten times a second. */
static void lagging(const distc__launch_progress *p, int n, char *out,
                    size_t cap) {
  *out = '\0';
  if (p->hosts == NULL)
    return;
  const char *best = NULL;
  int best_len = 0, best_out = 0, best_count = 0, index = p->first;
  for (const char *s = p->hosts; *s;) {
    const char *end = strchr(s, ',');
    if (end == NULL)
      end = s + strlen(s);
    const char *colon = end;
    while (colon > s && *colon != ':')
      colon--;
    int count = colon > s ? atoi(colon + 1) : 0;
    if (count <= 0 || index + count > p->first + n)
      return; /* not the plan of these workers */
    int left = count - p->joined_in(index, count);
    if (left > best_out) {
      best = s;
      best_len = (int)(colon - s);
      best_out = left;
      best_count = count;
    }
    index += count;
    s = *end ? end + 1 : end;
  }
  if (best != NULL && index == p->first + n)
    snprintf(out, cap, " (%.*s: %d of %d connecting...)",
             best_len > 64 ? 64 : best_len, best, best_out, best_count);
}

static void draw(distc__launch_progress *p, int joined, int n) {
  char line[256], host[128];
  lagging(p, n, host, sizeof host);
  int k = snprintf(line, sizeof line,
                   "\rworkers %d/%d connected, %.1f s%s\033[K", joined, n,
                   (distc__now() - p->t0) / 1e9, host);
  if (k > 0 && write(STDERR_FILENO, line, (size_t)k) < 0) {
    /* A terminal that went away: nothing to tell anyone. */
  }
  p->drawn = true;
  p->shown = joined;
  p->last = distc__now();
}

void distc__launch_progress_update(distc__launch_progress *p, int joined,
                                   int n) {
  if (!p->on)
    return;
  double now = distc__now();
  if (now - p->t0 < SHOW_AFTER_NS)
    return;
  if (p->drawn && joined == p->shown && now - p->last < REDRAW_NS)
    return;
  draw(p, joined, n);
}

void distc__launch_progress_end(distc__launch_progress *p, int joined,
                                int n) {
  if (!p->on || !p->drawn)
    return;
  draw(p, joined, n);
  if (write(STDERR_FILENO, "\n", 1) < 0) {
    /* as above */
  }
  p->on = false;
}

/* launch_progress.c — while the master waits for its workers to connect
 * (SSH hosts, batch queues), one status line on a terminal:
 *
 *   workers 37/64 connected, 4.2 s
 *
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

void distc__launch_progress_start(distc__launch_progress *p, int n) {
  memset(p, 0, sizeof *p);
  const char *off = getenv("DISTC_NO_PROGRESS");
  p->on = n > 0 && !(off && *off) && isatty(STDERR_FILENO);
  p->t0 = distc__now();
  p->shown = -1;
}

static void draw(distc__launch_progress *p, int joined, int n) {
  char line[128];
  int k = snprintf(line, sizeof line, "\rworkers %d/%d connected, %.1f s\033[K",
                   joined, n, (distc__now() - p->t0) / 1e9);
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

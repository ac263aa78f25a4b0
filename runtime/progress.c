/* progress.c — the progress bar of long parallel operations: one line on
 * stderr, redrawn in place, only when stderr is a terminal (a log file or a
 * pipe never fills up with carriage returns). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "parallel.h"

#define REDRAW_NS 100e6
#define BAR_WIDTH 30

static void draw(distc__progress *p, size_t done) {
  char bar[BAR_WIDTH + 1], line[256];
  size_t fill = p->total ? done * BAR_WIDTH / p->total : BAR_WIDTH;
  for (size_t i = 0; i < BAR_WIDTH; i++)
    bar[i] = i < fill ? '#' : ' ';
  bar[BAR_WIDTH] = '\0';
  double now = distc__now(), el = (now - p->t0) / 1e9;
  int pct = p->total ? (int)(done * 100 / p->total) : 100;
  int n;
  if (done > 0 && done < p->total)
    n = snprintf(line, sizeof line, "\r%s %3d%% |%s| %zu/%zu %.1fs eta %.1fs ",
                 p->label, pct, bar, done, p->total, el,
                 el * (double)(p->total - done) / (double)done);
  else
    n = snprintf(line, sizeof line, "\r%s %3d%% |%s| %zu/%zu %.1fs          ",
                 p->label, pct, bar, done, p->total, el);
  if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
    /* A terminal that went away: nothing to tell anyone. */
  }
  p->shown = done;
  p->last = now;
}

void distc__progress_start(distc__progress *p, const char *label, size_t total,
                           bool off) {
  memset(p, 0, sizeof *p);
  p->on = !off && total > 0 && isatty(STDERR_FILENO);
  p->label = label;
  p->total = total;
  p->t0 = distc__now();
  if (p->on)
    draw(p, 0);
}

void distc__progress_update(distc__progress *p, size_t done) {
  if (!p->on || done == p->shown)
    return;
  if (done < p->total && distc__now() - p->last < REDRAW_NS)
    return;
  draw(p, done);
}

void distc__progress_end(distc__progress *p, size_t done) {
  if (!p->on)
    return;
  draw(p, done);
  if (write(STDERR_FILENO, "\n", 1) < 0) {
    /* as above */
  }
  p->on = false;
}

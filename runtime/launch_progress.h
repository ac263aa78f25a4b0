/* launch_progress.h — the master's "workers N/M connected" line on a
 * terminal while it waits for its workers (internal). */
#ifndef DISTC_LAUNCH_PROGRESS_H
#define DISTC_LAUNCH_PROGRESS_H

#include <stdbool.h>

typedef struct distc__launch_progress {
  bool on, drawn;
  double t0, last; /* ns, distc__now() */
  int shown;
} distc__launch_progress;

/* n: workers awaited.  On only when stderr is a terminal and
 * $DISTC_NO_PROGRESS is unset. */
void distc__launch_progress_start(distc__launch_progress *p, int n);
/* joined of n are in (redrawn at most every 0.1 s, and not before the
 * wait has lasted 0.3 s). */
void distc__launch_progress_update(distc__launch_progress *p, int joined,
                                   int n);
/* Draws the final count and ends the line, if anything was shown. */
void distc__launch_progress_end(distc__launch_progress *p, int joined,
                                int n);

#endif

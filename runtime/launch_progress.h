/* launch_progress.h — the master's "workers N/M connected" line on a
 * terminal while it waits for its workers (internal). */
#ifndef DISTC_LAUNCH_PROGRESS_H
#define DISTC_LAUNCH_PROGRESS_H

#include <stdbool.h>

typedef struct distc__launch_progress {
  bool on, drawn;
  double t0, last; /* ns, distc__now() */
  int shown;
  int first;         /* launch index of the first worker awaited */
  const char *hosts; /* "host:count,..." in index order, or NULL */
  int (*joined_in)(int first, int count);
} distc__launch_progress;

/* n: workers awaited, launch indices first..first+n-1.  On only when stderr
 * is a terminal and $DISTC_NO_PROGRESS is unset.  hosts (may be NULL; kept,
 * not copied) maps the indices to hosts, as distc__startup_hostmap writes
 * it; joined_in counts the workers of an index range that have joined, and
 * is called without the caller's locks, only when the line is drawn. */
void distc__launch_progress_start(distc__launch_progress *p, int first, int n,
                                  const char *hosts,
                                  int (*joined_in)(int first, int count));
/* joined of n are in (redrawn at most every 0.1 s, and not before the
 * wait has lasted 0.3 s). */
void distc__launch_progress_update(distc__launch_progress *p, int joined,
                                   int n);
/* Draws the final count and ends the line, if anything was shown. */
void distc__launch_progress_end(distc__launch_progress *p, int joined,
                                int n);

#endif

/* trace.h — a timeline of what each process did, for Chrome's and
 * Perfetto's trace viewers (internal; distc-launch and libdistc).
 *
 * Off unless $DISTC_TRACE names a file (distc-launch --trace FILE sets it).
 * Each process records its own events in memory; the master collects the
 * workers' (and the launcher's part file) at distc_finalize and writes one
 * JSON array of trace events.  When off, every hook is one predictable
 * branch on distc__trace_enabled. */
#ifndef DISTC_TRACE_H
#define DISTC_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Set once by distc__trace_init, before any thread that records exists. */
extern bool distc__trace_enabled;

static inline bool distc__tracing(void) {
  return __builtin_expect(distc__trace_enabled, 0);
}

/* Turns recording on when $DISTC_TRACE is set and not empty. */
void distc__trace_init(void);
/* This process's track: the pid of its events (distc ids; 0 for the
 * launcher) and the name shown for it. */
void distc__trace_set_track(int pid, const char *name);
/* Now, in microseconds of the wall clock (CLOCK_REALTIME), so the tracks of
 * processes on different hosts line up as well as their clocks do. */
uint64_t distc__trace_now(void);

/* A span from t0 to now on the calling thread (a "complete" event).  cat
 * groups spans ("call", "pmap", "transfer", "launch"); argsfmt (or NULL)
 * gives the members of the args object, JSON already:
 *   distc__trace_span("call", fn, t0, "\"bytes_in\":%zu", n);
 * name is escaped here; strings in args must be escaped by the caller
 * (distc__trace_esc). */
void distc__trace_span(const char *cat, const char *name, uint64_t t0,
                       const char *argsfmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same between two given times. */
void distc__trace_span_at(const char *cat, const char *name, uint64_t t0,
                          uint64_t t1, const char *argsfmt, ...)
    __attribute__((format(printf, 5, 6)));
/* An asynchronous span (its own row, may overlap others on the thread):
 * begin and end carry the same id. */
void distc__trace_async(const char *cat, const char *name, uint64_t id,
                        uint64_t t0, uint64_t t1, const char *argsfmt, ...)
    __attribute__((format(printf, 6, 7)));
/* s escaped for a JSON string (quotes not included) into buf. */
const char *distc__trace_esc(const char *s, char *buf, size_t n);

/* Every event recorded so far, as JSON objects separated by ",\n" (no
 * brackets), with this process's metadata first; the events are dropped
 * from memory.  NULL when out of memory; *len receives the length. */
char *distc__trace_take(size_t *len);
/* Writes parts (each as distc__trace_take gives them; NULL or empty ones
 * skipped) as one JSON array to path, through a temporary file renamed
 * into place.  0 or DISTC_EIO. */
int distc__trace_write(const char *path, char *const *parts,
                       const size_t *lens, int n);
/* The launcher's part file next to the trace: "<path>.launcher". */
void distc__trace_part_path(const char *path, char *buf, size_t n);
/* When distc__trace_init ran (distc_init's start), if recording. */
extern uint64_t distc__trace_t_init;

/* libdistc only (trace_merge.c): names this process's track from its id
 * and host; the master collects and writes the whole trace. */
void distc__trace_name_track(void);
void distc__trace_collect(void);

#endif

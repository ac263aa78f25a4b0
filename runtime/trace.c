/* trace.c — recording a process's timeline and writing it as Chrome/Perfetto
 * trace events (see trace.h).
 *
 * Events are kept as fixed-size records under one mutex: tracing is a
 * diagnostic mode, and a lock per event costs far less than the calls it
 * records.  They are formatted only when taken, with the process's track id
 * as it is then (a worker learns its id after it has started recording). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "trace.h"

/* At most this many events per process (about 80 MB); later ones are
 * counted and the count reported in the track's metadata. */
#define MAX_EVENTS (1u << 18)

bool distc__trace_enabled;
uint64_t distc__trace_t_init;

typedef struct event {
  uint64_t ts, dur, id;
  int tid;
  char ph; /* 'X' complete, 'b'/'e' async begin/end */
  char cat[12];
  char name[64];
  char args[240];
} event;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static event *evs;
static size_t nevs, capevs;
static uint64_t dropped;
static int track_pid;
static char track_name[128] = "process";
static __thread int my_tid;

void distc__trace_init(void) {
  const char *p = getenv("DISTC_TRACE");
  distc__trace_enabled = p && *p;
  if (distc__trace_enabled)
    distc__trace_t_init = distc__trace_now();
}

void distc__trace_set_track(int pid, const char *name) {
  pthread_mutex_lock(&mu);
  track_pid = pid;
  snprintf(track_name, sizeof track_name, "%s", name);
  pthread_mutex_unlock(&mu);
}

uint64_t distc__trace_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *distc__trace_esc(const char *s, char *buf, size_t n) {
  size_t o = 0;
  for (; s && *s && o + 7 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(buf + o, n - o, "\\u%04x", c);
    } else {
      buf[o++] = (char)c;
    }
  }
  buf[o] = '\0';
  return buf;
}

static void record(char ph, const char *cat, const char *name, uint64_t t0,
                   uint64_t t1, uint64_t id, const char *argsfmt,
                   va_list ap) {
  if (!my_tid)
    my_tid = (int)syscall(SYS_gettid);
  event e = {.ts = t0, .dur = t1 > t0 ? t1 - t0 : 0, .id = id,
             .tid = my_tid, .ph = ph};
  snprintf(e.cat, sizeof e.cat, "%s", cat);
  distc__trace_esc(name, e.name, sizeof e.name);
  if (argsfmt)
    vsnprintf(e.args, sizeof e.args, argsfmt, ap);
  pthread_mutex_lock(&mu);
  if (nevs == capevs && capevs < MAX_EVENTS) {
    size_t cap = capevs ? capevs * 2 : 1024;
    event *n = realloc(evs, cap * sizeof *n);
    if (n) {
      evs = n;
      capevs = cap;
    }
  }
  if (nevs < capevs)
    evs[nevs++] = e;
  else
    dropped++;
  pthread_mutex_unlock(&mu);
}

void distc__trace_span(const char *cat, const char *name, uint64_t t0,
                       const char *argsfmt, ...) {
  va_list ap;
  va_start(ap, argsfmt);
  record('X', cat, name, t0, distc__trace_now(), 0, argsfmt, ap);
  va_end(ap);
}

void distc__trace_span_at(const char *cat, const char *name, uint64_t t0,
                          uint64_t t1, const char *argsfmt, ...) {
  va_list ap;
  va_start(ap, argsfmt);
  record('X', cat, name, t0, t1, 0, argsfmt, ap);
  va_end(ap);
}

void distc__trace_async(const char *cat, const char *name, uint64_t id,
                        uint64_t t0, uint64_t t1, const char *argsfmt, ...) {
  va_list ap;
  va_start(ap, argsfmt);
  record('b', cat, name, t0, t1, id, argsfmt, ap);
  va_end(ap);
}

/* A growing string for take(). */
typedef struct sbuf {
  char *p;
  size_t len, cap;
  bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = b->oom ? 0 : vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (b->oom || n < 0)
      return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n + 1;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

char *distc__trace_take(size_t *len) {
  sbuf b = {.p = malloc(4096), .cap = 4096};
  if (!b.p)
    return NULL;
  b.p[0] = '\0';
  char name[256];
  pthread_mutex_lock(&mu);
  int pid = track_pid;
  sb_printf(&b,
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"name\":\"%s\"}},\n"
            "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,"
            "\"tid\":0,\"args\":{\"sort_index\":%d}}",
            pid, distc__trace_esc(track_name, name, sizeof name), pid, pid);
  if (dropped)
    sb_printf(&b,
              ",\n{\"name\":\"events dropped\",\"ph\":\"M\",\"pid\":%d,"
              "\"tid\":0,\"args\":{\"dropped\":%llu,\"kept\":%u}}",
              pid, (unsigned long long)dropped, MAX_EVENTS);
  for (size_t i = 0; i < nevs; i++) {
    const event *e = &evs[i];
    if (e->ph == 'X')
      sb_printf(&b,
                ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%llu,"
                "\"dur\":%llu,\"pid\":%d,\"tid\":%d,\"args\":{%s}}",
                e->name, e->cat, (unsigned long long)e->ts,
                (unsigned long long)e->dur, pid, e->tid, e->args);
    else
      sb_printf(&b,
                ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"b\",\"id\":"
                "\"0x%llx\",\"ts\":%llu,\"pid\":%d,\"tid\":%d,\"args\":{%s}}"
                ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"e\",\"id\":"
                "\"0x%llx\",\"ts\":%llu,\"pid\":%d,\"tid\":%d}",
                e->name, e->cat, (unsigned long long)e->id,
                (unsigned long long)e->ts, pid, e->tid, e->args, e->name,
                e->cat, (unsigned long long)e->id,
                (unsigned long long)(e->ts + e->dur), pid, e->tid);
  }
  nevs = 0;
  dropped = 0;
  pthread_mutex_unlock(&mu);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}

int distc__trace_write(const char *path, char *const *parts,
                       const size_t *lens, int n) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f)
    return distc__seterr(DISTC_EIO, "cannot write the trace %s: %s", tmp,
                         strerror(errno));
  fputs("[\n", f);
  bool first = true;
  for (int i = 0; i < n; i++) {
    if (!parts[i] || !lens[i])
      continue;
    if (!first)
      fputs(",\n", f);
    fwrite(parts[i], 1, lens[i], f);
    first = false;
  }
  fputs("\n]\n", f);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return distc__seterr(DISTC_EIO, "cannot write the trace %s: %s", path,
                         strerror(e));
  }
  return 0;
}

void distc__trace_part_path(const char *path, char *buf, size_t n) {
  snprintf(buf, n, "%s.launcher", path);
}

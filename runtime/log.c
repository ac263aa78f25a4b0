/* log.c — the library's only way to print. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static int log_level = -1;
static int log_id;
static const char *log_name; /* set by a program (distc-launch) */
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_init(void) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  const char *s = getenv("DISTC_LOG");
  log_level = DISTC__LOG_WARN;
  for (int i = 0; s && i < (int)DISTC__ARRAY_LEN(names); i++)
    if (strcmp(s, names[i]) == 0)
      log_level = i;
}

void distc__log_setid(int id) { log_id = id; }

void distc__log_setname(const char *name) { log_name = name; }

/* One write per line so lines from several threads never interleave; a
 * long line (a worker's whole command) is allocated, never cut. */
static void vlog(const char *fmt, va_list ap) {
  char small[2048], *line = small;
  char prefix[64];
  if (log_name != NULL)
    snprintf(prefix, sizeof prefix, "%s: ", log_name);
  else
    snprintf(prefix, sizeof prefix, "distc[%d]: ", log_id);
  size_t p = strlen(prefix);
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  if (n < 0)
    return;
  size_t need = p + (size_t)n + 2;
  if (need > sizeof small && (line = malloc(need)) == NULL) {
    line = small;
    need = sizeof small;
  }
  memcpy(line, prefix, p);
  vsnprintf(line + p, need - p - 1, fmt, ap);
  size_t len = strlen(line);
  line[len++] = '\n';
  fwrite(line, 1, len, stderr);
  fflush(stderr);
  if (line != small)
    free(line);
}

void distc__log(int level, const char *fmt, ...) {
  pthread_once(&log_once, log_init);
  if (level > log_level)
    return;
  va_list ap;
  va_start(ap, fmt);
  vlog(fmt, ap);
  va_end(ap);
}

void distc__log_fatal(const char *who, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  distc__log(DISTC__LOG_ERROR, "%s: %s", who, msg);
  _exit(1);
}

void distc__log_print(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(fmt, ap);
  va_end(ap);
}

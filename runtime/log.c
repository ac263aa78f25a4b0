/* log.c — the library's only way to print. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static int log_level = -1;
static int log_id;
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

void distc__log(int level, const char *fmt, ...) {
  pthread_once(&log_once, log_init);
  if (level > log_level)
    return;
  char line[2048];
  int n = snprintf(line, sizeof line, "distc[%d]: ", log_id);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line);
  line[len++] = '\n';
  /* One write per line so lines from several threads never interleave. */
  fwrite(line, 1, len, stderr);
  fflush(stderr);
}

/* error.c — the one error space: codes, static texts, per-thread detail. */
#include <stdio.h>
#include <string.h>

#include "common.h"

static const char *const error_text[] = {
#define DISTC__ERR_TEXT(name, text) text,
    DISTC_ERRNO_MAP(DISTC__ERR_TEXT)
#undef DISTC__ERR_TEXT
};

const char *distc_strerror(int err) {
  if (err == 0)
    return "success";
  int i = err - DISTC__ERR_FIRST - 1;
  if (i < 0 || i >= (int)DISTC__ARRAY_LEN(error_text))
    return "unknown error";
  return error_text[i];
}

/* Long enough for a gathered list of errors from a few dozen workers;
 * longer text is cut, never overrun. */
static _Thread_local char errmsg[8192];

const char *distc_errmsg(void) { return errmsg; }

void distc__clearerr(void) { errmsg[0] = '\0'; }

/* The text may quote the message it replaces (distc_errmsg() among the
 * arguments): it is built beside it, then copied. */
int distc__vseterr(int code, const char *fmt, va_list ap) {
  static _Thread_local char next[sizeof errmsg];
  vsnprintf(next, sizeof next, fmt, ap);
  memcpy(errmsg, next, strlen(next) + 1);
  return code;
}

int distc__seterr(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  distc__vseterr(code, fmt, ap);
  va_end(ap);
  return code;
}

void distc__adderr(const char *fmt, ...) {
  size_t n = strlen(errmsg);
  if (n > 0 && n + 1 < sizeof errmsg)
    errmsg[n++] = '\n';
  if (n + 1 >= sizeof errmsg)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg + n, sizeof errmsg - n, fmt, ap);
  va_end(ap);
}

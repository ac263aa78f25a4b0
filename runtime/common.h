/* common.h — internal helpers every part of distc uses: errors, logging. */
#ifndef DISTC_COMMON_H
#define DISTC_COMMON_H

#include <stdarg.h>

#include "distc.h"

/* Records a detailed message for distc_errmsg() and returns code, so
 * `return distc__seterr(DISTC_EINVAL, "-p wants a number, got '%s'", s);`. */
int distc__seterr(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int distc__vseterr(int code, const char *fmt, va_list ap);
/* Appends "\n" + text to the current message (used to gather errors). */
void distc__adderr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void distc__clearerr(void);

enum { DISTC__LOG_ERROR, DISTC__LOG_WARN, DISTC__LOG_INFO, DISTC__LOG_DEBUG };
/* The only place the library prints: to stderr, prefixed "distc[<id>]: ",
 * when level <= the level set by DISTC_LOG (error, warn, info, debug;
 * default warn). */
void distc__log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void distc__log_setid(int id);
/* Prints what the user asked to see (-v, --dry-run), whatever the level,
 * prefixed like distc__log. */
void distc__log_print(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Logs "who: message" as an error and ends the process with _exit(1): for
 * a worker that cannot go on (its master unreachable, a refused join). */
void distc__log_fatal(const char *who, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
/* A program's own name ("distc-launch") replaces the "distc[<id>]" prefix. */
void distc__log_setname(const char *name);

#define DISTC__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif

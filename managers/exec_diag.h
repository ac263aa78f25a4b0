/* exec_diag.h — why a started process exited with status 127 before it ran
 * (internal; distc-launch and distc_addprocs). */
#ifndef DISTC_EXEC_DIAG_H
#define DISTC_EXEC_DIAG_H

#include <stdbool.h>
#include <stddef.h>

/* The exit status the dynamic loader (and a shell) gives a program it could
 * not start. */
#define DISTC_EXIT_NOT_STARTED 127

/* For a process that ran exe and exited with DISTC_EXIT_NOT_STARTED: asks
 * exe's own dynamic loader which shared libraries it cannot find (as ldd
 * does, without running exe) and writes to buf a sentence naming them and
 * what to do (an rpath or LD_LIBRARY_PATH).  When none is missing, or exe is
 * not a dynamically linked ELF program, writes a sentence that says what
 * status 127 means instead.  Never runs exe itself; bounded in time. */
void distc__exec_diagnose(const char *exe, char *buf, size_t n);

#endif

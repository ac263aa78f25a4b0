/* proxy.h — the line protocol between a launch half on the master's host
 * (its side: proxy_link.c, used by ssh.c) and the proxy it starts on each
 * other host (proxy.c).
 *
 * The proxy is the user's own program with DISTC_ROLE=proxy: distc_init
 * runs distc__proxy_main instead of the program.  It speaks on its stdin
 * and stdout (for ssh the SSH channel; for an srun launcher srun's); its
 * stderr, and the stdout and stderr of the workers it starts, are a second
 * stream the launch half prints tagged with the host.  So the secret
 * travels inside that channel and never on a command line.  (Over SSH,
 * before the proxy starts, the bootstrap shell has read from the same
 * stdin what to run, where, with which arguments and environment, up to a
 * "." line: see bootstrap_sh in ssh.c.)
 *
 * Manager -> proxy, one line each, in this order:
 *   distc-proxy 1              protocol and version
 *   master HOST:PORT           what the workers dial
 *   secret HEX                 DISTC_SECRET_LEN bytes, hex
 *   exe PATH                   what the workers run (escaped)
 *   blas N | blas auto         BLAS/OpenMP threads; auto: cores / workers
 *   probe MS                   0, or: first check within MS milliseconds
 *                              that a TCP connection to the master opens
 *   end
 * then later
 *   start FIRST COUNT          start workers with these launch indices
 *   signal N                   send signal N to every worker still running
 *   kill INDEX N               send signal N to that one worker if it runs
 *                              (one the master lost for silence; an older
 *                              proxy ignores the line)
 * and end of file, which stops every worker (TERM, then KILL after
 * DISTC_PROXY_TERM_GRACE_MS) and ends the proxy.
 *
 * Proxy -> manager:
 *   hello PID CORES            configured (and the master reachable)
 *   started INDEX PID          one per worker
 *   running                    all COUNT started
 *   exit INDEX WSTATUS         a worker ended (waitpid status)
 *   fail TEXT                  cannot go on; the proxy exits after it
 *
 * Escaping: '\\' as "\\\\" and newline as "\\n".
 *
 * Shared streams: srun gives all proxies of a step one stdin (each gets
 * every byte) and one stdout.  With DISTC_PROXY_MUX=VAR in its environment
 * a proxy reads only the lines that begin with "@" + the value of $VAR +
 * " " (its node's name), without that prefix, and writes every line with
 * it; the manager does the converse (srun.c). */
#ifndef DISTC_PROXY_H
#define DISTC_PROXY_H

#define DISTC_PROXY_HEADER "distc-proxy 1"
#define DISTC_PROXY_LINE_MAX 65536
#define DISTC_ENV_PROXY_MUX "DISTC_PROXY_MUX"
/* How long stopped workers get between SIGTERM and SIGKILL. */
#define DISTC_PROXY_TERM_GRACE_MS 1000

/* ---- the manager's side (proxy_link.c) -----------------------------------
 *
 * One link per host: the bytes to send and the lines received, whatever
 * carries them.  A transport (an SSH channel, a pair of pipes) moves
 * pl->out to the proxy and feeds what comes back to distc__plink_input and
 * distc__plink_stderr; distc__plink_flush_fd and distc__plink_read_fd do
 * that for plain descriptors.  Not thread-safe: the caller's lock. */

#include <stdbool.h>
#include <stddef.h>

typedef enum distc__plink_phase {
  DISTC__P_NEW,       /* transport not up */
  DISTC__P_CONNECTED, /* transport up, proxy not configured */
  DISTC__P_STARTING,  /* configuration sent, its hello awaited */
  DISTC__P_HELLO,     /* proxy ready, workers not started */
  DISTC__P_RUNNING,   /* workers started */
  DISTC__P_DONE,      /* the proxy is gone */
  DISTC__P_FAILED,
} distc__plink_phase;

typedef struct distc__pworker {
  int index;
  long pid; /* on its host */
  bool running;
} distc__pworker;

/* Called for each worker the link learns has ended (status -1: unknown). */
typedef void (*distc__plink_exit_fn)(void *arg, int index, long pid,
                                     int status);

typedef struct distc__plink {
  char label[320]; /* the host as the user wrote it, for messages */
  distc__plink_phase phase;
  char *error;     /* why it failed, for the user; owned */
  bool verbose;    /* say hello and running through the logger */
  bool reporting;  /* the launch returned: failures are logged at once */
  /* What to tell a user whose host lacks the directory or program, and
   * whose workers cannot reach the master; owned by the caller. */
  const char *hint_host, *hint_reach;
  const char *exe, *dir; /* what the proxy was told; owned by the caller */
  distc__plink_exit_fn on_exit;
  void *arg;
  /* to the proxy */
  char *out;
  size_t out_len, out_cap;
  bool closing;  /* end the stream once out is flushed */
  bool eof_sent;
  /* from the proxy: its report stream and its stderr, partial lines */
  char in[DISTC_PROXY_LINE_MAX];
  size_t in_len;
  char err[4096];
  size_t err_len;
  /* its workers */
  int first, count;
  distc__pworker *w;
} distc__plink;

/* What the proxy is configured with (the protocol's first lines). */
typedef struct distc__plink_config {
  const char *master;          /* HOST:PORT its workers dial */
  const unsigned char *secret; /* DISTC_SECRET_LEN bytes */
  const char *exe;
  int blas;                    /* 0: auto, the host's own cores / workers */
  int probe_ms;
} distc__plink_config;

/* Records the first failure (later ones are consequences) and sets the
 * phase to DISTC__P_FAILED. */
void distc__plink_fail(distc__plink *pl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Queueing to the proxy; DISTC_ENOMEM when out of memory. */
int distc__plink_append(distc__plink *pl, const char *data, size_t n);
int distc__plink_line(distc__plink *pl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int distc__plink_config_send(distc__plink *pl, const distc__plink_config *c);
/* Hands the proxy launch indices first..first+count-1; they count as
 * running from now on, until reported gone. */
int distc__plink_start(distc__plink *pl, int first, int count);
int distc__plink_signal(distc__plink *pl, int sig);
/* The link's worker `index` running: "kill INDEX SIG" queued, 0; else
 * DISTC_ENOENT. */
int distc__plink_kill_one(distc__plink *pl, int index, int sig);
/* Whether launch index `index` was handed to this link. */
bool distc__plink_has(const distc__plink *pl, int index);
/* Feeds bytes of the report stream; whole lines are acted on. */
void distc__plink_input(distc__plink *pl, const char *buf, size_t n);
/* Feeds bytes of the stderr stream; whole lines (all, when flush) are
 * written to our stderr, each tagged with the host. */
void distc__plink_stderr(distc__plink *pl, const char *buf, size_t n,
                         bool flush);
/* The proxy is gone: every worker still running is reported ended with an
 * unknown status, and a start cut short becomes a failure. */
void distc__plink_gone(distc__plink *pl);
void distc__plink_lose_workers(distc__plink *pl);
int distc__plink_running(const distc__plink *pl);
/* Plain descriptors: writes what it can of pl->out to fd without blocking
 * (closing fd's write side once closing and flushed, so pass the fd only
 * the link writes to); reads what fd has and feeds it to input (stderr
 * when err).  Return 0, or -1 when the descriptor is finished. */
int distc__plink_flush_fd(distc__plink *pl, int fd);
int distc__plink_read_fd(distc__plink *pl, int fd, bool err);
void distc__plink_free(distc__plink *pl);

#endif

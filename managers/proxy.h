/* proxy.h — the line protocol between the SSH manager (ssh.c, on the
 * master's host) and the proxy it starts on each remote host (proxy.c).
 *
 * The proxy is the user's own program with DISTC_ROLE=proxy: distc_init
 * runs distc__proxy_main instead of the program.  It speaks on its stdin
 * and stdout, which are the SSH channel; its stderr, and the stdout and
 * stderr of the workers it starts, are the channel's stderr.  So the
 * secret travels inside the SSH session and never on a command line.
 * (Before the proxy starts, the bootstrap shell has read from the same
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
 * Escaping: '\\' as "\\\\" and newline as "\\n". */
#ifndef DISTC_PROXY_H
#define DISTC_PROXY_H

#define DISTC_PROXY_HEADER "distc-proxy 1"
#define DISTC_PROXY_LINE_MAX 65536
/* How long stopped workers get between SIGTERM and SIGKILL. */
#define DISTC_PROXY_TERM_GRACE_MS 1000

#endif

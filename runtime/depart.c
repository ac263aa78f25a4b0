/* depart.c — a worker that dies inside a call says how, so the caller's
 * error names the cause: "exited with signal 11 (Segmentation fault)" or
 * "exited with status 3" instead of only "process exited".
 *
 * The worker sends one DEPART frame (its text as payload) on its master
 * connection as it goes: from a handler of the fatal signals, and from an
 * on_exit() hook for exit() called by a program's function.  Both run in a
 * process that is about to vanish, possibly with another thread halfway
 * through a frame: the frame goes out only if the connection's write lock
 * can be taken within a short bound, with plain send() (async-signal-safe),
 * and never blocks for long.  SIGKILL and _exit() leave no word; the
 * launcher reports those (and these) from the wait status. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS};

/* Written once by distc__depart_init before any handler can run. */
static distc__conn *conn;
/* A child a function forked shares the socket but not the lock: only the
 * worker itself may write on it. */
static pid_t worker_pid;
static char sig_text[DISTC__ARRAY_LEN(fatal)][96];
static struct sigaction old_act[DISTC__ARRAY_LEN(fatal)];

/* Sends the DEPART frame; async-signal-safe.  Gives up after about 200 ms
 * (the lock held by a thread that will never let go, a full socket). */
static void send_departure(const char *text) {
  size_t n = strlen(text);
  unsigned char frame[DISTC__HDR_LEN + 128];
  if (!conn || conn->fd < 0 || n > sizeof frame - DISTC__HDR_LEN ||
      getpid() != worker_pid)
    return;
  memset(frame, 0, DISTC__HDR_LEN);
  for (int i = 0; i < 4; i++)
    frame[i] = (unsigned char)(n >> (8 * i));
  frame[4] = DISTC__F_DEPART;
  memcpy(frame + DISTC__HDR_LEN, text, n);
  struct timespec tick = {0, 1000 * 1000};
  int tries = 0;
  while (pthread_mutex_trylock(&conn->wlock) != 0)
    if (++tries > 200 || nanosleep(&tick, NULL) < 0)
      return;
  size_t off = 0, total = DISTC__HDR_LEN + n;
  while (off < total && tries <= 200) {
    ssize_t w = distc__conn_write_some(conn, frame + off, total - off);
    if (w > 0) {
      off += (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd p = {.fd = conn->fd, .events = POLLOUT};
      poll(&p, 1, 1);
      tries++;
    } else {
      break;
    }
  }
  /* Left locked: a half-sent frame must not be followed by another. */
  if (off == total)
    pthread_mutex_unlock(&conn->wlock);
}

static void on_fatal(int sig) {
  int saved = errno;
  for (size_t i = 0; i < DISTC__ARRAY_LEN(fatal); i++) {
    if (fatal[i] != sig)
      continue;
    send_departure(sig_text[i]);
    /* Whatever handled it before us (a sanitizer, the default) takes it
     * from here: a fault happens again on return, a raised signal now. */
    sigaction(sig, &old_act[i], NULL);
    break;
  }
  raise(sig);
  errno = saved;
}

static void on_exit_hook(int status, void *arg) {
  (void)arg;
  char text[64];
  snprintf(text, sizeof text, "exited with status %d", status & 0xff);
  send_departure(text);
}

void distc__depart_init(distc__conn *c) {
  conn = c;
  worker_pid = getpid();
  for (size_t i = 0; i < DISTC__ARRAY_LEN(fatal); i++) {
    snprintf(sig_text[i], sizeof sig_text[i], "exited with signal %d (%s)",
             fatal[i], strsignal(fatal[i]));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sigemptyset(&sa.sa_mask);
    sigaction(fatal[i], &sa, &old_act[i]);
    /* A program that ignores one of these keeps it ignored. */
    if (old_act[i].sa_handler == SIG_IGN)
      sigaction(fatal[i], &old_act[i], NULL);
  }
  on_exit(on_exit_hook, NULL);
}

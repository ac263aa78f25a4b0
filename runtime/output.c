/* output.c — worker stdout/stderr to the master's terminal, tagged.
 *
 * A worker's fds 1 and 2 are one pipe whose bytes travel to the master as
 * OUTPUT frames over the runtime connection, so tagging works the same for
 * every cluster manager (a remote worker's stdout is not the master's).  The
 * master cuts them into lines and prints each as Julia does:
 *       From worker 3:	<line>
 * Two threads read the pipe on a worker: the I/O thread when it becomes
 * readable, and the executor right before it sends a call's answer, so what
 * a call printed always reaches the master before its result.  out_lock
 * keeps the chunks in order across both. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int out_rd = -1;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

int distc__output_capture(void) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return distc__seterr(DISTC_EIO, "pipe: %s", strerror(errno));
  fflush(stdout);
  fflush(stderr);
  if (dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0) {
    close(p[0]);
    close(p[1]);
    return distc__seterr(DISTC_EIO, "dup2: %s", strerror(errno));
  }
  close(p[1]);
  /* A pipe makes stdio fully buffered; a worker's println should show up
   * as it happens, as on a terminal. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  distc__set_nonblock(p[0], true);
  out_rd = p[0];
  return 0;
}

int distc__output_fd(void) { return out_rd; }

void distc__output_drain(distc__conn *c) {
  if (out_rd < 0)
    return;
  fflush(stdout);
  distc__output_forward(c);
}

/* Never touches stdio: the I/O thread calls it, and a function writing
 * through stdio into a full pipe holds stdout's lock until this thread has
 * emptied the pipe. */
void distc__output_forward(distc__conn *c) {
  if (out_rd < 0)
    return;
  /* Output goes to the master whichever link the call came on. */
  if (!distc__C.is_master && distc__C.master)
    c = distc__C.master;
  pthread_mutex_lock(&out_lock);
  char buf[16384];
  for (;;) {
    ssize_t n = read(out_rd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    struct iovec iov = {buf, (size_t)n};
    if (distc__conn_send(c, DISTC__F_OUTPUT, 0, 0, &iov, 1) < 0)
      break;
    if ((size_t)n < sizeof buf)
      break;
  }
  pthread_mutex_unlock(&out_lock);
}

/* end: how the printed line ends, '\n' or '\r' (a progress bar that
 * redraws itself keeps doing so on the master's terminal). */
static void print_line(int id, const char *p, size_t n, char end) {
  char tag[48];
  int k = snprintf(tag, sizeof tag, "      From worker %d:\t", id);
  fwrite(tag, 1, (size_t)k, stdout);
  fwrite(p, 1, n, stdout);
  fputc(end, stdout);
}

/* Prints the worker's pending partial line followed by p[0..n) as one line,
 * and empties the pending part. */
static void print_joined(distc__conn *c, const char *p, size_t n, char end) {
  if (c->linelen) {
    char tag[48];
    int k = snprintf(tag, sizeof tag, "      From worker %d:\t", c->id);
    fwrite(tag, 1, (size_t)k, stdout);
    fwrite(c->linebuf, 1, c->linelen, stdout);
    fwrite(p, 1, n, stdout);
    fputc(end, stdout);
    c->linelen = 0;
  } else {
    print_line(c->id, p, n, end);
  }
}

/* A worker's partial line is kept until its end arrives, but never more
 * than DISTC__LINE_CAP bytes of it: a worker writing without newlines
 * costs the master one buffer of that size, whatever it writes.  A longer
 * line is printed in pieces of the cap, each tagged.  A '\r' ends a piece
 * too (printed with its '\r'), so a progress bar is shown as it advances
 * instead of piling up; the '\n' of a "\r\n" only ends that line. */
void distc__output_print(distc__conn *c, const char *p, size_t n) {
  pthread_mutex_lock(&print_lock);
  flockfile(stdout);
  while (n > 0) {
    if (c->linecr && c->linelen == 0 && *p == '\n') {
      fputc('\n', stdout);
      c->linecr = false;
      p++;
      n--;
      continue;
    }
    c->linecr = false;
    size_t room = DISTC__LINE_CAP - c->linelen, k = 0;
    while (k < n && k < room && p[k] != '\n' && p[k] != '\r')
      k++;
    if (k < n && k < room) {
      /* p[k] ends the line. */
      c->linecr = p[k] == '\r';
      print_joined(c, p, k, p[k]);
      p += k + 1;
      n -= k + 1;
    } else if (k == room) {
      print_joined(c, p, k, '\n');
      p += k;
      n -= k;
    } else {
      if (!c->linebuf)
        c->linebuf = malloc(DISTC__LINE_CAP);
      if (c->linebuf) {
        memcpy(c->linebuf + c->linelen, p, k);
        c->linelen += k;
      } else {
        print_line(c->id, p, k, '\n');
      }
      break;
    }
  }
  fflush(stdout);
  funlockfile(stdout);
  pthread_mutex_unlock(&print_lock);
}

void distc__output_flush(distc__conn *c) {
  pthread_mutex_lock(&print_lock);
  if (c->linelen) {
    flockfile(stdout);
    print_line(c->id, c->linebuf, c->linelen, '\n');
    fflush(stdout);
    funlockfile(stdout);
    c->linelen = 0;
  }
  pthread_mutex_unlock(&print_lock);
}

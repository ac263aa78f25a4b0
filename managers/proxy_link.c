/* proxy_link.c — the manager's side of the proxy protocol (proxy.h): what
 * a launch half says to the proxy on each host, and what it makes of the
 * proxy's reports, whatever carries the bytes (an SSH channel for ssh.c, a
 * pair of pipes for a launcher that runs the proxy under srun). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"
#include "proxy.h"

void distc__plink_fail(distc__plink *pl, const char *fmt, ...) {
  if (pl->error == NULL) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&pl->error, fmt, ap) < 0)
      pl->error = NULL;
    va_end(ap);
  }
  pl->phase = DISTC__P_FAILED;
}

int distc__plink_append(distc__plink *pl, const char *data, size_t n) {
  if (pl->out_len + n > pl->out_cap) {
    size_t cap = pl->out_cap ? pl->out_cap : 1024;
    while (cap < pl->out_len + n)
      cap *= 2;
    char *grown = realloc(pl->out, cap);
    if (grown == NULL)
      return DISTC_ENOMEM;
    pl->out = grown;
    pl->out_cap = cap;
  }
  memcpy(pl->out + pl->out_len, data, n);
  pl->out_len += n;
  return 0;
}

int distc__plink_line(distc__plink *pl, const char *fmt, ...) {
  char *line = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return DISTC_ENOMEM;
  int rc = distc__plink_append(pl, line, (size_t)n);
  if (rc == 0)
    rc = distc__plink_append(pl, "\n", 1);
  free(line);
  return rc;
}

/* "word " + value escaped as proxy.h says. */
static int escaped(distc__plink *pl, const char *word, const char *value) {
  int rc = distc__plink_append(pl, word, strlen(word));
  if (rc == 0)
    rc = distc__plink_append(pl, " ", 1);
  for (const char *p = value; *p && rc == 0; p++) {
    if (*p == '\\')
      rc = distc__plink_append(pl, "\\\\", 2);
    else if (*p == '\n')
      rc = distc__plink_append(pl, "\\n", 2);
    else
      rc = distc__plink_append(pl, p, 1);
  }
  if (rc == 0)
    rc = distc__plink_append(pl, "\n", 1);
  return rc;
}

int distc__plink_config_send(distc__plink *pl, const distc__plink_config *c) {
  char hex[2 * DISTC_SECRET_LEN + 1];
  for (int i = 0; i < DISTC_SECRET_LEN; i++)
    snprintf(hex + 2 * i, 3, "%02x", c->secret[i]);
  int rc = distc__plink_line(pl, "%s", DISTC_PROXY_HEADER);
  if (rc == 0)
    rc = distc__plink_line(pl, "master %s", c->master);
  if (rc == 0)
    rc = distc__plink_line(pl, "secret %s", hex);
  if (rc == 0)
    rc = escaped(pl, "exe", c->exe);
  if (rc == 0 && c->blas <= 0)
    rc = distc__plink_line(pl, "blas auto");
  else if (rc == 0)
    rc = distc__plink_line(pl, "blas %d", c->blas);
  if (rc == 0)
    rc = distc__plink_line(pl, "probe %d", c->probe_ms);
  if (rc == 0)
    rc = distc__plink_line(pl, "end");
  explicit_bzero(hex, sizeof hex);
  if (rc == 0)
    pl->phase = DISTC__P_STARTING;
  return rc;
}

int distc__plink_start(distc__plink *pl, int first, int count) {
  pl->w = calloc((size_t)count, sizeof *pl->w);
  if (pl->w == NULL)
    return DISTC_ENOMEM;
  pl->first = first;
  pl->count = count;
  for (int k = 0; k < count; k++)
    pl->w[k] = (distc__pworker){.index = first + k, .running = true};
  return distc__plink_line(pl, "start %d %d", first, count);
}

int distc__plink_signal(distc__plink *pl, int sig) {
  return distc__plink_line(pl, "signal %d", sig);
}

static distc__pworker *find_worker(distc__plink *pl, int index) {
  for (int i = 0; i < pl->count; i++)
    if (pl->w[i].index == index)
      return &pl->w[i];
  return NULL;
}

int distc__plink_kill_one(distc__plink *pl, int index, int sig) {
  distc__pworker *w = find_worker(pl, index);
  if (w == NULL || !w->running || pl->phase == DISTC__P_DONE ||
      pl->phase == DISTC__P_FAILED)
    return DISTC_ENOENT;
  return distc__plink_line(pl, "kill %d %d", index, sig);
}

bool distc__plink_has(const distc__plink *pl, int index) {
  return pl->w != NULL && index >= pl->first && index < pl->first + pl->count;
}

static void ended(distc__plink *pl, distc__pworker *w, int status) {
  w->running = false;
  if (pl->on_exit != NULL)
    pl->on_exit(pl->arg, w->index, w->pid, status);
}

/* What a proxy's "fail" line means for the user. */
static void proxy_failed(distc__plink *pl, const char *what) {
  const char *exe = pl->exe ? pl->exe : "the program";
  const char *dir = pl->dir ? pl->dir : "its directory";
  const char *hh = pl->hint_host ? pl->hint_host : "";
  if (strcmp(what, "nodir") == 0)
    distc__plink_fail(pl,
                      "%s: the directory %s does not exist there; create "
                      "it%s%s",
                      pl->label, dir, *hh ? ", or give this host its own "
                                            "dir= "
                                          : "",
                      hh);
  else if (strcmp(what, "noexe") == 0)
    distc__plink_fail(pl,
                      "%s: the program %s is not there (looked for from %s); "
                      "install it at that path%s%s",
                      pl->label, exe, dir,
                      *hh ? ", or give this host its own exename= " : "", hh);
  else if (strcmp(what, "noexec") == 0)
    distc__plink_fail(pl,
                      "%s: the program %s there is not executable; make it "
                      "so (chmod +x)%s%s",
                      pl->label, exe,
                      *hh ? " or give this host its own exename= " : "", hh);
  else if (strncmp(what, "unreachable ", 12) == 0)
    distc__plink_fail(pl, "%s: workers there cannot reach the master at %s%s",
                      pl->label, what + 12,
                      pl->hint_reach ? pl->hint_reach : "");
  else
    distc__plink_fail(pl, "%s: %s", pl->label, what);
}

static void handle_line(distc__plink *pl, char *line) {
  int index, status;
  long pid;
  if (strncmp(line, "hello ", 6) == 0 && pl->phase == DISTC__P_STARTING) {
    pl->phase = DISTC__P_HELLO;
    if (pl->verbose)
      distc__log_print("[%s] proxy ready (pid, cores: %s)", pl->label,
                       line + 6);
  } else if (sscanf(line, "started %d %ld", &index, &pid) == 2) {
    distc__pworker *w = find_worker(pl, index);
    if (w != NULL) {
      w->pid = pid;
      w->running = true;
    }
  } else if (strcmp(line, "running") == 0 && pl->phase == DISTC__P_HELLO) {
    pl->phase = DISTC__P_RUNNING;
    if (pl->verbose)
      distc__log_print("[%s] workers %d..%d started", pl->label, pl->first,
                       pl->first + pl->count - 1);
  } else if (sscanf(line, "exit %d %d", &index, &status) == 2) {
    distc__pworker *w = find_worker(pl, index);
    if (w != NULL && w->running)
      ended(pl, w, status);
  } else if (strncmp(line, "fail ", 5) == 0) {
    proxy_failed(pl, line + 5);
    if (pl->reporting && pl->error != NULL)
      distc__log(DISTC__LOG_ERROR, "%s", pl->error);
  }
}

void distc__plink_input(distc__plink *pl, const char *buf, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (buf[i] == '\n') {
      pl->in[pl->in_len] = '\0';
      handle_line(pl, pl->in);
      pl->in_len = 0;
    } else if (pl->in_len < sizeof pl->in - 1) {
      pl->in[pl->in_len++] = buf[i];
    }
  }
}

/* Prints complete lines of pl->err, each tagged with the host, in one
 * write: the workers' own output, relayed as it is. */
static void print_tagged(distc__plink *pl, bool flush) {
  for (;;) {
    char *nl = memchr(pl->err, '\n', pl->err_len);
    size_t n;
    if (nl != NULL)
      n = (size_t)(nl - pl->err);
    else if (flush && pl->err_len > 0)
      n = pl->err_len;
    else
      return;
    char *line = NULL;
    int k = asprintf(&line, "      From %s:\t%.*s\n", pl->label, (int)n,
                     pl->err);
    if (k > 0) {
      ssize_t w = write(STDERR_FILENO, line, (size_t)k);
      (void)w;
    }
    free(line);
    size_t used = nl ? n + 1 : n;
    memmove(pl->err, pl->err + used, pl->err_len - used);
    pl->err_len -= used;
  }
}

void distc__plink_stderr(distc__plink *pl, const char *buf, size_t n,
                         bool flush) {
  for (size_t i = 0; i < n; i++) {
    if (pl->err_len == sizeof pl->err)
      print_tagged(pl, true);
    pl->err[pl->err_len++] = buf[i];
  }
  print_tagged(pl, flush);
}

void distc__plink_lose_workers(distc__plink *pl) {
  for (int i = 0; i < pl->count; i++)
    if (pl->w[i].running)
      ended(pl, &pl->w[i], -1);
}

void distc__plink_gone(distc__plink *pl) {
  print_tagged(pl, true);
  distc__plink_lose_workers(pl);
  if (pl->phase != DISTC__P_FAILED) {
    if (pl->phase < DISTC__P_RUNNING && pl->error == NULL)
      distc__plink_fail(pl, "%s: the connection was lost during the start",
                        pl->label);
    else
      pl->phase = DISTC__P_DONE;
  }
}

int distc__plink_running(const distc__plink *pl) {
  int n = 0;
  for (int i = 0; i < pl->count; i++)
    n += pl->w[i].running;
  return n;
}

int distc__plink_flush_fd(distc__plink *pl, int fd) {
  while (pl->out_len > 0) {
    ssize_t w = write(fd, pl->out, pl->out_len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return errno == EAGAIN ? 0 : -1;
    memmove(pl->out, pl->out + w, pl->out_len - (size_t)w);
    pl->out_len -= (size_t)w;
  }
  if (pl->closing && !pl->eof_sent) {
    pl->eof_sent = true;
    return -1; /* finished: the caller closes fd, which the proxy reads as
                  the end */
  }
  return 0;
}

int distc__plink_read_fd(distc__plink *pl, int fd, bool err) {
  char buf[8192];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return errno == EAGAIN ? 0 : -1;
    if (r == 0)
      return -1;
    if (err)
      distc__plink_stderr(pl, buf, (size_t)r, false);
    else
      distc__plink_input(pl, buf, (size_t)r);
  }
}

void distc__plink_free(distc__plink *pl) {
  free(pl->error);
  free(pl->out);
  free(pl->w);
  pl->error = NULL;
  pl->out = NULL;
  pl->w = NULL;
  pl->out_len = pl->out_cap = 0;
  pl->count = 0;
}

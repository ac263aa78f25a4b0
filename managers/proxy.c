/* proxy.c — the remote half of the SSH manager: one process per host, the
 * user's program run with DISTC_ROLE=proxy, that starts that host's workers
 * and stays their parent (protocol in proxy.h).
 *
 * It is the one thing that knows the workers' pids on that host, so it is
 * what makes "no orphans" hold there: the workers die with it
 * (PR_SET_PDEATHSIG through DISTC_PARENT_PID), and it stops them when its
 * stdin ends, which is when the SSH session ends — the master's host
 * closing it, or losing it because distc-launch was killed. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"
#include "proxy.h"

#define DEFAULT_TIMEOUT_S 60.0

typedef struct proxy_worker {
  pid_t pid;
  int index;
  bool running;
} proxy_worker;

typedef struct proxy {
  int in;  /* protocol from the manager (stdin) */
  int out; /* protocol to the manager (the original stdout) */
  /* "@NODE ": one stream serves the proxies of every node (srun.c); each
   * reads only the lines with its prefix and prefixes its own.  "": not
   * shared. */
  char mux[300];
  char buf[DISTC_PROXY_LINE_MAX];
  size_t have;
  bool eof;
  int sigfd;
  /* configuration */
  char master[512];
  unsigned char secret[DISTC_SECRET_LEN];
  bool have_secret;
  char *exe;
  int blas; /* 0: auto */
  int probe_ms;
  /* workers */
  proxy_worker *w;
  int nw;
} proxy;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* One whole line per write, so the manager never sees half a report. */
static void say(proxy *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(proxy *p, const char *fmt, ...) {
  char line[4096];
  int m = snprintf(line, sizeof line, "%s", p->mux);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line + m, sizeof line - 1 - (size_t)m, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  n += m;
  if ((size_t)n > sizeof line - 2)
    n = (int)sizeof line - 2;
  for (int i = 0; i < n; i++)
    if (line[i] == '\n')
      line[i] = ' ';
  line[n++] = '\n';
  size_t off = 0;
  while (off < (size_t)n) {
    ssize_t r = write(p->out, line + off, (size_t)n - off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return; /* the manager is gone; stdin's end will follow */
    off += (size_t)r;
  }
}

/* Undoes the escaping of proxy.h in place. */
static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (*r == '\\' && r[1] == 'n') {
      *w++ = '\n';
      r++;
    } else if (*r == '\\' && r[1] == '\\') {
      *w++ = '\\';
      r++;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

/* Takes the next complete line out of the buffer into *line (valid until
 * the next call); false when there is none yet. */
static bool take_line(proxy *p, char **line) {
  static char cur[DISTC_PROXY_LINE_MAX];
  size_t m = strlen(p->mux);
  for (;;) {
    char *nl = memchr(p->buf, '\n', p->have);
    if (nl == NULL)
      return false;
    size_t n = (size_t)(nl - p->buf);
    memcpy(cur, p->buf, n);
    cur[n] = '\0';
    memmove(p->buf, nl + 1, p->have - n - 1);
    p->have -= n + 1;
    if (m > 0 && strncmp(cur, p->mux, m) != 0)
      continue; /* another node's */
    *line = cur + m;
    return true;
  }
}

/* One read from the manager; sets eof at its end (or on an overlong line,
 * which no manager of ours sends). */
static void fill(proxy *p) {
  if (p->have == sizeof p->buf) {
    p->eof = true;
    return;
  }
  ssize_t n;
  do
    n = read(p->in, p->buf + p->have, sizeof p->buf - p->have);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN)
    return;
  if (n <= 0)
    p->eof = true;
  else
    p->have += (size_t)n;
}

/* Next line from the manager, waiting until deadline (ms, monotonic).
 * Returns 1, 0 at end of file, -1 on timeout. */
static int read_line(proxy *p, char **line, double deadline) {
  for (;;) {
    if (take_line(p, line))
      return 1;
    if (p->eof)
      return 0;
    double left = deadline - now_ms();
    if (left <= 0)
      return -1;
    struct pollfd pf = {p->in, POLLIN, 0};
    int r = poll(&pf, 1, (int)left + 1);
    if (r < 0 && errno != EINTR)
      return -1;
    if (r > 0)
      fill(p);
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static bool parse_secret(proxy *p, const char *hex) {
  if (strlen(hex) != 2 * DISTC_SECRET_LEN)
    return false;
  for (int i = 0; i < DISTC_SECRET_LEN; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    p->secret[i] = (unsigned char)(hi << 4 | lo);
  }
  p->have_secret = true;
  return true;
}

/* Reads the configuration up to "end"; false (after saying why) if it is
 * not what proxy.h describes. */
static bool read_config(proxy *p, double deadline) {
  char *line;
  int r = read_line(p, &line, deadline);
  if (r <= 0 || strcmp(line, DISTC_PROXY_HEADER) != 0) {
    if (r > 0)
      say(p, "fail this host's program speaks '%s', the master's host "
             "sent '%.80s': the two are different builds of distc",
          DISTC_PROXY_HEADER, line);
    return false;
  }
  while ((r = read_line(p, &line, deadline)) > 0) {
    char *sp = strchr(line, ' ');
    char *arg = sp ? sp + 1 : line + strlen(line);
    if (sp)
      *sp = '\0';
    if (strcmp(line, "end") == 0)
      return p->have_secret && p->master[0] && p->exe;
    if (strcmp(line, "master") == 0) {
      snprintf(p->master, sizeof p->master, "%s", arg);
    } else if (strcmp(line, "secret") == 0) {
      if (!parse_secret(p, arg))
        return false;
    } else if (strcmp(line, "exe") == 0) {
      unescape(arg);
      free(p->exe);
      if ((p->exe = strdup(arg)) == NULL)
        return false;
    } else if (strcmp(line, "blas") == 0) {
      p->blas = strcmp(arg, "auto") == 0 ? 0 : atoi(arg);
    } else if (strcmp(line, "probe") == 0) {
      p->probe_ms = atoi(arg);
    }
    /* Unknown words are for newer proxies; ignoring them keeps old ones
     * working with a newer manager. */
  }
  return false;
}

/* Whether a TCP connection to the master opens within ms; *why says how it
 * failed.  The connection is closed at once: the master drops a peer that
 * never starts the handshake without a word. */
static bool probe_master(const char *addr, int ms, char *why, size_t len) {
  char host[512];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof host) {
    snprintf(why, len, "bad master address '%.200s'", addr);
    return false;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  int g = getaddrinfo(host, colon + 1, &hints, &res);
  if (g != 0) {
    snprintf(why, len, "cannot resolve %.200s: %s", host, gai_strerror(g));
    return false;
  }
  double deadline = now_ms() + ms;
  bool ok = false;
  snprintf(why, len, "no address");
  for (struct addrinfo *a = res; a && !ok; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    if (fd < 0)
      continue;
    int r = connect(fd, a->ai_addr, a->ai_addrlen);
    if (r == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      struct pollfd pf = {fd, POLLOUT, 0};
      int left = (int)(deadline - now_ms());
      int pr = left > 0 ? poll(&pf, 1, left) : 0;
      int err = 0;
      socklen_t el = sizeof err;
      if (pr == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
          err == 0)
        ok = true;
      else if (pr == 1)
        snprintf(why, len, "%s", strerror(err ? err : errno));
      else
        snprintf(why, len, "no answer within %.1f s", ms / 1000.0);
    } else {
      snprintf(why, len, "%s", strerror(errno));
    }
    close(fd);
  }
  freeaddrinfo(res);
  return ok;
}

static void signal_worker(pid_t pid, int sig) {
  if (kill(-pid, sig) != 0)
    kill(pid, sig);
}

/* Reaps what has exited and reports it; returns how many still run. */
static int reap(proxy *p) {
  int running = 0;
  for (int i = 0; i < p->nw; i++) {
    proxy_worker *w = &p->w[i];
    if (!w->running)
      continue;
    int status;
    pid_t r = waitpid(w->pid, &status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) {
      running++;
      continue;
    }
    w->running = false;
    say(p, "exit %d %d", w->index, r < 0 ? -1 : status);
  }
  return running;
}

static void drain_sigfd(proxy *p) {
  struct signalfd_siginfo si;
  while (read(p->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
    ;
}

/* TERM, a grace period, KILL; everything reaped and reported. */
static void stop_all(proxy *p) {
  for (int i = 0; i < p->nw; i++)
    if (p->w[i].running)
      signal_worker(p->w[i].pid, SIGTERM);
  double deadline = now_ms() + DISTC_PROXY_TERM_GRACE_MS;
  while (reap(p) > 0 && now_ms() < deadline) {
    struct pollfd pf = {p->sigfd, POLLIN, 0};
    poll(&pf, 1, 20);
    drain_sigfd(p);
  }
  for (int i = 0; i < p->nw; i++)
    if (p->w[i].running) {
      signal_worker(p->w[i].pid, SIGKILL);
      int status;
      while (waitpid(p->w[i].pid, &status, 0) < 0 && errno == EINTR)
        ;
      p->w[i].running = false;
      say(p, "exit %d %d", p->w[i].index, status);
    }
}

static int start_workers(proxy *p, int first, int count, char **argv) {
  p->w = calloc((size_t)count, sizeof *p->w);
  if (p->w == NULL) {
    say(p, "fail out of memory");
    return -1;
  }
  int cores = distc__host_cores();
  distc_launch_spec spec = {
      .count = count,
      .first_index = first,
      .exename = p->exe,
      .argv = argv,
      .master_addr = p->master,
      .secret = p->secret,
      .blas_threads = p->blas > 0 ? p->blas : distc__blas_threads(cores, count),
  };
  for (int k = 0; k < count; k++) {
    pid_t pid;
    if (distc__spawn_worker(&spec, first + k, NULL, &pid) != 0) {
      say(p, "fail %s", distc_errmsg());
      return -1;
    }
    p->w[p->nw++] = (proxy_worker){.pid = pid, .index = first + k,
                                   .running = true};
    say(p, "started %d %ld", first + k, (long)pid);
  }
  say(p, "running");
  return 0;
}

/* Serves "signal" and "kill" lines and reports exits until every worker has ended or
 * the manager's end of the channel closes. */
static void serve(proxy *p) {
  for (;;) {
    if (reap(p) == 0)
      return;
    struct pollfd pf[2] = {{p->in, POLLIN, 0}, {p->sigfd, POLLIN, 0}};
    if (poll(pf, 2, -1) < 0 && errno != EINTR)
      return;
    if (pf[1].revents) {
      struct signalfd_siginfo si;
      bool stop = false;
      while (read(p->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
        if (si.ssi_signo != SIGCHLD)
          stop = true; /* someone stops the proxy itself: take them along */
      if (stop)
        return;
    }
    if (pf[0].revents) {
      fill(p);
      char *line;
      while (take_line(p, &line)) {
        int index, sig;
        if (strncmp(line, "signal ", 7) == 0) {
          sig = atoi(line + 7);
          for (int i = 0; i < p->nw && sig > 0 && sig < NSIG; i++)
            if (p->w[i].running)
              signal_worker(p->w[i].pid, sig);
        } else if (sscanf(line, "kill %d %d", &index, &sig) == 2) {
          /* Unreaped, so its pid still names it (reap reports it next). */
          for (int i = 0; i < p->nw && sig > 0 && sig < NSIG; i++)
            if (p->w[i].running && p->w[i].index == index)
              signal_worker(p->w[i].pid, sig);
        }
      }
      if (p->eof)
        return; /* the session ended */
    }
  }
}

int distc__proxy_main(int argc, char **argv) {
  proxy p = {.in = STDIN_FILENO, .sigfd = -1};
  (void)argc;

  /* The protocol keeps the real stdout; everything else printed here, or by
   * the workers, goes to stderr, which the manager prints tagged. */
  p.out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  if (p.out < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
    _exit(1);
  fcntl(STDIN_FILENO, F_SETFD, FD_CLOEXEC);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  p.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  signal(SIGPIPE, SIG_IGN); /* a vanished manager is an EPIPE, not death */
  if (p.sigfd < 0) {
    say(&p, "fail cannot create a signalfd: %s", strerror(errno));
    _exit(1);
  }

  double timeout_s = DEFAULT_TIMEOUT_S;
  const char *t = getenv(DISTC_ENV_TIMEOUT);
  if (t != NULL && atof(t) > 0)
    timeout_s = atof(t);
  /* Shared stream: the prefix is "@" and the value of the variable that
   * DISTC_PROXY_MUX names (srun.c: SLURMD_NODENAME, set by slurmd). */
  const char *mux = getenv(DISTC_ENV_PROXY_MUX);
  if (mux != NULL && mux[0] != '\0') {
    const char *node = getenv(mux);
    if (node == NULL || node[0] == '\0') {
      say(&p, "fail %s names %s, which is not set", DISTC_ENV_PROXY_MUX, mux);
      _exit(1);
    }
    snprintf(p.mux, sizeof p.mux, "@%s ", node);
    /* One task per node: where SLURM binds tasks (task/affinity) it pins
     * this one to a single CPU, and every worker would inherit that.  The
     * workers are the node's share of the job: widen to all the CPUs the
     * step's cpuset allows (the kernel drops the others). */
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
      CPU_SET(c, &all);
    sched_setaffinity(0, sizeof all, &all);
  }
  static const char *const ours[] = {DISTC_ENV_ROLE, DISTC_ENV_TIMEOUT,
                                     DISTC_ENV_PROXY_MUX};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(ours); i++)
    unsetenv(ours[i]);

  double deadline = now_ms() + timeout_s * 1e3;
  if (!read_config(&p, deadline)) {
    if (!p.eof)
      say(&p, "fail the configuration from the master's host was incomplete "
              "or late");
    _exit(1);
  }
  if (p.probe_ms > 0) {
    char why[256];
    if (!probe_master(p.master, p.probe_ms, why, sizeof why)) {
      say(&p, "fail unreachable %s: %s", p.master, why);
      _exit(1);
    }
  }
  say(&p, "hello %ld %d", (long)getpid(), distc__host_cores());

  char *line;
  int r = read_line(&p, &line, deadline);
  int first, count;
  if (r <= 0 || sscanf(line, "start %d %d", &first, &count) != 2 ||
      first < 0 || count < 1) {
    /* End of file: the manager dropped this host (another one failed). */
    _exit(r == 0 ? 0 : 1);
  }
  if (start_workers(&p, first, count, argv) == 0)
    serve(&p);
  stop_all(&p);
  explicit_bzero(p.secret, sizeof p.secret);
  _exit(0);
}

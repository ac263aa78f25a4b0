/* supervise.c — distc-launch stays resident while the program runs: it
 * forwards signals to the master, notices a start that went wrong, and when
 * the master ends makes sure no worker outlives it.
 *
 * One ppoll() loop.  The signals it handles stay blocked everywhere else, so
 * their handlers run only inside ppoll, where they write a record to a
 * self-pipe; nothing is interrupted half-way and no wake-up is lost. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "exec_diag.h"
#include "launcher.h"

/* Workers get this long to exit by themselves once the master is gone
 * (they do when its connections close), then SIGTERM, then after
 * TERM_GRACE_S SIGKILL. */
#define DRAIN_GRACE_S 2.0
#define TERM_GRACE_S 1.0
/* The master runs the same connect timeout and its "fail" says more (how
 * many workers came), so let it speak first. */
#define TIMEOUT_SLACK_S 1.0

static const int handled[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT};

/* What a handler passes to the loop. */
typedef struct sig_record {
  int signo;
  int code; /* si_code: > 0 from the kernel (the tty), <= 0 from kill() */
} sig_record;

/* A handler can reach only globals; these two are all there is, written
 * once by distc__signals_init. */
static int sig_pipe[2] = {-1, -1};
static sigset_t saved_mask;

static void on_signal(int signo, siginfo_t *si, void *ctx) {
  (void)ctx;
  int saved = errno;
  sig_record r = {signo, si->si_code};
  /* Atomic (< PIPE_BUF) and non-blocking: if the pipe is ever full the
   * loop has plenty to wake for already. */
  ssize_t n = write(sig_pipe[1], &r, sizeof r);
  (void)n;
  errno = saved;
}

int distc__signals_init(void) {
  sigset_t block;

  if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    return distc__seterr(DISTC_EIO, "cannot create the signal pipe: %s",
                         strerror(errno));
  sigemptyset(&block);
  for (size_t i = 0; i < DISTC__ARRAY_LEN(handled); i++)
    sigaddset(&block, handled[i]);
  sigprocmask(SIG_BLOCK, &block, &saved_mask);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  for (size_t i = 0; i < DISTC__ARRAY_LEN(handled); i++)
    sigaction(handled[i], &sa, NULL);

  /* A closed stderr must not kill the supervisor before it has stopped the
   * workers; the children get SIGPIPE back (spawn attributes). */
  sa.sa_handler = SIG_IGN;
  sa.sa_flags = 0;
  sigaction(SIGPIPE, &sa, NULL);
  return 0;
}

void distc__signals_restore(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (size_t i = 0; i < DISTC__ARRAY_LEN(handled); i++)
    sigaction(handled[i], &sa, NULL);
  sigaction(SIGPIPE, &sa, NULL);
  sigprocmask(SIG_SETMASK, &saved_mask, NULL);
  for (int i = 0; i < 2; i++) {
    if (sig_pipe[i] >= 0)
      close(sig_pipe[i]);
    sig_pipe[i] = -1;
  }
}

typedef enum phase {
  STARTING, /* waiting for the master's "ready" */
  RUNNING,  /* all workers connected */
  DRAINING, /* the master is gone; waiting for the workers to follow */
} phase;

typedef struct run {
  const distc__supervision *sv;
  phase phase;
  double deadline; /* of STARTING or DRAINING */
  bool ready;      /* the master said "ready" */
  bool master_done;
  int master_status;
  int control_fd;
  char ctl[1024]; /* the master's report, up to a newline */
  size_t ctl_len;
  char *fail;     /* "fail <message>" from the master, owned */
  int interrupts; /* SIGINT, SIGTERM, SIGHUP received */
  int last_interrupt;
  bool tearing_down;
  /* The first worker that exited before "ready". */
  bool worker_died;
  int dead_index;
  pid_t dead_pid;
  int dead_status;
  /* The highest status a worker exited with by itself once the cluster
   * was up: srun's rule makes it the run's status when it is higher than
   * the master's. */
  int worst_exit;
} run;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Our exit status for a wait status, as a shell reports it. */
static int exit_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return DISTC__EXIT_FAILURE;
}

static void describe(char *buf, size_t len, int status) {
  if (status == -1)
    snprintf(buf, len, "exited (status unknown: another wait took it)");
  else if (WIFEXITED(status))
    snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(status),
             strsignal(WTERMSIG(status)),
             WCOREDUMP(status) ? ", core dumped" : "");
  else
    snprintf(buf, len, "ended with wait status 0x%x", (unsigned)status);
}

/* A worker that leaves while the program runs, other than by exiting 0, is
 * news: say how, as Julia tags a worker's output ("From worker 3:"). */
static void reap_master(run *r);

static void report_departure(run *r, int index, int status) {
  if (!r->ready || r->tearing_down || r->master_done || status == 0)
    return;
  /* Workers exit when their master does, and may be reaped a moment
   * before it: that is no news. */
  struct timespec tick = {0, 5 * 1000 * 1000};
  for (int i = 0; i < 10 && !r->master_done; i++) {
    reap_master(r);
    if (!r->master_done)
      nanosleep(&tick, NULL);
  }
  if (r->master_done)
    return;
  /* A worker on another host is named with it: its pid means nothing
   * here, and which host misbehaves is the first thing to know. */
  const char *host = distc__manager_host_of(r->sv->m, index);
  char on[352] = "";
  if (host != NULL)
    snprintf(on, sizeof on, " on %s", host);
  char what[512];
  if (status == -1)
    snprintf(what, sizeof what, "exited (status unknown)%s", on);
  else if (WIFEXITED(status))
    snprintf(what, sizeof what, "exited with status %d%s",
             WEXITSTATUS(status), on);
  else if (WIFSIGNALED(status))
    snprintf(what, sizeof what, "exited with signal %d (%s)%s%s",
             WTERMSIG(status), strsignal(WTERMSIG(status)), on,
             WCOREDUMP(status) ? ", core dumped" : "");
  else
    return;
  fprintf(stderr, "From worker %d: %s\n", DISTC_INDEX_TO_ID(index), what);
}

static void on_worker_exit(void *arg, int index, pid_t pid, int status) {
  run *r = arg;
  report_departure(r, index, status);
  if (r->sv->verbose) {
    char what[128];
    describe(what, sizeof what, status);
    fprintf(stderr, "distc-launch: worker %d (pid %ld) %s\n", index, (long)pid,
            what);
  }
  if (r->sv->m->lau.worker_status && r->ready && !r->tearing_down &&
      status != -1 && WIFEXITED(status) && WEXITSTATUS(status) > r->worst_exit)
    r->worst_exit = WEXITSTATUS(status);
  if (r->ready || r->tearing_down || r->worker_died)
    return;
  r->worker_died = true;
  r->dead_index = index;
  r->dead_pid = pid;
  r->dead_status = status;
}

static void reap_master(run *r) {
  if (r->master_done)
    return;
  int status;
  pid_t p = waitpid(r->sv->master, &status, WNOHANG);
  if (p == r->sv->master) {
    r->master_done = true;
    r->master_status = status;
  } else if (p < 0 && errno == ECHILD) {
    r->master_done = true; /* cannot happen: it is our own child */
    r->master_status = DISTC__EXIT_FAILURE << 8;
  }
}

/* Stops everything and reaps it.  now: SIGKILL at once (a second Ctrl-C);
 * else SIGTERM, and SIGKILL for what is left after TERM_GRACE_S. */
static void teardown(run *r, bool now) {
  distc_manager *m = r->sv->m;
  int sig = now ? SIGKILL : SIGTERM;

  r->tearing_down = true;
  reap_master(r);
  if (!r->master_done)
    kill(r->sv->master, sig);
  double deadline = now_s() + (now ? 0 : TERM_GRACE_S);
  distc__manager_stop(m, sig, now ? 0 : TERM_GRACE_S, on_worker_exit, r);

  struct timespec tick = {0, 10 * 1000 * 1000};
  while (!r->master_done && now_s() < deadline) {
    nanosleep(&tick, NULL);
    reap_master(r);
  }
  if (!r->master_done) {
    kill(r->sv->master, SIGKILL);
    int status;
    while (waitpid(r->sv->master, &status, 0) < 0 && errno == EINTR)
      ;
    r->master_done = true;
    r->master_status = status;
  }
}

/* Workers on other hosts that never connect usually cannot reach us. */
static const char *remote_hint(const run *r) {
  return r->sv->remote ? " Workers on other hosts must reach this host: if "
                         "one cannot, give --master-addr with an address it "
                         "can reach, or --tunnel"
                       : "";
}

static const char *hint(const run *r) {
  static char buf[512];
  snprintf(buf, sizeof buf,
           "is %s linked with libdistc and does it call distc_init() first?%s",
           r->sv->program, remote_hint(r));
  return buf;
}

/* A local process that exited with 127 was most likely never started by
 * the dynamic loader (a library not found): say which library and what to
 * do rather than ask whether the program uses libdistc. */
static const char *why_not_started(const run *r, const char *exe,
                                   int status) {
  static char buf[1024];
  if (r->sv->remote || !exe || !WIFEXITED(status) ||
      WEXITSTATUS(status) != DISTC_EXIT_NOT_STARTED)
    return hint(r);
  distc__exec_diagnose(exe, buf, sizeof buf);
  return buf;
}

/* Reads what the master reported; acts on whole lines only. */
static void read_control(run *r) {
  ssize_t n;
  do
    n = read(r->control_fd, r->ctl + r->ctl_len,
             sizeof r->ctl - 1 - r->ctl_len);
  while (n < 0 && errno == EINTR);
  if (n <= 0) {
    /* EOF (or a broken pipe): the master has said all it will. */
    close(r->control_fd);
    r->control_fd = -1;
    if (r->ctl_len == 0)
      return;
    n = 0;
    r->ctl[r->ctl_len++] = '\n'; /* a last line without newline */
  }
  r->ctl_len += (size_t)n;
  if (r->ctl_len == sizeof r->ctl - 1 &&
      memchr(r->ctl, '\n', r->ctl_len) == NULL)
    r->ctl[r->ctl_len - 1] = '\n'; /* overlong: cut it */

  char *nl;
  int index;
  while ((nl = memchr(r->ctl, '\n', r->ctl_len)) != NULL) {
    *nl = '\0';
    if (strcmp(r->ctl, "ready") == 0 && r->phase == STARTING) {
      r->phase = RUNNING;
      r->ready = true;
      if (r->sv->verbose && r->sv->nworkers > 0)
        fprintf(stderr, "distc-launch: all %d workers connected\n",
                r->sv->nworkers);
      else if (r->sv->verbose)
        fprintf(stderr, "distc-launch: the master runs; its workers join\n");
    } else if (sscanf(r->ctl, "lost %d", &index) == 1) {
      /* The master lost this worker for silence and cannot reach it on
       * another host: the manager that started it kills it there. */
      int rc = distc__manager_kill_one(r->sv->m, index, SIGKILL);
      if (r->sv->verbose) {
        const char *host = distc__manager_host_of(r->sv->m, index);
        fprintf(stderr, "distc-launch: worker %d (index %d) is unresponsive; "
                "%s%s%s\n", DISTC_INDEX_TO_ID(index), index,
                rc == 0 ? "killing it" : distc_errmsg(),
                rc == 0 && host ? " on " : "", rc == 0 && host ? host : "");
      }
    } else if (strncmp(r->ctl, "fail", 4) == 0 && r->phase == STARTING &&
               r->fail == NULL) {
      const char *msg = r->ctl + 4;
      while (*msg == ' ')
        msg++;
      r->fail = strdup(*msg ? msg : "the master could not start the cluster");
    }
    size_t used = (size_t)(nl + 1 - r->ctl);
    memmove(r->ctl, nl + 1, r->ctl_len - used);
    r->ctl_len -= used;
  }
}

/* Returns true when the run must end at once (a second interrupt). */
static bool handle_signals(run *r) {
  sig_record rec;
  while (read(sig_pipe[0], &rec, sizeof rec) == (ssize_t)sizeof rec) {
    switch (rec.signo) {
    case SIGINT:
    case SIGTERM:
    case SIGHUP:
      r->last_interrupt = rec.signo;
      if (++r->interrupts >= 2)
        return true;
      /* From the terminal (si_code SI_KERNEL) the whole foreground group
       * got it, the master included; only a kill() aimed at us alone needs
       * passing on. */
      if (rec.code <= 0 && !r->master_done)
        kill(r->sv->master, rec.signo);
      break;
    case SIGQUIT:
      if (rec.code <= 0 && !r->master_done)
        kill(r->sv->master, rec.signo);
      break;
    default: /* SIGCHLD: the loop reaps after every wake-up */
      break;
    }
  }
  return false;
}

/* The master ended without saying "ready" or "fail".  Say something only
 * when it died of a signal nobody here asked for (a crash, the OOM killer):
 * an interrupt is plain to the user, and our own copy of a terminal's
 * SIGINT may arrive after the master has already died of it. */
static void master_gone_early(run *r) {
  if (r->interrupts == 0 && WIFEXITED(r->master_status) &&
      WEXITSTATUS(r->master_status) == DISTC_EXIT_NOT_STARTED) {
    fprintf(stderr,
            "distc-launch: the master (pid %ld) exited with status 127 before "
            "all workers connected; %s\n",
            (long)r->sv->master, why_not_started(r, r->sv->program, r->master_status));
    return;
  }
  if (r->interrupts > 0 || !WIFSIGNALED(r->master_status))
    return;
  int sig = WTERMSIG(r->master_status);
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP)
    return;
  char what[128];
  describe(what, sizeof what, r->master_status);
  fprintf(stderr,
          "distc-launch: the master (pid %ld) %s before all workers "
          "connected\n",
          (long)r->sv->master, what);
}

static int finish(run *r, int code) {
  if (r->control_fd >= 0)
    close(r->control_fd);
  free(r->fail);
  return code;
}

int distc__supervise(const distc__supervision *sv) {
  run r = {.sv = sv, .phase = STARTING, .control_fd = sv->control_fd};
  distc_manager *m = sv->m;
  sigset_t run_mask = saved_mask;

  for (size_t i = 0; i < DISTC__ARRAY_LEN(handled); i++)
    sigdelset(&run_mask, handled[i]);
  double started = now_s(), next_tick = started;
  r.deadline = started + sv->timeout_s + TIMEOUT_SLACK_S;
  if (sv->tick)
    r.deadline = 1e300; /* the tick bounds the start */

  /* Workers on other hosts end without a SIGCHLD; their manager says so
   * on this descriptor. */
  int event_fd = distc__manager_event_fd(m);
  for (;;) {
    struct pollfd fds[3] = {{.fd = sig_pipe[0], .events = POLLIN},
                            {.fd = event_fd, .events = POLLIN},
                            {.fd = r.control_fd, .events = POLLIN}};
    struct timespec ts, *tsp = NULL;
    if (r.phase != RUNNING || sv->tick) {
      double until = r.phase != RUNNING ? r.deadline : 1e300;
      if (sv->tick && next_tick < until)
        until = next_tick;
      double left = until - now_s();
      if (left < 0)
        left = 0;
      ts.tv_sec = (time_t)left;
      ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
      tsp = &ts;
    }
    if (ppoll(fds, r.control_fd >= 0 ? 3 : 2, tsp, &run_mask) < 0 &&
        errno != EINTR) {
      fprintf(stderr, "distc-launch: poll failed: %s; stopping everything\n",
              strerror(errno));
      teardown(&r, false);
      return finish(&r, DISTC__EXIT_FAILURE);
    }

    if (handle_signals(&r)) {
      teardown(&r, true);
      return finish(&r, 128 + r.last_interrupt);
    }
    if (r.control_fd >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR)))
      read_control(&r);
    reap_master(&r);
    int running = distc__manager_reap(m, on_worker_exit, &r);
    if (sv->tick && !r.master_done && now_s() >= next_tick) {
      next_tick = now_s() + 1.0;
      if (sv->tick(sv->tick_arg, r.ready, now_s() - started,
                   sv->timeout_s) != 0) {
        teardown(&r, false);
        return finish(&r, DISTC__EXIT_FAILURE);
      }
    }

    if (r.phase == STARTING && r.fail != NULL) {
      fprintf(stderr, "distc-launch: %s%s\n", r.fail,
              strstr(r.fail, "connected in time") ? remote_hint(&r) : "");
      bool master_first = r.master_done;
      teardown(&r, false);
      return finish(&r, master_first ? exit_code(r.master_status)
                                     : DISTC__EXIT_FAILURE);
    }

    /* A worker that ends before the cluster is up never ran the program's
     * distc_init(), or it failed there.  Unless the master died violently or
     * the user interrupted (the workers then exit because the master is
     * gone, which is no news), that is the failure to report. */
    if (!r.ready && r.worker_died && r.interrupts == 0 &&
        !(r.master_done && WIFSIGNALED(r.master_status))) {
      char what[128];
      describe(what, sizeof what, r.dead_status);
      fprintf(stderr,
              "distc-launch: worker %d (pid %ld) %s before connecting to the "
              "master; %s\n",
              r.dead_index, (long)r.dead_pid, what, why_not_started(&r, r.sv->exe_path, r.dead_status));
      teardown(&r, false);
      return finish(&r, DISTC__EXIT_FAILURE);
    }

    if (r.phase == STARTING && !r.master_done && now_s() >= r.deadline) {
      fprintf(stderr,
              "distc-launch: no worker connected within %g s; %s (raise "
              "--timeout if the hosts are slow)\n",
              sv->timeout_s, hint(&r));
      teardown(&r, false);
      return finish(&r, DISTC__EXIT_FAILURE);
    }

    if (r.master_done && r.phase != DRAINING) {
      if (r.phase == STARTING)
        master_gone_early(&r);
      r.phase = DRAINING;
      r.deadline = now_s() + DRAIN_GRACE_S;
    }
    if (r.phase == DRAINING) {
      if (running > 0 && now_s() >= r.deadline) {
        r.tearing_down = true;
        distc__manager_stop(m, SIGTERM, TERM_GRACE_S, on_worker_exit, &r);
        running = 0;
      }
      if (running == 0) {
        /* As srun (for launch halves that say so): the highest exit
         * status of all, the master's 128+signal included. */
        int code = exit_code(r.master_status);
        return finish(&r, code > r.worst_exit ? code : r.worst_exit);
      }
    }
  }
}

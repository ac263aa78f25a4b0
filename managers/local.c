/* local.c — the local manager's halves: this host as the only resource
 * ("here", the default resource half) and posix_spawn as the launch half
 * ("spawn"): workers are child processes of this one.
 *
 * It only ever waits for the pids it started.  waitpid(-1) would steal the
 * exit of the master (also a child of distc-launch) or, inside libdistc's
 * distc_addprocs, of the user program's own children. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "common.h"
#include "manager.h"

typedef struct local_worker {
  pid_t pid;
  int index;
  bool running;
} local_worker;

typedef struct spawn_state {
  local_worker *w;
  int n, cap;
} spawn_state;

/* Signals the worker's process group (it leads one, see spawn.c), so that
 * whatever the worker started goes too; a worker that moved itself out of
 * its group is still reached by its pid.  An unreaped worker keeps its pid
 * and group id reserved, so neither can name a stranger. */
static void signal_worker(pid_t pid, int sig) {
  if (kill(-pid, sig) != 0)
    kill(pid, sig);
}

/* Kills and reaps the workers from `from` on, then forgets them: the
 * "nothing left running" half of a failed launch. */
static void kill_from(spawn_state *s, int from) {
  for (int i = from; i < s->n; i++) {
    if (!s->w[i].running)
      continue;
    signal_worker(s->w[i].pid, SIGKILL);
    while (waitpid(s->w[i].pid, NULL, 0) < 0 && errno == EINTR)
      ;
  }
  s->n = from;
}

static int spawn_launch(void *state, const distc_launch_spec *spec) {
  spawn_state *s = state;

  for (int i = 0; i < spec->nhosts; i++)
    if (!spec->hosts[i].here && spec->hosts[i].slots > 0)
      return distc__seterr(DISTC_EINVAL,
                           "the spawn launcher starts workers on this host "
                           "only, not on %s; leave out --launcher spawn",
                           spec->hosts[i].name);
  if (spec->count <= 0)
    return 0;
  if (s->n + spec->count > s->cap) {
    int cap = s->cap ? s->cap : 16;
    while (cap < s->n + spec->count)
      cap *= 2;
    local_worker *w = realloc(s->w, (size_t)cap * sizeof *w);
    if (w == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory starting %d workers",
                           spec->count);
    s->w = w;
    s->cap = cap;
  }

  int first = s->n;
  for (int k = 0; k < spec->count; k++) {
    pid_t pid;
    int rc = distc__spawn_worker(spec, spec->first_index + k, NULL, &pid);
    if (rc != 0) {
      kill_from(s, first);
      return rc;
    }
    if (spec->dry_run)
      continue;
    s->w[s->n++] = (local_worker){
        .pid = pid, .index = spec->first_index + k, .running = true};
  }
  if (spec->started != NULL)
    *spec->started = spec->count;
  return 0;
}

static int spawn_signal(void *state, int sig) {
  spawn_state *s = state;
  for (int i = 0; i < s->n; i++)
    if (s->w[i].running)
      signal_worker(s->w[i].pid, sig);
  return 0;
}

static int spawn_kill_one(void *state, int index, int sig) {
  spawn_state *s = state;
  for (int i = 0; i < s->n; i++)
    if (s->w[i].index == index && s->w[i].running) {
      signal_worker(s->w[i].pid, sig);
      return 0;
    }
  return DISTC_ENOENT;
}

static int spawn_reap(void *state, distc_exit_cb cb, void *arg) {
  spawn_state *s = state;
  int running = 0;

  for (int i = 0; i < s->n; i++) {
    local_worker *w = &s->w[i];
    if (!w->running)
      continue;
    int status;
    pid_t r = waitpid(w->pid, &status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) {
      running++;
      continue;
    }
    /* ECHILD: someone else waited for it (a program's own waitpid(-1));
     * it is gone but its status is lost, which -1 tells cb. */
    if (r < 0)
      status = -1;
    w->running = false;
    if (cb != NULL)
      cb(arg, w->index, w->pid, status);
  }
  return running;
}

static void spawn_destroy(void *state) {
  spawn_state *s = state;
  free(s->w);
  s->w = NULL;
  s->n = s->cap = 0;
}

/* This host, with the workers -p asks for: the dispatcher's default. */
const distc__resource_ops distc__resource_here = {
    .name = "here",
    .title = NULL,
    .options = NULL,
    .remote = false,
};

const distc__launch_ops distc__launch_spawn = {
    .name = "spawn",
    .title = NULL,
    .options = NULL,
    .state_size = sizeof(spawn_state),
    .launch = spawn_launch,
    .signal = spawn_signal,
    .reap = spawn_reap,
    .kill_one = spawn_kill_one,
    .destroy = spawn_destroy,
};

/* spawn.c — the one spawner: workers (distc__spawn_worker, for the spawn
 * launch half and the proxy), and the master (distc__spawn_master, for
 * distc-launch).
 *
 * posix_spawn, never fork: the caller may be a master holding gigabytes
 * (distc_addprocs), and glibc's posix_spawn uses CLONE_VFORK, so it costs the
 * same for any parent size and reports a failed exec as its return value. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "trace.h"
#include "manager.h"

extern char **environ;

/* The fd number a worker reads the secret from; the DISTC_SECRET_FD value. */
#define WORKER_SECRET_FD 3

/* DISTC_* variables that are user settings, not per-process contract, and so
 * pass from the caller's environment to the workers. */
static const char *const keep_distc[] = {"DISTC_LOG", "DISTC_MAX_FRAME",
                                         "DISTC_TRACE", "DISTC_TRANSPORT",
                                         "DISTC_TOPOLOGY"};

/* A NULL-terminated "K=V" vector whose strings it owns. */
typedef struct envv {
  char **v;
  size_t n, cap;
} envv;

size_t distc__env_key_len(const char *kv) {
  const char *eq = strchr(kv, '=');
  return eq ? (size_t)(eq - kv) : strlen(kv);
}

static bool same_key(const char *a, const char *b) {
  size_t n = distc__env_key_len(a);
  return n == distc__env_key_len(b) && strncmp(a, b, n) == 0;
}

static ssize_t envv_find(const envv *e, const char *kv) {
  for (size_t i = 0; i < e->n; i++)
    if (same_key(e->v[i], kv))
      return (ssize_t)i;
  return -1;
}

/* Adds a copy of kv, replacing an entry with the same key. */
static int envv_set(envv *e, const char *kv) {
  char *dup = strdup(kv);
  if (dup == NULL)
    return DISTC_ENOMEM;
  ssize_t i = envv_find(e, kv);
  if (i >= 0) {
    free(e->v[i]);
    e->v[i] = dup;
    return 0;
  }
  if (e->n + 2 > e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 32;
    char **v = realloc(e->v, cap * sizeof *v);
    if (v == NULL) {
      free(dup);
      return DISTC_ENOMEM;
    }
    e->v = v;
    e->cap = cap;
  }
  e->v[e->n++] = dup;
  e->v[e->n] = NULL;
  return 0;
}

static int envv_setf(envv *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int envv_setf(envv *e, const char *fmt, ...) {
  char buf[PATH_MAX + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof buf)
    return DISTC_EINVAL;
  return envv_set(e, buf);
}

static void envv_free(envv *e) {
  for (size_t i = 0; i < e->n; i++)
    free(e->v[i]);
  free(e->v);
  e->v = NULL;
  e->n = e->cap = 0;
}

static bool stale_distc(const char *kv) {
  if (strncmp(kv, "DISTC_", 6) != 0)
    return false;
  for (size_t i = 0; i < DISTC__ARRAY_LEN(keep_distc); i++)
    if (same_key(kv, keep_distc[i]))
      return false;
  return true;
}

/* The entries distc adds for worker `index`, later ones winning: spec->env,
 * extra_env, the contract, then the BLAS thread counts where nobody chose. */
static int added_env(const distc_launch_spec *spec, int index,
                     const char *const *extra_env, envv *add) {
  int rc = 0;
  for (size_t i = 0; spec->env && spec->env[i] && rc == 0; i++)
    rc = envv_set(add, spec->env[i]);
  for (size_t i = 0; extra_env && extra_env[i] && rc == 0; i++)
    rc = envv_set(add, extra_env[i]);
  if (rc == 0)
    rc = envv_setf(add, "%s=worker", DISTC_ENV_ROLE);
  if (rc == 0)
    rc = envv_setf(add, "%s=%s", DISTC_ENV_MASTER, spec->master_addr);
  if (rc == 0 && spec->local_addr)
    rc = envv_setf(add, "%s=%s", DISTC_ENV_MASTER_LOCAL, spec->local_addr);
  if (rc == 0)
    rc = envv_setf(add, "%s=%d", DISTC_ENV_INDEX, index);
  if (rc == 0)
    rc = envv_setf(add, "%s=%d", DISTC_ENV_LOCAL_WORKERS, spec->count);
  if (rc == 0)
    rc = envv_setf(add, "%s=%ld", DISTC_ENV_PARENT, (long)getpid());
  if (rc == 0)
    rc = envv_setf(add, "%s=%d", DISTC_ENV_SECRET_FD, WORKER_SECRET_FD);

  /* A user's own thread count, from the launcher's environment or --env,
   * always wins over the automatic one. */
  static const char *const blas_keys[] = {"OPENBLAS_NUM_THREADS",
                                          "OMP_NUM_THREADS"};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(blas_keys) && spec->blas_threads > 0;
       i++) {
    if (rc != 0 || getenv(blas_keys[i]) != NULL ||
        envv_find(add, blas_keys[i]) >= 0)
      continue;
    rc = envv_setf(add, "%s=%d", blas_keys[i], spec->blas_threads);
  }
  return rc;
}

/* environ without stale DISTC_* entries and without keys `add` sets, then
 * `add` itself. */
static int full_env(const envv *add, envv *env) {
  int rc = 0;
  for (char **p = environ; p && *p && rc == 0; p++)
    if (!stale_distc(*p) && envv_find(add, *p) < 0)
      rc = envv_set(env, *p);
  for (size_t i = 0; i < add->n && rc == 0; i++)
    rc = envv_set(env, add->v[i]);
  return rc;
}

/* Writes s to f so that a POSIX shell reads it back as one word. */
void distc__shell_quote(FILE *f, const char *s) {
  static const char safe[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
      "0123456789_@%+=:,./-";
  if (s[0] != '\0' && strspn(s, safe) == strlen(s)) {
    fputs(s, f);
    return;
  }
  fputc('\'', f);
  for (; *s; s++) {
    if (*s == '\'')
      fputs("'\\''", f);
    else
      fputc(*s, f);
  }
  fputc('\'', f);
}

/* One line through the logger, so lines of several workers never
 * interleave: `[TAG] cd DIR && K=V ... EXENAME ARGS...`. */
static void print_command(const char *tag, const char *dir, char *const *add,
                          size_t nadd, const char *exename, char *const *argv,
                          int cpu) {
  char cwd[PATH_MAX];
  if (dir == NULL)
    dir = getcwd(cwd, sizeof cwd) ? cwd : ".";
  char *line = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&line, &len);
  if (f == NULL)
    return;
  fprintf(f, "[%s] cd ", tag);
  distc__shell_quote(f, dir);
  fputs(" &&", f);
  for (size_t i = 0; i < nadd; i++) {
    size_t k = distc__env_key_len(add[i]);
    fprintf(f, " %.*s=", (int)k, add[i]);
    distc__shell_quote(f, add[i] + k + 1);
  }
  fputc(' ', f);
  distc__shell_quote(f, exename);
  for (size_t i = 1; argv && argv[0] && argv[i]; i++) {
    fputc(' ', f);
    distc__shell_quote(f, argv[i]);
  }
  if (cpu >= 0)
    fprintf(f, "  # bound to CPU %d", cpu);
  if (fclose(f) == 0)
    distc__log_print("%s", line);
  free(line);
}

/* The signals whose handlers and mask are the caller's own business (the
 * launcher's supervisor, a program's handlers): a child starts with them
 * at their defaults and nothing blocked. */
static int reset_signals(posix_spawnattr_t *attr, short extra_flags) {
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  static const int sigs[] = {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP,
                             SIGQUIT};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(sigs); i++)
    sigaddset(&defaults, sigs[i]);
  int e = posix_spawnattr_setflags(attr, (short)(POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF |
                                                 extra_flags));
  if (e == 0)
    e = posix_spawnattr_setsigmask(attr, &empty);
  if (e == 0)
    e = posix_spawnattr_setsigdefault(attr, &defaults);
  return e;
}

/* A pipe already holding the secret, write end closed, so the worker can
 * read it at leisure and sees EOF after it.  The read end is returned
 * close-on-exec and never as WORKER_SECRET_FD itself: dup2(fd, fd) leaves
 * close-on-exec set on older C libraries, and the worker would lose it. */
static int secret_pipe(const unsigned char *secret, int *rfd) {
  int p[2];
  int rc = 0;

  if (pipe2(p, O_CLOEXEC) != 0)
    return distc__seterr(DISTC_ESPAWN,
                         "cannot create a pipe for the secret: %s",
                         strerror(errno));
  /* DISTC_SECRET_LEN is far below PIPE_BUF: one write, it never blocks. */
  size_t off = 0;
  while (off < DISTC_SECRET_LEN) {
    ssize_t n = write(p[1], secret + off, DISTC_SECRET_LEN - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = distc__seterr(DISTC_ESPAWN, "cannot write the secret to a pipe: %s",
                         strerror(errno));
      goto close_both;
    }
    off += (size_t)n;
  }
  close(p[1]);
  if (p[0] == WORKER_SECRET_FD) {
    int fd = fcntl(p[0], F_DUPFD_CLOEXEC, WORKER_SECRET_FD + 1);
    close(p[0]);
    if (fd < 0)
      return distc__seterr(DISTC_ESPAWN, "cannot duplicate the secret pipe: %s",
                           strerror(errno));
    p[0] = fd;
  }
  *rfd = p[0];
  return 0;

close_both:
  close(p[0]);
  close(p[1]);
  return rc;
}

/* The calling thread's CPU mask, sized for however many CPUs the kernel
 * knows (CPU_SETSIZE is only 1024). */
typedef struct affinity {
  cpu_set_t *set;
  size_t size;
} affinity;

static int affinity_save(affinity *a) {
  for (int ncpu = CPU_SETSIZE; ncpu <= (1 << 20); ncpu *= 2) {
    a->set = CPU_ALLOC(ncpu);
    if (a->set == NULL)
      return DISTC_ENOMEM;
    a->size = CPU_ALLOC_SIZE(ncpu);
    if (sched_getaffinity(0, a->size, a->set) == 0)
      return 0;
    CPU_FREE(a->set);
    a->set = NULL;
    if (errno != EINVAL)
      break;
  }
  return DISTC_EINVAL;
}

static int pin_self(int cpu) {
  cpu_set_t *set = CPU_ALLOC(cpu + 1);
  if (set == NULL)
    return DISTC_ENOMEM;
  size_t size = CPU_ALLOC_SIZE(cpu + 1);
  CPU_ZERO_S(size, set);
  CPU_SET_S(cpu, size, set);
  int rc = sched_setaffinity(0, size, set);
  CPU_FREE(set);
  return rc == 0 ? 0 : DISTC_EINVAL;
}

/* An exec path that means the same after the child's chdir(dir): a relative
 * path with a slash would otherwise be looked up from dir. */
static char *exec_path(const char *exename, const char *dir) {
  if (exename[0] == '/' || dir == NULL || strchr(exename, '/') == NULL)
    return strdup(exename);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return strdup(exename);
  size_t n = strlen(cwd) + strlen(exename) + 2;
  char *p = malloc(n);
  if (p != NULL)
    snprintf(p, n, "%s/%s", cwd, exename);
  return p;
}

int distc__spawn_worker(const distc_launch_spec *spec, int index,
                       const char *const *extra_env, pid_t *pid) {
  envv add = {0}, env = {0};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  affinity saved = {0};
  char *path = NULL;
  int secret_fd = -1;
  int rc;

  *pid = -1;
  rc = added_env(spec, index, extra_env, &add);
  if (rc != 0) {
    rc = distc__seterr(rc, "cannot build the environment of worker %d", index);
    goto free_add;
  }

  int cpu = spec->bind_cpu ? spec->bind_cpu[index - spec->first_index] : -1;
  if (spec->verbose || spec->dry_run) {
    char tag[32];
    snprintf(tag, sizeof tag, "worker %d", index);
    print_command(tag, spec->dir, add.v, add.n, spec->exename, spec->argv,
                  cpu);
  }
  if (spec->dry_run)
    goto free_add;

  rc = full_env(&add, &env);
  if (rc != 0) {
    rc = distc__seterr(rc, "cannot build the environment of worker %d", index);
    goto free_env;
  }
  path = exec_path(spec->exename, spec->dir);
  if (path == NULL) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory starting worker %d", index);
    goto free_env;
  }
  rc = secret_pipe(spec->secret, &secret_fd);
  if (rc != 0)
    goto free_path;

  /* Every fd distc opens is close-on-exec, so of ours the worker gets only
   * stdout, stderr, the secret, and /dev/null as stdin: a worker sits in a
   * background process group, and reading the terminal would stop it. */
  posix_spawn_file_actions_init(&fa);
  int e = posix_spawn_file_actions_adddup2(&fa, secret_fd, WORKER_SECRET_FD);
  if (e == 0)
    e = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null",
                                         O_RDONLY, 0);
  if (e == 0 && spec->dir != NULL)
    e = posix_spawn_file_actions_addchdir_np(&fa, spec->dir);

  /* Own process group: a Ctrl-C at the terminal goes to the launcher and the
   * master, and the master decides what the workers get.  Signals the
   * caller blocks or ignores must not leak into the worker. */
  posix_spawnattr_init(&attr);
  if (e == 0)
    e = reset_signals(&attr, POSIX_SPAWN_SETPGROUP);
  if (e == 0)
    e = posix_spawnattr_setpgroup(&attr, 0);
  if (e != 0) {
    rc = distc__seterr(DISTC_ESPAWN, "cannot prepare to start worker %d: %s",
                       index, strerror(e));
    goto destroy_spawn;
  }

  /* The child inherits the calling thread's affinity at clone time, so pin
   * ourselves around the spawn and put the old mask back at once. */
  if (cpu >= 0) {
    if (affinity_save(&saved) != 0 || pin_self(cpu) != 0) {
      rc = distc__seterr(DISTC_ESPAWN,
                         "cannot bind worker %d to CPU %d: %s; is that CPU "
                         "allowed to this process (taskset, cgroup cpuset)?",
                         index, cpu, strerror(errno));
      goto restore_affinity;
    }
  }

  uint64_t t0 = distc__tracing() ? distc__trace_now() : 0;
  if (strchr(path, '/') != NULL)
    e = posix_spawn(pid, path, &fa, &attr, spec->argv, env.v);
  else
    e = posix_spawnp(pid, path, &fa, &attr, spec->argv, env.v);
  if (t0)
    distc__trace_span("launch", "spawn", t0,
                      "\"index\":%d,\"worker\":%d,\"os_pid\":%ld", index,
                      DISTC_INDEX_TO_ID(index), (long)(e ? -1 : *pid));
  if (e != 0) {
    *pid = -1;
    if (spec->dir != NULL)
      rc = distc__seterr(DISTC_ESPAWN,
                         "cannot start worker %d: %s in directory %s: %s; "
                         "check that both exist on this host and the "
                         "program is executable (see --exename, --dir)",
                         index, path, spec->dir, strerror(e));
    else
      rc = distc__seterr(DISTC_ESPAWN,
                         "cannot start worker %d: %s: %s; check that the "
                         "program exists on this host and is executable "
                         "(see --exename)",
                         index, path, strerror(e));
  }

restore_affinity:
  if (saved.set != NULL) {
    sched_setaffinity(0, saved.size, saved.set);
    CPU_FREE(saved.set);
  }
destroy_spawn:
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  close(secret_fd);
free_path:
  free(path);
free_env:
  envv_free(&env);
free_add:
  envv_free(&add);
  return rc;
}

/* ---- the master ---- */

/* A descriptor for the master: >= 3 (never stdio, even if ours was closed)
 * and without close-on-exec. */
static int inheritable(int fd) { return fcntl(fd, F_DUPFD, 3); }

/* The master inherits exactly these beyond stdio: the listening socket, the
 * same-host socket, the secret pipe and the control pipe.  Ours are all
 * close-on-exec; the master gets duplicates without the flag, made just
 * before posix_spawn and closed just after, so nothing else started by this
 * process sees them. */
int distc__spawn_master(const distc__master_spec *ms, pid_t *pid,
                        int *control_fd) {
  int secret[2] = {-1, -1}, control[2] = {-1, -1};
  int m_listen = -1, m_secret = -1, m_control = -1, m_local = -1,
      m_join = -1;
  envv add = {0}, env = {0};
  int rc = 0;

  *pid = -1;
  *control_fd = -1;

  if (!ms->dry_run) {
    if (pipe2(control, O_CLOEXEC) != 0) {
      rc = distc__seterr(DISTC_ESPAWN, "cannot create pipes for the master: %s",
                         strerror(errno));
      goto close_fds;
    }
    if ((rc = secret_pipe(ms->secret, &secret[0])) != 0)
      goto close_fds;
    m_listen = inheritable(ms->listen_fd);
    if (ms->local_fd >= 0)
      m_local = inheritable(ms->local_fd);
    if (ms->join_fd >= 0)
      m_join = inheritable(ms->join_fd);
    m_secret = inheritable(secret[0]);
    m_control = inheritable(control[1]);
    if (m_listen < 0 || m_secret < 0 || m_control < 0 ||
        (ms->local_fd >= 0 && m_local < 0) ||
        (ms->join_fd >= 0 && m_join < 0)) {
      rc = distc__seterr(DISTC_ESPAWN,
                         "cannot pass descriptors to the master: %s",
                         strerror(errno));
      goto close_fds;
    }
  }

  /* --env entries, then the contract, which wins over a user's DISTC_*.
   * In a dry run the descriptor numbers do not exist yet. */
  for (size_t i = 0; ms->env && ms->env[i] && rc == 0; i++)
    rc = envv_set(&add, ms->env[i]);
  char fds[3][16];
  const int nums[3] = {m_listen, m_secret, m_control};
  for (int i = 0; i < 3; i++) {
    if (ms->dry_run)
      snprintf(fds[i], sizeof fds[i], "<fd>");
    else
      snprintf(fds[i], sizeof fds[i], "%d", nums[i]);
  }
  if (rc == 0)
    rc = envv_setf(&add, "%s=master", DISTC_ENV_ROLE);
  if (rc == 0)
    rc = envv_setf(&add, "%s=%s", DISTC_ENV_LISTEN_FD, fds[0]);
  if (rc == 0)
    rc = envv_setf(&add, "%s=%s", DISTC_ENV_SECRET_FD, fds[1]);
  if (rc == 0)
    rc = envv_setf(&add, "%s=%d", DISTC_ENV_NWORKERS, ms->nworkers);
  if (rc == 0)
    rc = envv_setf(&add, "%s=%s", DISTC_ENV_CONTROL_FD, fds[2]);
  if (rc == 0)
    rc = envv_setf(&add, "%s=%g", DISTC_ENV_TIMEOUT, ms->timeout_s);
  if (rc == 0)
    rc = envv_setf(&add, "%s=%ld", DISTC_ENV_PARENT, (long)getpid());
  /* -1 (none, or a dry run): the master opens its own if it needs one. */
  if (rc == 0)
    rc = envv_setf(&add, "%s=%d", DISTC_ENV_LISTEN_LOCAL_FD, m_local);
  if (rc == 0 && ms->join_addr != NULL) {
    if (ms->dry_run)
      rc = envv_setf(&add, "%s=<fd>", DISTC_ENV_JOIN_FD);
    else
      rc = envv_setf(&add, "%s=%d", DISTC_ENV_JOIN_FD, m_join);
    if (rc == 0)
      rc = envv_setf(&add, "%s=%s", DISTC_ENV_JOIN_ADDR, ms->join_addr);
    if (rc == 0 && ms->join_key != NULL)
      rc = envv_setf(&add, "%s=%s", DISTC_ENV_JOIN_KEY_FILE, ms->join_key);
  }
  if (rc == 0 && ms->min_workers >= 0)
    rc = envv_setf(&add, "%s=%d", DISTC_ENV_MIN_WORKERS, ms->min_workers);
  /* Only for the progress line: not worth a line of a dry run. */
  if (rc == 0 && ms->worker_hosts != NULL && !ms->dry_run)
    rc = envv_setf(&add, "%s=%s", DISTC_ENV_WORKER_HOSTS, ms->worker_hosts);
  if (rc != 0)
    goto nomem;

  if (ms->verbose || ms->dry_run)
    print_command("master", ms->dir, add.v, add.n, ms->path, ms->argv, -1);
  if (ms->dry_run)
    goto free_env;

  /* The master's environment is the caller's with `add` on top; unlike a
   * worker's it keeps the caller's DISTC_* settings (DISTC_LOG, ...). */
  for (char **p = environ; p && *p && rc == 0; p++)
    if (envv_find(&add, *p) < 0)
      rc = envv_set(&env, *p);
  for (size_t i = 0; i < add.n && rc == 0; i++)
    rc = envv_set(&env, add.v[i]);
  if (rc != 0)
    goto nomem;

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  int e = 0;
  if (ms->dir != NULL)
    e = posix_spawn_file_actions_addchdir_np(&fa, ms->dir);
  /* The master stays in our process group: it is the foreground program
   * and may read the terminal. */
  if (e == 0)
    e = reset_signals(&attr, 0);
  if (e == 0)
    e = posix_spawn(pid, ms->path, &fa, &attr, ms->argv, env.v);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (e != 0) {
    *pid = -1;
    rc = distc__seterr(DISTC_ESPAWN,
                       "cannot start the master %s%s%s: %s; check that it "
                       "exists and is executable",
                       ms->path, ms->dir ? " in directory " : "",
                       ms->dir ? ms->dir : "", strerror(e));
    goto free_env;
  }
  *control_fd = control[0];
  control[0] = -1;
  goto free_env;

nomem:
  rc = distc__seterr(DISTC_ENOMEM, "out of memory starting the master");
free_env:
  envv_free(&env);
  envv_free(&add);
close_fds:
  for (int i = 0; i < 2; i++) {
    if (secret[i] >= 0)
      close(secret[i]);
    if (control[i] >= 0)
      close(control[i]);
  }
  if (m_listen >= 0)
    close(m_listen);
  if (m_local >= 0)
    close(m_local);
  if (m_join >= 0)
    close(m_join);
  if (m_secret >= 0)
    close(m_secret);
  if (m_control >= 0)
    close(m_control);
  return rc;
}

/* master.c — starting the master: the user's program with the master half of
 * the DISTC_* contract (see manager.h).
 *
 * The master inherits exactly three fds beyond stdio: the listening socket,
 * the secret pipe and the control pipe.  Ours are all close-on-exec; the
 * master gets duplicates without the flag, made just before posix_spawn and
 * closed just after, so nothing else started by this launcher sees them. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "launcher.h"

extern char **environ;

static bool key_in(const char *kv, char *const *list, size_t n) {
  size_t k = distc_env_key_len(kv);
  for (size_t i = 0; i < n; i++)
    if (distc_env_key_len(list[i]) == k && strncmp(list[i], kv, k) == 0)
      return true;
  return false;
}

/* `distc-launch: [master] cd DIR && K=V ... PROGRAM ARGS...`, one write. */
static void print_command(const distc__master_spec *ms, char *const *add,
                          size_t nadd) {
  char cwd[PATH_MAX];
  const char *dir = ms->dir;
  if (dir == NULL)
    dir = getcwd(cwd, sizeof cwd) ? cwd : ".";

  char *line = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&line, &len);
  if (f == NULL)
    return;
  fputs("distc-launch: [master] cd ", f);
  distc_shell_quote(f, dir);
  fputs(" &&", f);
  for (size_t i = 0; i < nadd; i++) {
    size_t k = distc_env_key_len(add[i]);
    fprintf(f, " %.*s=", (int)k, add[i]);
    distc_shell_quote(f, add[i] + k + 1);
  }
  fputc(' ', f);
  distc_shell_quote(f, ms->path);
  for (size_t i = 1; ms->argv[i]; i++) {
    fputc(' ', f);
    distc_shell_quote(f, ms->argv[i]);
  }
  fputc('\n', f);
  if (fclose(f) == 0)
    fwrite(line, 1, len, stderr);
  free(line);
}

/* A descriptor for the master: >= 3 (never stdio, even if ours was closed)
 * and without close-on-exec. */
static int inheritable(int fd) { return fcntl(fd, F_DUPFD, 3); }

int distc__master_spawn(const distc__master_spec *ms, pid_t *pid,
                        int *control_fd) {
  int secret[2] = {-1, -1}, control[2] = {-1, -1};
  int m_listen = -1, m_secret = -1, m_control = -1, m_local = -1;
  char **add = NULL, **env = NULL;
  size_t nadd = 0, nenv = 0;
  int rc = 0;

  *pid = -1;
  *control_fd = -1;

  if (!ms->dry_run) {
    if (pipe2(secret, O_CLOEXEC) != 0 || pipe2(control, O_CLOEXEC) != 0) {
      rc = distc__seterr(DISTC_ESPAWN, "cannot create pipes for the master: %s",
                         strerror(errno));
      goto close_fds;
    }
    /* Far below PIPE_BUF: one write that cannot block. */
    if (write(secret[1], ms->secret, DISTC_SECRET_LEN) != DISTC_SECRET_LEN) {
      rc = distc__seterr(DISTC_ESPAWN, "cannot write the secret to a pipe: %s",
                         strerror(errno));
      goto close_fds;
    }
    close(secret[1]);
    secret[1] = -1;
    m_listen = inheritable(ms->listen_fd);
    if (ms->local_fd >= 0 && (m_local = inheritable(ms->local_fd)) < 0) {
      rc = distc__seterr(DISTC_ESPAWN, "cannot pass descriptors to the "
                                       "master: %s", strerror(errno));
      goto close_fds;
    }
    m_secret = inheritable(secret[0]);
    m_control = inheritable(control[1]);
    if (m_listen < 0 || m_secret < 0 || m_control < 0) {
      rc = distc__seterr(DISTC_ESPAWN,
                         "cannot pass descriptors to the master: "
                         "%s",
                         strerror(errno));
      goto close_fds;
    }
  }

  /* --env entries, then the contract, which wins over a user's DISTC_*. */
  size_t nuser = 0;
  while (ms->env && ms->env[nuser])
    nuser++;
  add = calloc(nuser + 8 + 1, sizeof *add); /* + the contract, NULL */
  if (add == NULL)
    goto nomem;
  for (size_t i = 0; i < nuser; i++) {
    if ((add[nadd++] = strdup(ms->env[i])) == NULL)
      goto nomem;
  }
  char fdtext[3][16];
  if (ms->dry_run) {
    /* The numbers are only known once the fds exist. */
    for (int i = 0; i < 3; i++)
      strcpy(fdtext[i], "<fd>");
  } else {
    snprintf(fdtext[0], sizeof fdtext[0], "%d", m_listen);
    snprintf(fdtext[1], sizeof fdtext[1], "%d", m_secret);
    snprintf(fdtext[2], sizeof fdtext[2], "%d", m_control);
  }
  char contract[8][64];
  snprintf(contract[0], 64, "%s=master", DISTC_ENV_ROLE);
  snprintf(contract[1], 64, "%s=%s", DISTC_ENV_LISTEN_FD, fdtext[0]);
  snprintf(contract[2], 64, "%s=%s", DISTC_ENV_SECRET_FD, fdtext[1]);
  snprintf(contract[3], 64, "%s=%d", DISTC_ENV_NWORKERS, ms->nworkers);
  snprintf(contract[4], 64, "%s=%s", DISTC_ENV_CONTROL_FD, fdtext[2]);
  snprintf(contract[5], 64, "%s=%g", DISTC_ENV_TIMEOUT, ms->timeout_s);
  snprintf(contract[6], 64, "%s=%ld", DISTC_ENV_PARENT, (long)getpid());
  /* -1 (none, or a dry run): the master opens its own if it needs one. */
  snprintf(contract[7], 64, "%s=%d", DISTC_ENV_LISTEN_LOCAL_FD, m_local);
  for (size_t c = 0; c < DISTC__ARRAY_LEN(contract); c++) {
    char *dup = strdup(contract[c]);
    if (dup == NULL)
      goto nomem;
    size_t j = 0;
    while (j < nadd && !key_in(dup, &add[j], 1))
      j++;
    if (j < nadd) {
      free(add[j]);
      add[j] = dup;
    } else {
      add[nadd++] = dup;
    }
  }

  if (ms->verbose || ms->dry_run)
    print_command(ms, add, nadd);
  if (ms->dry_run)
    goto free_env;

  size_t nenviron = 0;
  while (environ && environ[nenviron])
    nenviron++;
  env = calloc(nenviron + nadd + 1, sizeof *env);
  if (env == NULL)
    goto nomem;
  for (size_t i = 0; i < nenviron; i++)
    if (!key_in(environ[i], add, nadd))
      env[nenv++] = environ[i];
  for (size_t i = 0; i < nadd; i++)
    env[nenv++] = add[i];
  env[nenv] = NULL;

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  int e = 0;
  if (ms->dir != NULL)
    e = posix_spawn_file_actions_addchdir_np(&fa, ms->dir);
  /* The master stays in our process group: it is the foreground program
   * and may read the terminal.  Our blocked signals and handlers are ours. */
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGCHLD);
  sigaddset(&defaults, SIGHUP);
  sigaddset(&defaults, SIGQUIT);
  if (e == 0)
    e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF);
  if (e == 0)
    e = posix_spawnattr_setsigmask(&attr, &empty);
  if (e == 0)
    e = posix_spawnattr_setsigdefault(&attr, &defaults);
  if (e == 0)
    e = posix_spawn(pid, ms->path, &fa, &attr, ms->argv, env);
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
  free(env);
  for (size_t i = 0; i < nadd; i++)
    free(add[i]);
  free(add);
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
  if (m_secret >= 0)
    close(m_secret);
  if (m_control >= 0)
    close(m_control);
  return rc;
}

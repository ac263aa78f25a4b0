/* join.c — distc-launch's side of elastic join: the door --listen opens
 * for the master, and the --join wrapper that starts workers joining a
 * master that runs elsewhere.
 *
 * The wrapper only sets DISTC_JOIN and DISTC_JOIN_KEY (a path: the key
 * stays in its file) and runs the program, as any batch script could; it
 * checks the key file first so a wrong path fails here, in words, rather
 * than in N workers. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "launcher.h"

extern char **environ;

int distc__door_open(const distc__launch_opts *o, const unsigned char *secret,
                     distc__door *d) {
  int rc;
  d->fd = -1;
  d->key[0] = '\0';
  d->written = false;
  if (o->join_key != NULL) {
    if ((size_t)snprintf(d->key, sizeof d->key, "%s", o->join_key) >=
        sizeof d->key)
      return distc__seterr(DISTC_EINVAL, "--join-key: path too long");
  } else if ((rc = distc__join_key_default(d->key, sizeof d->key)) != 0) {
    return rc;
  }
  if (o->dry_run) {
    snprintf(d->addr, sizeof d->addr, "%s", o->listen ? o->listen : "<addr>");
    return 0;
  }
  if ((rc = distc__join_listen(o->listen ? o->listen : "0", &d->fd, d->addr,
                               sizeof d->addr)) != 0)
    return rc;
  if ((rc = distc__join_key_write(d->key, secret)) != 0) {
    close(d->fd);
    d->fd = -1;
    return rc;
  }
  d->written = true;
  return 0;
}

void distc__door_announce(const distc__door *d) {
  fprintf(stderr,
          "distc-launch: workers join at %s with key file %s\n"
          "distc-launch: start them with DISTC_JOIN=%s DISTC_JOIN_KEY=%s in "
          "their environment, or distc-launch --join %s --join-key %s "
          "PROGRAM\n",
          d->addr, d->key, d->addr, d->key, d->addr, d->key);
}

void distc__door_close(distc__door *d) {
  if (d->fd >= 0)
    close(d->fd);
  d->fd = -1;
  /* The key is this run's secret: useless afterwards, so not left about. */
  if (d->written)
    unlink(d->key);
  d->written = false;
}

/* environ without DISTC_ROLE (the program must not think it was launched
 * as something else), with the --env entries and the join variables. */
static char **join_env(const distc__launch_opts *o, const char *key) {
  size_t n = 0, k = 0;
  while (environ[n])
    n++;
  for (size_t i = 0; o->env[i]; i++)
    n++;
  char **env = calloc(n + 3, sizeof *env);
  if (env == NULL)
    return NULL;
  for (size_t i = 0; environ[i]; i++) {
    size_t len = distc__env_key_len(environ[i]);
    bool ours = (len == strlen(DISTC_ENV_ROLE) &&
                 strncmp(environ[i], DISTC_ENV_ROLE, len) == 0) ||
                (len == strlen(DISTC_ENV_JOIN) &&
                 strncmp(environ[i], DISTC_ENV_JOIN, len) == 0) ||
                (len == strlen(DISTC_ENV_JOIN_KEY) &&
                 strncmp(environ[i], DISTC_ENV_JOIN_KEY, len) == 0);
    bool replaced = false;
    for (size_t j = 0; o->env[j] && !replaced; j++)
      replaced = distc__env_key_len(o->env[j]) == len &&
                 strncmp(o->env[j], environ[i], len) == 0;
    if (!ours && !replaced)
      env[k++] = environ[i];
  }
  for (size_t i = 0; o->env[i]; i++)
    env[k++] = (char *)o->env[i];
  if (asprintf(&env[k], "%s=%s", DISTC_ENV_JOIN, o->join) < 0)
    env[k] = NULL;
  if (env[k] == NULL || asprintf(&env[k + 1], "%s=%s", DISTC_ENV_JOIN_KEY,
                                 key) < 0) {
    free(env[k]);
    free(env);
    return NULL;
  }
  return env;
}

int distc__join_run(const distc__launch_opts *o) {
  unsigned char secret[DISTC_SECRET_LEN];
  int rc = distc__join_key_read(o->join_key, secret);
  explicit_bzero(secret, sizeof secret);
  if (rc != 0) {
    fprintf(stderr, "distc-launch: %s\n", distc_errmsg());
    return DISTC__EXIT_FAILURE;
  }
  /* The workers may run in --dir: they get the key's absolute path. */
  char key[PATH_MAX];
  if (realpath(o->join_key, key) == NULL) {
    fprintf(stderr, "distc-launch: --join-key %s: %s\n", o->join_key,
            strerror(errno));
    return DISTC__EXIT_FAILURE;
  }
  int n = o->procs_given && o->nworkers > 0 ? o->nworkers : 1;
  if (o->procs_given && o->nworkers == 0)
    n = distc__host_cores();
  char **env = join_env(o, key);
  if (env == NULL) {
    fprintf(stderr, "distc-launch: out of memory\n");
    return DISTC__EXIT_FAILURE;
  }
  size_t nenv = 0;
  while (env[nenv])
    nenv++;
  int code = 0;
  pid_t *pids = calloc((size_t)n, sizeof *pids);
  if (pids == NULL) {
    fprintf(stderr, "distc-launch: out of memory\n");
    code = DISTC__EXIT_FAILURE;
    goto free_env;
  }
  if (o->verbose || o->dry_run) {
    char *line = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&line, &len);
    if (f != NULL) {
      fprintf(f, "[%d joining worker%s] %s=", n, n > 1 ? "s" : "",
              DISTC_ENV_JOIN);
      distc__shell_quote(f, o->join);
      fprintf(f, " %s=", DISTC_ENV_JOIN_KEY);
      distc__shell_quote(f, key);
      fputc(' ', f);
      distc__shell_quote(f, o->exe_path);
      for (size_t i = 1; o->argv[i]; i++) {
        fputc(' ', f);
        distc__shell_quote(f, o->argv[i]);
      }
      if (fclose(f) == 0)
        fprintf(stderr, "distc-launch: %s\n", line);
      free(line);
    }
    if (o->dry_run)
      goto free_pids;
  }
  int started = 0;
  for (; started < n; started++) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int e = o->dir ? posix_spawn_file_actions_addchdir_np(&fa, o->dir) : 0;
    if (e == 0)
      e = posix_spawn(&pids[started], o->exe_path, &fa, NULL, o->argv, env);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
      fprintf(stderr, "distc-launch: cannot start %s: %s\n", o->exe_path,
              strerror(e));
      code = DISTC__EXIT_FAILURE;
      for (int k = 0; k < started; k++)
        kill(pids[k], SIGTERM);
      break;
    }
  }
  /* Each exits when the master lets it go or is gone; the worst status is
   * ours. */
  for (int k = 0; k < started; k++) {
    int status;
    while (waitpid(pids[k], &status, 0) < 0 && errno == EINTR)
      ;
    int c = WIFEXITED(status)     ? WEXITSTATUS(status)
            : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                  : DISTC__EXIT_FAILURE;
    if (code == 0)
      code = c;
  }
free_pids:
  free(pids);
free_env:
  free(env[nenv - 2]);
  free(env[nenv - 1]);
  free(env);
  return code;
}

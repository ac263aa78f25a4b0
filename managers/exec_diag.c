/* exec_diag.c — why a process exited with status 127 before it ran.
 *
 * 127 is what glibc's dynamic loader exits with when a program's shared
 * library cannot be found ("error while loading shared libraries:
 * libdistc.so.0: cannot open shared object file"), typically a program
 * linked against a build tree without an rpath.  Its line went to the
 * process's stderr; what the user needs from us is which library and what to
 * do.  The program's own loader (its PT_INTERP), run on it with
 * LD_TRACE_LOADED_OBJECTS=1, lists the libraries and their paths without
 * running the program's code, as ldd does (`--list` stops at the first
 * missing one instead).
 * A static program has no loader and is never run here. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec_diag.h"

extern char **environ;

/* How long the loader may take to list the libraries. */
#define LIST_TIMEOUT_MS 5000

/* The program interpreter of a 64-bit ELF executable, or false. */
static bool elf_interp(const char *exe, char *interp, size_t cap) {
  bool found = false;
  int fd = open(exe, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  Elf64_Ehdr eh;
  if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
      memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr))
    goto close_fd;
  for (int i = 0; i < eh.e_phnum && !found; i++) {
    Elf64_Phdr ph;
    off_t at = (off_t)eh.e_phoff + (off_t)i * (off_t)sizeof ph;
    if (pread(fd, &ph, sizeof ph, at) != (ssize_t)sizeof ph)
      break;
    if (ph.p_type != PT_INTERP || ph.p_filesz == 0 || ph.p_filesz >= cap)
      continue;
    if (pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) ==
        (ssize_t)ph.p_filesz) {
      interp[ph.p_filesz] = '\0'; /* p_filesz counts the NUL already */
      found = interp[0] == '/';
    }
  }
close_fd:
  close(fd);
  return found;
}

/* Runs `LD_TRACE_LOADED_OBJECTS=1 interp exe` and collects its output (up to cap - 1 bytes). */
static bool loader_list(const char *interp, const char *exe, char *out,
                        size_t cap) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return false;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  char *argv[] = {(char *)interp, (char *)exe, NULL};
  size_t ne = 0;
  while (environ[ne])
    ne++;
  char **env = malloc((ne + 2) * sizeof *env);
  int rc = ENOMEM;
  pid_t pid;
  if (env) {
    env[0] = "LD_TRACE_LOADED_OBJECTS=1";
    memcpy(env + 1, environ, (ne + 1) * sizeof *env);
    rc = posix_spawn(&pid, interp, &fa, NULL, argv, env);
  }
  free(env);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    return false;
  }
  size_t len = 0;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long left = LIST_TIMEOUT_MS - ((t.tv_sec - t0.tv_sec) * 1000 +
                                   (t.tv_nsec - t0.tv_nsec) / 1000000);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    if (left <= 0 || poll(&pf, 1, (int)left) == 0)
      break;
    char junk[256];
    ssize_t k = len + 1 < cap ? read(p[0], out + len, cap - 1 - len)
                              : read(p[0], junk, sizeof junk);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    if (len + 1 < cap)
      len += (size_t)k;
  }
  out[len] = '\0';
  close(p[0]);
  kill(pid, SIGKILL); /* gone already, unless it hung */
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
  return true;
}

/* The names before " => not found" in the loader's list, comma-separated. */
static void missing_libs(const char *list, char *out, size_t cap) {
  out[0] = '\0';
  size_t len = 0;
  for (const char *l = list, *end; *l; l = end ? end + 1 : l + strlen(l)) {
    end = strchr(l, '\n');
    size_t ll = end ? (size_t)(end - l) : strlen(l);
    const char *nf = memmem(l, ll, " => not found", 13);
    if (!nf)
      continue;
    while (l < nf && (*l == ' ' || *l == '\t'))
      l++;
    int w = snprintf(out + len, cap - len, "%s%.*s", len ? ", " : "",
                     (int)(nf - l), l);
    if (w < 0 || (size_t)w >= cap - len)
      break;
    len += (size_t)w;
  }
}

void distc__exec_diagnose(const char *exe, char *buf, size_t n) {
  char interp[256], list[4096], missing[512];
  missing[0] = '\0';
  if (elf_interp(exe, interp, sizeof interp) &&
      loader_list(interp, exe, list, sizeof list))
    missing_libs(list, missing, sizeof missing);
  if (missing[0]) {
    snprintf(buf, n,
             "the dynamic loader cannot find %s for %s (its \"error while "
             "loading shared libraries\" line is above): link the program "
             "with -Wl,-rpath,DIR or run with LD_LIBRARY_PATH=DIR, DIR being "
             "the directory that holds %s (for an installed libdistc: "
             "`pkg-config --variable=libdir distc`)",
             missing, exe, strchr(missing, ',') ? "them" : "it");
  } else {
    snprintf(buf, n,
             "status 127 means %s could not be started (see the dynamic "
             "loader's or the shell's message above: a missing or "
             "incompatible shared library, a bad interpreter), or it "
             "exited with 127 itself",
             exe);
  }
}

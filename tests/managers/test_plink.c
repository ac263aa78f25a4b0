/* test_plink.c — the manager's side of the proxy protocol
 * (managers/proxy_link.c) over a pair of pipes, as a launcher without SSH
 * (srun's stdin and stdout) uses it: what it sends, what it makes of the
 * proxy's reports, and the end of the stream.  Prints "ok"/"not ok" per
 * check and "N passed, M failed". */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "manager.h"
#include "proxy.h"

static int passed, failed;

static void check(bool ok, const char *what) {
  if (ok) {
    passed++;
    printf("ok - %s\n", what);
  } else {
    failed++;
    printf("not ok - %s\n", what);
  }
}

typedef struct exits {
  int n, index[8], status[8];
  long pid[8];
} exits;

static void on_exit_cb(void *arg, int index, long pid, int status) {
  exits *e = arg;
  if (e->n < 8) {
    e->index[e->n] = index;
    e->pid[e->n] = pid;
    e->status[e->n++] = status;
  }
}

static void say(int fd, const char *s) {
  if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
    perror("write");
}

int main(void) {
  int to_proxy[2], from_proxy[2];
  if (pipe2(to_proxy, O_NONBLOCK) != 0 || pipe2(from_proxy, O_NONBLOCK) != 0)
    return 2;
  exits ex = {0};
  distc__plink pl = {.on_exit = on_exit_cb, .arg = &ex, .exe = "/opt/prog",
                     .dir = "/work", .hint_host = "in the node list"};
  snprintf(pl.label, sizeof pl.label, "node7");
  unsigned char secret[DISTC_SECRET_LEN];
  memset(secret, 0xab, sizeof secret);

  distc__plink_config c = {.master = "10.0.0.1:4000", .secret = secret,
                           .exe = "/opt/prog\nx", .blas = 0, .probe_ms = 50};
  check(distc__plink_config_send(&pl, &c) == 0 &&
            pl.phase == DISTC__P_STARTING,
        "the configuration is queued; the link awaits hello");
  check(distc__plink_flush_fd(&pl, to_proxy[1]) == 0 && pl.out_len == 0,
        "flushed to the descriptor");
  char got[4096] = "";
  ssize_t n = read(to_proxy[0], got, sizeof got - 1);
  got[n > 0 ? n : 0] = '\0';
  static const char head[] =
      DISTC_PROXY_HEADER "\nmaster 10.0.0.1:4000\nsecret abab";
  check(strncmp(got, head, sizeof head - 1) == 0,
        "header, master and the secret in hex, in that order");
  check(strstr(got, "\nexe /opt/prog\\nx\nblas auto\nprobe 50\nend\n") != NULL,
        "exe escaped, blas auto, probe, end");

  say(from_proxy[1], "hello 123 8\n");
  check(distc__plink_read_fd(&pl, from_proxy[0], false) == 0 &&
            pl.phase == DISTC__P_HELLO,
        "hello: ready");
  check(distc__plink_start(&pl, 4, 2) == 0 && distc__plink_running(&pl) == 2,
        "start 4 2: two workers count as running");
  distc__plink_signal(&pl, SIGTERM);
  distc__plink_flush_fd(&pl, to_proxy[1]);
  n = read(to_proxy[0], got, sizeof got - 1);
  got[n > 0 ? n : 0] = '\0';
  check(strcmp(got, "start 4 2\nsignal 15\n") == 0, "start and signal lines");

  /* Reports split across reads arrive whole. */
  say(from_proxy[1], "started 4 1001\nstarted 5 10");
  distc__plink_read_fd(&pl, from_proxy[0], false);
  say(from_proxy[1], "02\nrunning\nexit 5 9\n");
  distc__plink_read_fd(&pl, from_proxy[0], false);
  check(pl.phase == DISTC__P_RUNNING && distc__plink_running(&pl) == 1,
        "started, running, one exit");
  check(ex.n == 1 && ex.index[0] == 5 && ex.pid[0] == 1002 &&
            ex.status[0] == 9,
        "the exit reaches on_exit with index, pid and status");

  say(from_proxy[1], "fail noexe\n");
  distc__plink_read_fd(&pl, from_proxy[0], false);
  check(pl.phase == DISTC__P_FAILED && pl.error != NULL &&
            strstr(pl.error, "node7: the program /opt/prog is not there") &&
            strstr(pl.error, "in the node list"),
        "fail noexe: an error naming the host and the program");

  close(from_proxy[1]);
  check(distc__plink_read_fd(&pl, from_proxy[0], false) == -1,
        "end of the stream is -1");
  distc__plink_gone(&pl);
  check(ex.n == 2 && ex.index[1] == 4 && ex.status[1] == -1 &&
            distc__plink_running(&pl) == 0,
        "gone: the worker left is reported, status unknown");

  pl.closing = true;
  check(distc__plink_flush_fd(&pl, to_proxy[1]) == -1 && pl.eof_sent,
        "closing: flushed, then finished (the caller closes)");
  distc__plink_free(&pl);
  close(to_proxy[0]);
  close(to_proxy[1]);
  close(from_proxy[0]);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

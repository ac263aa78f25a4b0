/* test_hostspec.c — every form of --hosts and --hostfile, and every kind of
 * bad entry (managers/hostspec.c).  Prints "ok"/"not ok" per check and
 * "N passed, M failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "hostspec.h"

static int passed, failed;

static void result(bool ok, const char *what, const char *detail) {
  if (ok) {
    passed++;
    printf("ok - %s\n", what);
  } else {
    failed++;
    printf("not ok - %s\n#   %s\n", what, detail);
  }
}

static bool same(const char *a, const char *b) {
  return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* A good entry and what it must mean. */
static void good(const char *entry, const char *user, const char *name,
                 int port, int slots) {
  distc_host *h = NULL;
  int n = 0;
  char what[256], detail[512];
  snprintf(what, sizeof what, "accepts '%s'", entry);
  int rc = distc__hosts_parse_list(entry, &h, &n);
  if (rc != 0) {
    result(false, what, distc_errmsg());
  } else {
    snprintf(detail, sizeof detail, "got n=%d user=%s name=%s port=%d slots=%d",
             n, n ? (h[0].user ? h[0].user : "(none)") : "-",
             n ? h[0].name : "-", n ? h[0].port : -1, n ? h[0].slots : -1);
    result(n == 1 && same(h[0].user, user) && same(h[0].name, name) &&
               h[0].port == port && h[0].slots == slots,
           what, detail);
  }
  distc__host_free(h, n);
}

/* A bad list: refused, and the message quotes the bad entry and contains
 * `why`. */
static void bad(const char *list, const char *quoted, const char *why) {
  distc_host *h = NULL;
  int n = 0;
  char what[256], detail[1024];
  snprintf(what, sizeof what, "refuses '%s'", list);
  int rc = distc__hosts_parse_list(list, &h, &n);
  const char *msg = distc_errmsg();
  char q[256];
  snprintf(q, sizeof q, "'%s'", quoted);
  snprintf(detail, sizeof detail, "rc=%d message: %s", rc, msg);
  result(rc == DISTC_EINVAL && strstr(msg, q) != NULL &&
             strstr(msg, why) != NULL,
         what, detail);
  distc__host_free(h, n);
}

static char tmpdir[] = "/tmp/distc-hostspec.XXXXXX";

static const char *write_file(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
  return path;
}

static void file_good(void) {
  const char *path = write_file("good",
                                "# a comment line\n"
                                "\n"
                                "node1\n"
                                "node2:3   # a trailing comment\n"
                                "user@node3:2222:auto\n"
                                "node4 slots=4\n"
                                "node5 slots=auto dir=/scratch/x "
                                "exename=/opt/p/bin/prog\n"
                                "3*user@node6:2200\n"
                                "2*node7 dir=\"/path with space\"\n"
                                "node1:2\n"
                                "[fe80::1]:22:2\n");
  distc_host *h = NULL;
  int n = 0;
  int rc = distc__hosts_parse_file(path, &h, &n);
  char detail[512];
  snprintf(detail, sizeof detail, "rc=%d n=%d %s", rc, n,
           rc ? distc_errmsg() : "");
  result(rc == 0 && n == 8, "host file: 8 hosts (node1 merged)", detail);
  if (rc == 0 && n == 8) {
    result(strcmp(h[0].name, "node1") == 0 && h[0].slots == 3,
           "host file: node1 and node1:2 add up to 3", h[0].name);
    result(h[1].slots == 3, "host file: host:N", h[1].name);
    result(same(h[2].user, "user") && h[2].port == 2222 &&
               h[2].slots == DISTC_SLOTS_AUTO,
           "host file: user@host:port:auto", h[2].name);
    result(h[3].slots == 4, "host file: Open MPI slots=N", h[3].name);
    result(h[4].slots == DISTC_SLOTS_AUTO && same(h[4].dir, "/scratch/x") &&
               same(h[4].exename, "/opt/p/bin/prog"),
           "host file: slots=auto dir= exename=", h[4].name);
    result(h[5].slots == 3 && same(h[5].user, "user") && h[5].port == 2200,
           "host file: Julia N*user@host:port (colon is the port)",
           h[5].name);
    result(h[6].slots == 2 && same(h[6].dir, "/path with space"),
           "host file: a quoted value", h[6].dir ? h[6].dir : "(null)");
    result(same(h[7].name, "fe80::1") && h[7].port == 22 && h[7].slots == 2,
           "host file: [IPv6]:port:N", h[7].name);
  }
  distc__host_free(h, n);
}

static void file_bad(const char *name, const char *text, const char *why) {
  const char *path = write_file(name, text);
  distc_host *h = NULL;
  int n = 0;
  char what[256], detail[1024], where[600];
  snprintf(what, sizeof what, "host file: refuses %s", name);
  int rc = distc__hosts_parse_file(path, &h, &n);
  snprintf(detail, sizeof detail, "rc=%d message: %s", rc, distc_errmsg());
  snprintf(where, sizeof where, "%s:", path);
  result(rc == DISTC_EINVAL && strstr(distc_errmsg(), where) != NULL &&
             strstr(distc_errmsg(), why) != NULL,
         what, detail);
  distc__host_free(h, n);
}

int main(void) {
  /* every form */
  good("node1", NULL, "node1", 0, 1);
  good("node1:4", NULL, "node1", 0, 4);
  good("node1:auto", NULL, "node1", 0, DISTC_SLOTS_AUTO);
  good("alice@node1", "alice", "node1", 0, 1);
  good("alice@node1:2", "alice", "node1", 0, 2);
  good("alice@node1:2222:3", "alice", "node1", 2222, 3);
  good("node1:2222:auto", NULL, "node1", 2222, DISTC_SLOTS_AUTO);
  good("10.0.0.7:2", NULL, "10.0.0.7", 0, 2);
  good("[::1]:2", NULL, "::1", 0, 2);
  good("[2001:db8::5]:2022:8", NULL, "2001:db8::5", 2022, 8);
  good("node-1.example.org", NULL, "node-1.example.org", 0, 1);
  good("_svc.user@n_1:1", "_svc.user", "n_1", 0, 1);
  good("node1:4096", NULL, "node1", 0, 4096);

  /* a list, with a repeated host */
  distc_host *h = NULL;
  int n = 0;
  int rc = distc__hosts_parse_list("node1:2,node2:3,node1", &h, &n);
  result(rc == 0 && n == 2 && h[0].slots == 3 && h[1].slots == 3,
         "a list merges a repeated host", rc ? distc_errmsg() : "");
  distc__host_free(h, n);
  h = NULL;
  n = 0;
  rc = distc__hosts_parse_list("node1:2,u@node1:2,node1:22:2", &h, &n);
  result(rc == 0 && n == 3,
         "user@ and :port make different hosts", rc ? distc_errmsg() : "");
  distc__host_free(h, n);
  h = NULL;
  n = 0;

  /* every bad form */
  bad("node1:0", "node1:0", "1..4096");
  bad("node1:4097", "node1:4097", "1..4096");
  bad("node1:-1", "node1:-1", "1..4096");
  bad("node1:x", "node1:x", "1..4096");
  bad("node1:", "node1:", "1..4096");
  bad("node1:+2", "node1:+2", "1..4096");
  bad("node1: 2", "node1: 2", "1..4096");
  bad("node1:2:3:4", "node1:2:3:4", "more than two");
  bad("node1:0:2", "node1:0:2", "port");
  bad("node1:65536:2", "node1:65536:2", "port");
  bad("node1:auto:2", "node1:auto:2", "port");
  bad("node1:22:", "node1:22:", "1..4096");
  bad("@node1", "@node1", "user name");
  bad("a@b@node1", "a@b@node1", "more than one '@'");
  bad("-user@node1", "-user@node1", "user name");
  bad("us er@node1", "us er@node1", "user name");
  bad(":2", ":2", "host name is empty");
  bad("alice@", "alice@", "host name is empty");
  bad("no de", "no de", "host name");
  bad("-node", "-node", "host name");
  bad("node/1", "node/1", "host name");
  bad("[::1", "[::1", "without ']'");
  bad("[zz]:2", "[zz]:2", "IPv6");
  bad("[::1]x", "[::1]x", "only ':'");
  bad("node1,,node2", "node1,,node2", "empty entry");
  bad("node1,", "node1,", "empty entry");
  rc = distc__hosts_parse_list("", &h, &n);
  result(rc == DISTC_EINVAL && strstr(distc_errmsg(), "empty"),
         "refuses an empty --hosts", distc_errmsg());
  rc = distc__hosts_parse_list("node1:auto,node1:2", &h, &n);
  result(rc == DISTC_EINVAL && strstr(distc_errmsg(), "auto"),
         "refuses a host listed twice with auto", distc_errmsg());
  distc__host_free(h, n);
  h = NULL;
  n = 0;

  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  file_good();
  file_bad("count-twice", "node1:2 slots=3\n", "count twice");
  file_bad("julia-count-twice", "2*node1 slots=3\n", "count twice");
  file_bad("bad-slots", "node1 slots=x\n", "slots must be");
  file_bad("max-slots", "node1 max_slots=4\n", "unknown setting 'max_slots'");
  file_bad("unknown-key", "node1 colour=red\n", "unknown setting 'colour'");
  file_bad("bind-addr", "2*node1 10.0.0.1\n", "bind address");
  file_bad("julia-two-colons", "2*node1:22:4\n", "colon gives the SSH port");
  file_bad("julia-zero", "0*node1\n", "N in N*host");
  file_bad("empty-dir", "node1 dir=\n", "empty");
  file_bad("dir-twice", "node1 dir=/a dir=/b\n", "given twice");
  file_bad("quote", "node1 dir=\"/a\n", "unclosed");
  file_bad("bad-host-line-3", "node1\nnode2\nno:de:x:y\n", "3:");
  file_bad("no-hosts", "# nothing\n\n", "lists no host");
  file_bad("differs", "node1 dir=/a\nnode1 dir=/b\n", "different dir");
  rc = distc__hosts_parse_file("/nonexistent/hosts", &h, &n);
  result(rc == DISTC_EINVAL && strstr(distc_errmsg(), "/nonexistent/hosts"),
         "host file: a missing file is named", distc_errmsg());

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

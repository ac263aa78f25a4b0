/* ssh.c — the SSH manager: workers on other hosts, started over one libssh
 * session per host (no `ssh` binary), plus optional local workers (-p).
 *
 * Phases, each bounded by the run's timeout:
 *   nodes   connect to every host (at most max_connecting at once, as sshd's
 *           MaxStartups expects), check its host key, authenticate, and
 *           start the bootstrap command right away (bootstrap_sh), so the
 *           login shell starts while other hosts still connect; `host:auto`
 *           hosts report their core count first;
 *   launch  send every bootstrap what to run, and the proxy it becomes
 *           (proxy.c: the program itself in its proxy role) the master's
 *           address and the secret, all over the channel; once every proxy
 *           said "hello" (which means it also reached the master), hand out
 *           launch indices and let each start its workers, without waiting
 *           for them: they start while the master does.
 * From launch on one I/O thread owns every session: it reads the proxies'
 * reports (worker exits, for reap), prints what they and their workers
 * write to stderr, tagged with the host, and in --tunnel mode carries the
 * workers' connections back to the master through reverse port forwards.
 *
 * Lifetime: the proxy stops its workers when its channel ends, and the
 * workers die with the proxy, so closing the sessions — or losing them
 * because this process was killed — leaves nothing behind. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ssh_api.h"

#include "common.h"
#include "hostspec.h"
#include "manager.h"
#include "proxy.h"

#define DEFAULT_MAX_CONNECTING 10 /* sshd's default MaxStartups */
#define DEFAULT_TIMEOUT_S 60.0
#define PROBE_MAX_MS 5000
#define KILL_GRACE_S 3.0 /* after SIGKILL, hosts that stay silent are cut */
#define TUNNEL_BUF 65536
#define IO_TICK_MS 1000
#define IO_BUSY_MS 20

/* The physical core count as cores.c computes it (distinct
 * thread_siblings_list, scaled by the CPUs this process may use), in
 * POSIX sh, for `host:auto`: prints "cores N". */
static const char cores_sh[] =
    "p=$(cat /sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list "
    "2>/dev/null | sort -u | wc -l); o=$(getconf _NPROCESSORS_ONLN); "
    "a=$(nproc 2>/dev/null || echo \"$o\"); [ \"$p\" -gt 0 ] 2>/dev/null || "
    "p=$o; c=$((p * a / o)); [ \"$c\" -ge 1 ] || c=1; echo \"cores $c\"; ";

/* The remote command, the same for every host and run: the login shell runs
 * `exec /bin/sh -c '<this>'` (so any login shell that understands that much
 * will do), started as soon as the host is authenticated, while the others
 * still connect.  It then reads from its stdin (the channel), one a line:
 *   D<dir>  X<exename>  A<argument>...  E<K=V>...  .
 * reports a missing directory or program as proxy "fail" lines, exports the
 * environment (so it applies to the program's own start, a LD_LIBRARY_PATH
 * included), and becomes the proxy, which reads the rest of stdin (proxy.h).
 * Nothing of the run is on a command line.  An end of file before the "."
 * means the host was dropped: exit quietly. */
static const char bootstrap_sh[] =
    "IFS= read -r d || exit 0; cd \"${d#D}\" 2>/dev/null || "
    "{ echo fail nodir; exit 1; }; IFS= read -r x || exit 0; x=${x#X}; "
    "case $x in */*) [ -f \"$x\" ] || { echo fail noexe; exit 1; }; "
    "[ -x \"$x\" ] || { echo fail noexec; exit 1; } ;; "
    "*) command -v \"$x\" >/dev/null 2>&1 || { echo fail noexe; exit 1; } ;; "
    "esac; set --; while IFS= read -r l; do case $l in A*) set -- \"$@\" "
    "\"${l#A}\" ;; E*) export \"${l#E}\" || exit 1 ;; .) break ;; esac; done "
    "&& [ \"$l\" = . ] || exit 0; DISTC_ROLE=" DISTC_ROLE_PROXY
    " exec \"$x\" \"$@\"";

static const distc__option ssh_options[] = {
    {"ssh-identity", true, "F",
     "private key to use (default: the SSH agent, then\nthe identity files "
     "of the ssh configuration)"},
    {"ssh-config", true, "F",
     "ssh_config file (default ~/.ssh/config and\n/etc/ssh/ssh_config)"},
    {"accept-new-hostkeys", false, NULL, "add keys of hosts not in known_hosts"},
    {"master-addr", true, "A",
     "address of this host the workers dial (default:\nthis host's address "
     "on each SSH connection)"},
    {"tunnel", false, NULL, "workers connect back through the SSH session"},
    {"max-connecting", true, "N", "hosts connected at once (default 10)"},
    {"allow-partial", false, NULL,
     "start on the hosts that work, leave out others"},
    {NULL, false, NULL, NULL},
};

/* Variables that mean something only where they were set. */
static bool never_forwarded(const char *kv) {
  return strncmp(kv, "SSH_", 4) == 0 || strncmp(kv, "DISPLAY=", 8) == 0;
}

/* ---- state ---- */

typedef struct tunnel_conn {
  struct tunnel_conn *next;
  ssh_channel ch;
  int fd; /* our connection to the master's listener */
  char to_fd[TUNNEL_BUF];
  size_t n_to_fd;
  char to_ch[TUNNEL_BUF];
  size_t n_to_ch;
  bool ch_eof, fd_eof, eof_sent, fd_shut;
} tunnel_conn;

typedef struct remote_worker {
  int index;
  long pid; /* on its host */
  bool running;
} remote_worker;

typedef enum host_phase {
  H_NEW,       /* not connected */
  H_CONNECTED, /* authenticated */
  H_STARTING,  /* proxy started, its hello awaited */
  H_HELLO,     /* proxy ready, workers not started */
  H_RUNNING,   /* workers started */
  H_DONE,      /* the proxy is gone */
  H_FAILED,
} host_phase;

typedef struct ssh_host {
  distc_host spec; /* owned */
  int at;          /* its index in the host list of prepare */
  char label[320]; /* user@host:port as written */
  ssh_session s;
  char local_addr[INET6_ADDRSTRLEN];
  host_phase phase;
  char *error; /* what went wrong, for the user; owned */
  bool dropped; /* --allow-partial left it out */
  bool closing; /* send EOF to the proxy once out is flushed */
  bool eof_sent;
  ssh_channel ctl;
  char *out; /* to the proxy, not yet written */
  size_t out_len, out_cap;
  char in[DISTC_PROXY_LINE_MAX]; /* from the proxy's stdout, partial line */
  size_t in_len;
  char err[4096]; /* from its stderr, partial line */
  size_t err_len;
  int first, count;
  remote_worker *w;
  int fwd_port; /* --tunnel: the port the remote sshd listens on */
  tunnel_conn *tunnels;
  double kill_deadline; /* 0: none */
} ssh_host;

typedef struct exit_rec {
  int index;
  long pid;
  int status;
} exit_rec;

typedef struct ssh_state {
  bool init;
  pthread_mutex_t lock;
  pthread_cond_t changed; /* CLOCK_MONOTONIC */
  /* options */
  char *identity, *config, *master_addr;
  bool accept_new, tunnel, partial, verbose, dry_run;
  int max_connecting;
  double timeout_s;
  /* hosts */
  ssh_host *h;
  int nh;
  int next_connect; /* nodes: the next host a connect thread takes */
  int connecting;   /* connect threads not finished */
  pthread_mutex_t kh_lock; /* known_hosts file updates */
  /* workers on this host, through the spawn launch half */
  int local_count;
  void *local; /* its state; NULL until used */
  /* after launch */
  bool launched;
  bool started; /* launch has returned: failures are printed, not returned */
  char *exe; /* what the workers run where no exename= says otherwise */
  char *dir; /* where they run where no dir= says otherwise */
  char master_host[256], master_port[16];
  pthread_t io;
  bool io_running, io_stop;
  int wake[2];
  int event[2];
  exit_rec *exits;
  size_t nexits, capexits;
} ssh_state;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int state_init(ssh_state *s) {
  if (s->init)
    return 0;
  int rc = distc__ssh_load();
  if (rc != 0)
    return rc;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->kh_lock, NULL);
  pthread_cond_init(&s->changed, &ca);
  pthread_condattr_destroy(&ca);
  s->wake[0] = s->wake[1] = s->event[0] = s->event[1] = -1;
  if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0 ||
      pipe2(s->event, O_CLOEXEC | O_NONBLOCK) != 0) {
    int e = errno;
    for (int i = 0; i < 2; i++) {
      if (s->wake[i] >= 0)
        close(s->wake[i]);
      s->wake[i] = -1;
    }
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->kh_lock);
    pthread_mutex_destroy(&s->lock);
    return distc__seterr(DISTC_EIO, "cannot create pipes: %s", strerror(e));
  }
  s->max_connecting = DEFAULT_MAX_CONNECTING;
  s->timeout_s = DEFAULT_TIMEOUT_S;
  s->init = true;
  return 0;
}

/* Waits on s->changed until deadline (monotonic seconds); lock held. */
static void wait_until(ssh_state *s, double deadline) {
  double left = deadline - now_s();
  if (left <= 0)
    return;
  if (left > 0.2)
    left = 0.2; /* re-check conditions that nobody signals (thread ends) */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  long long ns = (long long)ts.tv_nsec + (long long)(left * 1e9);
  ts.tv_sec += (time_t)(ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  pthread_cond_timedwait(&s->changed, &s->lock, &ts);
}

static void poke(int fd) {
  char c = 1;
  ssize_t n = write(fd, &c, 1);
  (void)n; /* a full pipe already holds a wake-up */
}

static void drain(int fd) {
  char buf[256];
  while (read(fd, buf, sizeof buf) > 0)
    ;
}

static void host_fail(ssh_host *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void host_fail(ssh_host *h, const char *fmt, ...) {
  if (h->error == NULL) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&h->error, fmt, ap) < 0)
      h->error = NULL;
    va_end(ap);
  }
  h->phase = H_FAILED;
}

/* Threads of ours take no signals: the launcher's main thread handles them
 * in its ppoll, and a program using distc_addprocs keeps its own. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return e;
}

/* ---- options ---- */

static int set_str(char **field, const char *value, const char *name) {
  if (value == NULL || value[0] == '\0')
    return distc__seterr(DISTC_EINVAL, "--%s needs a value", name);
  free(*field);
  *field = strdup(value);
  return *field ? 0 : distc__seterr(DISTC_ENOMEM, "out of memory");
}

static int ssh_set_option(void *state, const char *name, const char *value) {
  ssh_state *s = state;
  int rc = state_init(s);
  if (rc != 0)
    return rc;
  if (strcmp(name, "ssh-identity") == 0) {
    if (value == NULL || access(value, R_OK) != 0)
      return distc__seterr(DISTC_EINVAL,
                           "--ssh-identity %s: %s; give a readable private "
                           "key file",
                           value ? value : "", strerror(errno));
    return set_str(&s->identity, value, name);
  }
  if (strcmp(name, "ssh-config") == 0) {
    if (value == NULL || access(value, R_OK) != 0)
      return distc__seterr(DISTC_EINVAL,
                           "--ssh-config %s: %s; give a readable ssh_config "
                           "file",
                           value ? value : "", strerror(errno));
    return set_str(&s->config, value, name);
  }
  if (strcmp(name, "master-addr") == 0) {
    if (value == NULL || value[0] == '\0' ||
        strpbrk(value, " \t\r\n'") != NULL || strlen(value) > 200)
      return distc__seterr(DISTC_EINVAL,
                           "--master-addr wants a host name or address of "
                           "this host, got '%s'; e.g. --master-addr "
                           "10.0.0.1",
                           value ? value : "");
    return set_str(&s->master_addr, value, name);
  }
  if (strcmp(name, "max-connecting") == 0) {
    char *end;
    long n = value ? strtol(value, &end, 10) : 0;
    if (value == NULL || value[0] == '\0' || *end != '\0' || n < 1 ||
        n > 1024)
      return distc__seterr(DISTC_EINVAL,
                           "--max-connecting wants a number 1..1024, got "
                           "'%s'; e.g. --max-connecting 10",
                           value ? value : "");
    s->max_connecting = (int)n;
    return 0;
  }
  if (strcmp(name, "timeout") == 0) {
    double t = value ? atof(value) : 0;
    if (t > 0)
      s->timeout_s = t;
    return 0;
  }
  bool *flag = strcmp(name, "tunnel") == 0                ? &s->tunnel
               : strcmp(name, "accept-new-hostkeys") == 0 ? &s->accept_new
               : strcmp(name, "allow-partial") == 0       ? &s->partial
               : strcmp(name, "verbose") == 0             ? &s->verbose
               : strcmp(name, "dry-run") == 0             ? &s->dry_run
                                                          : NULL;
  if (flag == NULL)
    return distc__seterr(DISTC_EINVAL, "the ssh launcher takes no --%s", name);
  *flag = true;
  return 0;
}

/* ---- connecting (nodes) ---- */

static void fingerprint(ssh_session ss, char *buf, size_t len) {
  ssh_key key = NULL;
  unsigned char *hash = NULL;
  size_t hlen = 0;
  snprintf(buf, len, "(unknown)");
  if (ssh_get_server_publickey(ss, &key) != SSH_OK)
    return;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) ==
      0) {
    char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    if (fp != NULL) {
      snprintf(buf, len, "%s", fp);
      ssh_string_free_char(fp);
    }
    ssh_clean_pubkey_hash(&hash);
  }
  ssh_key_free(key);
}

static int check_host_key(ssh_state *s, ssh_host *h) {
  char fp[128];
  const char *name = h->spec.name;
  enum ssh_known_hosts_e k = ssh_session_is_known_server(h->s);
  switch (k) {
  case SSH_KNOWN_HOSTS_OK:
    return 0;
  case SSH_KNOWN_HOSTS_CHANGED:
  case SSH_KNOWN_HOSTS_OTHER:
    fingerprint(h->s, fp, sizeof fp);
    host_fail(h,
              "%s: HOST KEY MISMATCH: the host key it offers (%s) is not the "
              "one known_hosts holds for it%s; if %s was reinstalled, remove "
              "the old entry (ssh-keygen -R %s) and check the new key; "
              "otherwise someone may be intercepting the connection",
              h->label, fp,
              k == SSH_KNOWN_HOSTS_OTHER ? " (a key of another type is there)"
                                         : "",
              name, name);
    return -1;
  case SSH_KNOWN_HOSTS_NOT_FOUND:
  case SSH_KNOWN_HOSTS_UNKNOWN:
    fingerprint(h->s, fp, sizeof fp);
    if (s->accept_new) {
      pthread_mutex_lock(&s->kh_lock);
      int rc = ssh_session_update_known_hosts(h->s);
      pthread_mutex_unlock(&s->kh_lock);
      if (rc != SSH_OK) {
        host_fail(h, "%s: cannot add its host key to known_hosts: %s",
                  h->label, ssh_get_error(h->s));
        return -1;
      }
      if (s->verbose)
        distc__log_print("[%s] accepted new host key %s",
                h->label, fp);
      return 0;
    }
    host_fail(h,
              "%s: unknown host: its host key (%s) is not in known_hosts; "
              "check the key and add it (connect once with ssh, or "
              "ssh-keyscan), or pass --accept-new-hostkeys to accept keys of "
              "hosts never seen before",
              h->label, fp);
    return -1;
  case SSH_KNOWN_HOSTS_ERROR:
  default:
    host_fail(h, "%s: cannot check its host key: %s", h->label,
              ssh_get_error(h->s));
    return -1;
  }
}

static int authenticate(ssh_state *s, ssh_host *h) {
  int rc;
  if (s->identity != NULL) {
    ssh_key key = NULL;
    if (ssh_pki_import_privkey_file(s->identity, NULL, NULL, NULL, &key) !=
        SSH_OK) {
      host_fail(h,
                "%s: cannot read the private key %s (a key with a "
                "passphrase must be loaded into ssh-agent with ssh-add "
                "instead)",
                h->label, s->identity);
      return -1;
    }
    rc = ssh_userauth_publickey(h->s, NULL, key);
    ssh_key_free(key);
  } else {
    rc = ssh_userauth_publickey_auto(h->s, NULL, NULL);
  }
  if (rc == SSH_AUTH_SUCCESS)
    return 0;
  char *user = NULL;
  ssh_options_get(h->s, SSH_OPTIONS_USER, &user);
  if (rc == SSH_AUTH_PARTIAL)
    host_fail(h,
              "%s: the server wants more than a public key for user %s (a "
              "second factor), which distc cannot give; allow public key "
              "authentication alone for this user",
              h->label, user ? user : "?");
  else if (rc == SSH_AUTH_DENIED)
    host_fail(h,
              "%s: authentication refused for user %s (%s); add your public "
              "key to ~%s/.ssh/authorized_keys there, load your key into "
              "ssh-agent, or give the right one with --ssh-identity",
              h->label, user ? user : "?",
              s->identity ? s->identity
                          : "tried the SSH agent and the identity files",
              user ? user : "");
  else
    host_fail(h, "%s: authentication failed: %s", h->label,
              ssh_get_error(h->s));
  ssh_string_free_char(user);
  return -1;
}

/* The bootstrap command, quoted for the login shell. */
static char *bootstrap_command(bool with_cores) {
  char *cmd = NULL;
  if (asprintf(&cmd, "exec /bin/sh -c '%s%s'", with_cores ? cores_sh : "",
               bootstrap_sh) < 0)
    return NULL;
  return cmd;
}

/* Reads the "cores N" line of an `auto` host's bootstrap; keeps whatever
 * follows for the I/O thread.  Lines a login shell prints before are
 * skipped. */
static int read_cores(ssh_host *h, double deadline) {
  for (;;) {
    char *nl = memchr(h->in, '\n', h->in_len);
    if (nl != NULL) {
      *nl = '\0';
      long n = strncmp(h->in, "cores ", 6) == 0 ? strtol(h->in + 6, NULL, 10)
                                                : 0;
      size_t used = (size_t)(nl + 1 - h->in);
      memmove(h->in, nl + 1, h->in_len - used);
      h->in_len -= used;
      if (n > 0)
        return n > DISTC_HOST_MAX_SLOTS ? DISTC_HOST_MAX_SLOTS : (int)n;
      continue;
    }
    int left = (int)((deadline - now_s()) * 1000);
    if (left <= 0 || h->in_len == sizeof h->in)
      return -1;
    int r = ssh_channel_read_timeout(h->ctl, h->in + h->in_len,
                                     (uint32_t)(sizeof h->in - h->in_len), 0,
                                     left);
    if (r <= 0)
      return -1;
    h->in_len += (size_t)r;
  }
}

/* Opens the control channel and starts the bootstrap (and, for --tunnel,
 * the reverse forward), so the login shell's start overlaps the other
 * hosts' connecting; learns the core count of an `auto` host. */
static int start_bootstrap(ssh_state *s, ssh_host *h, double deadline) {
  bool cores = h->spec.slots == DISTC_SLOTS_AUTO;
  if (s->tunnel &&
      (ssh_channel_listen_forward(h->s, "127.0.0.1", 0, &h->fwd_port) !=
           SSH_OK ||
       h->fwd_port <= 0)) {
    host_fail(h,
              "%s: the SSH server refused to forward a port back (%s); "
              "--tunnel needs AllowTcpForwarding yes (or remote) in its "
              "sshd_config",
              h->label, ssh_get_error(h->s));
    return -1;
  }
  char *cmd = bootstrap_command(cores);
  h->ctl = cmd ? ssh_channel_new(h->s) : NULL;
  if (h->ctl == NULL || ssh_channel_open_session(h->ctl) != SSH_OK ||
      ssh_channel_request_exec(h->ctl, cmd) != SSH_OK) {
    host_fail(h, "%s: cannot start a command there: %s", h->label,
              ssh_get_error(h->s));
    free(cmd);
    return -1;
  }
  free(cmd);
  if (cores) {
    int n = read_cores(h, deadline);
    if (n < 1) {
      host_fail(h,
                "%s: could not learn its core count for 'auto' (no answer "
                "from a POSIX shell there); give a number instead",
                h->label);
      return -1;
    }
    h->spec.slots = n;
  }
  return 0;
}

static void local_address(ssh_host *h) {
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  int fd = ssh_get_fd(h->s);
  snprintf(h->local_addr, sizeof h->local_addr, "127.0.0.1");
  if (fd < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
    return;
  if (sa.ss_family == AF_INET)
    inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, h->local_addr,
              sizeof h->local_addr);
  else if (sa.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr,
              h->local_addr, sizeof h->local_addr);
}

/* Connects, checks the host key and authenticates one host; on failure
 * h->error says why.  Runs in a connect thread, without the state lock
 * (it touches only h). */
static void connect_host(ssh_state *s, ssh_host *h, double deadline) {
  double left = deadline - now_s();
  if (left < 0.1)
    left = 0.1;
  long sec = (long)left, usec = (long)((left - (double)sec) * 1e6);
  h->s = ssh_new();
  if (h->s == NULL) {
    host_fail(h, "%s: out of memory", h->label);
    return;
  }
  int verbosity = SSH_LOG_NOLOG, one = 1;
  bool no = false;
  ssh_options_set(h->s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
  ssh_options_set(h->s, SSH_OPTIONS_HOST, h->spec.name);
  /* The host's own settings (HostName, Port, User, IdentityFile,
   * UserKnownHostsFile) first; what the host list says wins over them. */
  if (ssh_options_parse_config(h->s, s->config) != 0) {
    host_fail(h, "%s: cannot read the ssh configuration %s: %s", h->label,
              s->config ? s->config : "(~/.ssh/config, /etc/ssh/ssh_config)",
              ssh_get_error(h->s));
    return;
  }
  ssh_options_set(h->s, SSH_OPTIONS_PROCESS_CONFIG, &no);
  if (h->spec.user != NULL)
    ssh_options_set(h->s, SSH_OPTIONS_USER, h->spec.user);
  if (h->spec.port > 0) {
    unsigned int port = (unsigned int)h->spec.port;
    ssh_options_set(h->s, SSH_OPTIONS_PORT, &port);
  }
  /* Every message here is small and waited for: without this, each round
   * trip of the handshake can sit out a delayed ACK (40 ms). */
  ssh_options_set(h->s, SSH_OPTIONS_NODELAY, &one);
  ssh_options_set(h->s, SSH_OPTIONS_TIMEOUT, &sec);
  ssh_options_set(h->s, SSH_OPTIONS_TIMEOUT_USEC, &usec);

  if (ssh_connect(h->s) != SSH_OK) {
    const char *e = ssh_get_error(h->s);
    if (now_s() >= deadline - 0.05 || strstr(e, "imeout") != NULL)
      host_fail(h,
                "%s: unreachable: no answer within %.3g s (%s); check the "
                "name and the network, and that sshd runs there",
                h->label, s->timeout_s, e);
    else
      host_fail(h,
                "%s: cannot connect: %s; check the host name (and the SSH "
                "port), and that sshd runs there",
                h->label, e);
    return;
  }
  if (check_host_key(s, h) != 0 || authenticate(s, h) != 0)
    return;
  local_address(h);
  if (start_bootstrap(s, h, deadline) != 0)
    return;
  h->phase = H_CONNECTED;
  if (s->verbose) {
    char *host = NULL;
    unsigned int port = 22;
    ssh_options_get(h->s, SSH_OPTIONS_HOST, &host);
    ssh_options_get_port(h->s, &port);
    distc__log_print(
            "[%s] connected to %s port %u, host key known, "
            "%d worker%s; this host is %s there",
            h->label, host ? host : h->spec.name, port, h->spec.slots,
            h->spec.slots == 1 ? "" : "s", h->local_addr);
    ssh_string_free_char(host);
  }
}

typedef struct connect_job {
  ssh_state *s;
  double deadline;
} connect_job;

static void *connect_main(void *arg) {
  connect_job *j = arg;
  ssh_state *s = j->s;
  pthread_mutex_lock(&s->lock);
  while (s->next_connect < s->nh && now_s() < j->deadline) {
    ssh_host *h = &s->h[s->next_connect++];
    pthread_mutex_unlock(&s->lock);
    connect_host(s, h, j->deadline);
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->changed);
  }
  s->connecting--;
  pthread_cond_broadcast(&s->changed);
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

static void host_disconnect(ssh_host *h) {
  if (h->ctl != NULL) {
    ssh_channel_close(h->ctl);
    ssh_channel_free(h->ctl);
    h->ctl = NULL;
  }
  if (h->s == NULL)
    return;
  ssh_disconnect(h->s);
  ssh_free(h->s);
  h->s = NULL;
}

/* Joins the failure messages of every failed host into the error. */
static int report_failures(ssh_state *s, const char *what) {
  int failed = 0;
  const char *first = NULL;
  for (int i = 0; i < s->nh; i++)
    if (s->h[i].phase == H_FAILED) {
      failed++;
      if (first == NULL)
        first = s->h[i].error;
    }
  int rc = distc__seterr(DISTC_ESPAWN, "%s", first ? first : what);
  for (int i = 0, k = 0; i < s->nh; i++)
    if (s->h[i].phase == H_FAILED && k++ > 0)
      distc__adderr("%s", s->h[i].error ? s->h[i].error : what);
  if (failed > 1)
    distc__adderr("(%d hosts failed; no worker was left running; "
                  "--allow-partial starts the others anyway)",
                  failed);
  return rc;
}

/* Connects to every host of the list that is not this one; settles the
 * slots of `auto` hosts, and with --allow-partial gives 0 slots to the hosts
 * left out. */
static int ssh_prepare(void *state, distc_host *hosts, int nhosts) {
  ssh_state *s = state;
  int rc = state_init(s);
  if (rc != 0)
    return rc;
  if (s->h != NULL)
    return distc__seterr(DISTC_ESTATE, "the ssh launcher prepared twice; "
                                       "this is a bug in distc");
  s->local_count = 0;
  s->h = calloc((size_t)nhosts + 1, sizeof *s->h);
  if (s->h == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  for (int i = 0; i < nhosts; i++) {
    if (hosts[i].here) {
      if (hosts[i].slots == DISTC_SLOTS_AUTO)
        hosts[i].slots = distc__host_cores();
      s->local_count += hosts[i].slots;
      continue;
    }
    ssh_host *h = &s->h[s->nh++];
    h->at = i;
    h->spec = hosts[i];
    h->spec.name = strdup(hosts[i].name);
    h->spec.user = hosts[i].user ? strdup(hosts[i].user) : NULL;
    h->spec.dir = hosts[i].dir ? strdup(hosts[i].dir) : NULL;
    h->spec.exename = hosts[i].exename ? strdup(hosts[i].exename) : NULL;
    if (h->spec.name == NULL || (hosts[i].user && !h->spec.user) ||
        (hosts[i].dir && !h->spec.dir) ||
        (hosts[i].exename && !h->spec.exename))
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    distc__host_label(&h->spec, h->label, sizeof h->label);
  }

  if (s->dry_run) {
    for (int i = 0; i < s->nh; i++) {
      if (s->h[i].spec.slots == DISTC_SLOTS_AUTO) {
        distc__log_print("[%s] auto: the core count is asked of the host "
                         "when connecting; counted as 1 here",
                         s->h[i].label);
        s->h[i].spec.slots = 1;
      }
      s->h[i].phase = H_CONNECTED;
    }
  } else if (s->nh > 0) {
    double deadline = now_s() + s->timeout_s;
    int nthreads = s->max_connecting < s->nh ? s->max_connecting : s->nh;
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    connect_job job = {s, deadline};
    if (t == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    int started = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < nthreads; i++) {
      if (start_thread(&t[i], connect_main, &job) != 0)
        break;
      started++;
      s->connecting++;
    }
    if (started == 0) {
      pthread_mutex_unlock(&s->lock);
      free(t);
      return distc__seterr(DISTC_EIO, "cannot start a thread to connect");
    }
    /* Threads end by themselves: each connect is bounded by the deadline
     * through libssh's timeout. */
    while (s->connecting > 0)
      wait_until(s, now_s() + 1);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < started; i++)
      pthread_join(t[i], NULL);
    free(t);
    for (int i = 0; i < s->nh; i++)
      if (s->h[i].phase == H_NEW)
        host_fail(&s->h[i], "%s: unreachable: not connected within %.3g s",
                  s->h[i].label, s->timeout_s);
  }

  int ok = 0;
  for (int i = 0; i < s->nh; i++)
    ok += s->h[i].phase == H_CONNECTED;
  if (ok < s->nh) {
    if (!s->partial || ok == 0) {
      rc = report_failures(s, "a host could not be connected");
      for (int i = 0; i < s->nh; i++)
        host_disconnect(&s->h[i]);
      return rc;
    }
    for (int i = 0; i < s->nh; i++)
      if (s->h[i].phase == H_FAILED) {
        distc__log(DISTC__LOG_WARN, "leaving out %s", s->h[i].error);
        s->h[i].dropped = true;
        host_disconnect(&s->h[i]);
      }
  }
  for (int i = 0; i < s->nh; i++)
    hosts[s->h[i].at].slots = s->h[i].dropped ? 0 : s->h[i].spec.slots;
  return 0;
}

/* ---- the control channel ---- */

static int out_append(ssh_host *h, const char *data, size_t n) {
  if (h->out_len + n > h->out_cap) {
    size_t cap = h->out_cap ? h->out_cap : 1024;
    while (cap < h->out_len + n)
      cap *= 2;
    char *grown = realloc(h->out, cap);
    if (grown == NULL)
      return DISTC_ENOMEM;
    h->out = grown;
    h->out_cap = cap;
  }
  memcpy(h->out + h->out_len, data, n);
  h->out_len += n;
  return 0;
}

static int out_line(ssh_host *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int out_line(ssh_host *h, const char *fmt, ...) {
  char *line = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return DISTC_ENOMEM;
  int rc = out_append(h, line, (size_t)n);
  if (rc == 0)
    rc = out_append(h, "\n", 1);
  free(line);
  return rc;
}

/* Whether kv can be exported by the remote shell: a variable name, '=', and
 * a value without a newline. */
static bool exportable(const char *kv) {
  const char *eq = strchr(kv, '=');
  if (eq == NULL || eq == kv || strchr(eq, '\n') != NULL)
    return false;
  if (!((kv[0] >= 'A' && kv[0] <= 'Z') || (kv[0] >= 'a' && kv[0] <= 'z') ||
        kv[0] == '_'))
    return false;
  for (const char *p = kv; p < eq; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
          (*p >= '0' && *p <= '9') || *p == '_'))
      return false;
  return true;
}

/* "word " + value escaped as proxy.h says. */
static int out_escaped(ssh_host *h, const char *word, const char *value) {
  int rc = out_append(h, word, strlen(word));
  if (rc == 0)
    rc = out_append(h, " ", 1);
  for (const char *p = value; *p && rc == 0; p++) {
    if (*p == '\\')
      rc = out_append(h, "\\\\", 2);
    else if (*p == '\n')
      rc = out_append(h, "\\n", 2);
    else
      rc = out_append(h, p, 1);
  }
  if (rc == 0)
    rc = out_append(h, "\n", 1);
  return rc;
}

static int queue_config(ssh_state *s, ssh_host *h,
                        const distc_launch_spec *spec, const char *master) {
  char hex[2 * DISTC_SECRET_LEN + 1];
  for (int i = 0; i < DISTC_SECRET_LEN; i++)
    snprintf(hex + 2 * i, 3, "%02x", spec->secret[i]);
  const char *exe = h->spec.exename ? h->spec.exename : spec->exename;
  int probe = (int)(s->timeout_s * 1000 / 2);
  if (probe > PROBE_MAX_MS)
    probe = PROBE_MAX_MS;
  if (probe < 1)
    probe = 1;
  /* First what the bootstrap reads (bootstrap_sh).  The environment's
   * allow list is --env, then the BLAS counts and the DISTC_* user settings
   * of this environment if set; never the rest of it. */
  const char *dir = h->spec.dir ? h->spec.dir : s->dir;
  int rc = out_line(h, "D%s", dir);
  if (rc == 0)
    rc = out_line(h, "X%s", exe);
  for (size_t i = 1; spec->argv && spec->argv[0] && spec->argv[i] && rc == 0;
       i++)
    rc = out_line(h, "A%s", spec->argv[i]);
  if (rc == 0)
    rc = out_line(h, "E%s=%.17g", DISTC_ENV_TIMEOUT, s->timeout_s);
  for (size_t i = 0; spec->env && spec->env[i] && rc == 0; i++)
    if (!never_forwarded(spec->env[i]))
      rc = out_line(h, "E%s", spec->env[i]);
  static const char *const pass[] = {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                     "DISTC_LOG", "DISTC_MAX_FRAME"};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(pass) && rc == 0; i++) {
    const char *v = getenv(pass[i]);
    size_t k = strlen(pass[i]);
    bool given = false;
    for (size_t j = 0; spec->env && spec->env[j]; j++)
      given |= strncmp(spec->env[j], pass[i], k) == 0 && spec->env[j][k] == '=';
    if (v != NULL && !given && strchr(v, '\n') == NULL)
      rc = out_line(h, "E%s=%s", pass[i], v);
  }
  if (rc == 0)
    rc = out_line(h, ".");
  if (rc == 0)
    rc = out_line(h, "%s", DISTC_PROXY_HEADER);
  if (rc == 0)
    rc = out_line(h, "master %s", master);
  if (rc == 0)
    rc = out_line(h, "secret %s", hex);
  if (rc == 0)
    rc = out_escaped(h, "exe", exe);
  if (rc == 0 && spec->blas_auto)
    rc = out_line(h, "blas auto");
  else if (rc == 0)
    rc = out_line(h, "blas %d", spec->blas_threads);
  if (rc == 0)
    rc = out_line(h, "probe %d", probe);
  if (rc == 0)
    rc = out_line(h, "end");
  explicit_bzero(hex, sizeof hex);
  return rc;
}

static remote_worker *find_worker(ssh_host *h, int index) {
  for (int i = 0; i < h->count; i++)
    if (h->w[i].index == index)
      return &h->w[i];
  return NULL;
}

static void record_exit(ssh_state *s, int index, long pid, int status) {
  if (s->nexits == s->capexits) {
    size_t cap = s->capexits ? s->capexits * 2 : 64;
    exit_rec *grown = realloc(s->exits, cap * sizeof *grown);
    if (grown == NULL)
      return; /* the worker still counts as gone; only its status is lost */
    s->exits = grown;
    s->capexits = cap;
  }
  s->exits[s->nexits++] = (exit_rec){index, pid, status};
  poke(s->event[1]);
}

/* What a proxy's "fail" line means for the user. */
static void proxy_failed(const ssh_state *s, ssh_host *h, const char *what) {
  const char *exe = h->spec.exename ? h->spec.exename : s->exe;
  const char *hdir = h->spec.dir ? h->spec.dir : s->dir;
  if (strcmp(what, "nodir") == 0)
    host_fail(h,
              "%s: the directory %s does not exist there; create it, or give "
              "this host its own dir= in a --hostfile",
              h->label, hdir);
  else if (strcmp(what, "noexe") == 0)
    host_fail(h,
              "%s: the program %s is not there (looked for from %s); install "
              "it at that path, or give this host its own exename= in a "
              "--hostfile",
              h->label, exe, hdir);
  else if (strcmp(what, "noexec") == 0)
    host_fail(h,
              "%s: the program %s there is not executable; make it so "
              "(chmod +x) or give this host its own exename= in a --hostfile",
              h->label, exe);
  else if (strncmp(what, "unreachable ", 12) == 0)
    host_fail(h,
              "%s: workers there cannot reach the master at %s; give "
              "--master-addr with an address of this host that %s can "
              "reach, or --tunnel to connect back through the SSH session",
              h->label, what + 12, h->spec.name);
  else
    host_fail(h, "%s: %s", h->label, what);
}

static void handle_line(ssh_state *s, ssh_host *h, char *line) {
  int index, status;
  long pid;
  if (strncmp(line, "hello ", 6) == 0 && h->phase == H_STARTING) {
    h->phase = H_HELLO;
    if (s->verbose)
      distc__log_print("[%s] proxy ready (pid, cores: %s)",
              h->label, line + 6);
  } else if (sscanf(line, "started %d %ld", &index, &pid) == 2) {
    remote_worker *w = find_worker(h, index);
    if (w != NULL) {
      w->pid = pid;
      w->running = true;
    }
  } else if (strcmp(line, "running") == 0 && h->phase == H_HELLO) {
    h->phase = H_RUNNING;
    if (s->verbose)
      distc__log_print("[%s] workers %d..%d started",
              h->label, h->first, h->first + h->count - 1);
  } else if (sscanf(line, "exit %d %d", &index, &status) == 2) {
    remote_worker *w = find_worker(h, index);
    if (w != NULL && w->running) {
      w->running = false;
      record_exit(s, index, w->pid, status);
    }
  } else if (strncmp(line, "fail ", 5) == 0) {
    proxy_failed(s, h, line + 5);
    if (s->started && h->error != NULL)
      distc__log(DISTC__LOG_ERROR, "%s", h->error);
  }
  pthread_cond_broadcast(&s->changed);
}

/* Prints complete lines of buf, each tagged with the host, in one write. */
static void print_tagged(ssh_host *h, char *buf, size_t *len, bool flush) {
  for (;;) {
    char *nl = memchr(buf, '\n', *len);
    size_t n;
    if (nl != NULL)
      n = (size_t)(nl - buf);
    else if (flush && *len > 0)
      n = *len;
    else
      return;
    char *line = NULL;
    int k = asprintf(&line, "      From %s:\t%.*s\n", h->label, (int)n, buf);
    if (k > 0) {
      ssize_t w = write(STDERR_FILENO, line, (size_t)k);
      (void)w;
    }
    free(line);
    size_t used = nl ? n + 1 : n;
    memmove(buf, buf + used, *len - used);
    *len -= used;
  }
}

/* Marks every worker of h that is still running as gone (unknown status):
 * its host can no longer tell us. */
static void lose_workers(ssh_state *s, ssh_host *h) {
  for (int i = 0; i < h->count; i++)
    if (h->w[i].running) {
      h->w[i].running = false;
      record_exit(s, h->w[i].index, h->w[i].pid, -1);
    }
}

static void close_tunnel(tunnel_conn *t) {
  if (t->ch != NULL) {
    ssh_channel_close(t->ch);
    ssh_channel_free(t->ch);
  }
  if (t->fd >= 0)
    close(t->fd);
  free(t);
}

/* The proxy ended (or the session did). */
static void proxy_gone(ssh_state *s, ssh_host *h) {
  if (h->ctl != NULL) {
    int st = ssh_channel_get_exit_status(h->ctl);
    if (h->phase == H_STARTING && h->error == NULL) {
      const char *exe = h->spec.exename ? h->spec.exename : s->exe;
      if (st >= 0)
        host_fail(h,
                  "%s: %s exited with status %d before it answered; is it "
                  "linked with libdistc, does it call distc_init() first, and "
                  "is it the same build as here?",
                  h->label, exe, st);
      else
        host_fail(h, "%s: the connection ended before %s answered",
                  h->label, exe);
    }
    ssh_channel_close(h->ctl);
    ssh_channel_free(h->ctl);
    h->ctl = NULL;
  }
  print_tagged(h, h->err, &h->err_len, true);
  while (h->tunnels) {
    tunnel_conn *t = h->tunnels;
    h->tunnels = t->next;
    close_tunnel(t);
  }
  lose_workers(s, h);
  if (h->phase != H_FAILED) {
    if (h->phase < H_RUNNING && h->error == NULL)
      host_fail(h, "%s: the connection was lost during the start", h->label);
    else
      h->phase = H_DONE;
  }
  pthread_cond_broadcast(&s->changed);
}

static void flush_out(ssh_host *h) {
  while (h->out_len > 0) {
    uint32_t win = ssh_channel_window_size(h->ctl);
    if (win == 0)
      return;
    uint32_t n = h->out_len < win ? (uint32_t)h->out_len : win;
    int w = ssh_channel_write(h->ctl, h->out, n);
    if (w <= 0)
      return;
    memmove(h->out, h->out + w, h->out_len - (size_t)w);
    h->out_len -= (size_t)w;
  }
  if (h->closing && !h->eof_sent) {
    ssh_channel_send_eof(h->ctl);
    h->eof_sent = true;
  }
}

/* Moves bytes both ways between a forwarded channel and the master; reads
 * only as much as the other side can take (flow control).  Returns false
 * when the connection is finished. */
static bool pump_tunnel(tunnel_conn *t) {
  bool progress = true;
  while (progress) {
    progress = false;
    if (!t->ch_eof && t->n_to_fd < sizeof t->to_fd) {
      int r = ssh_channel_read_nonblocking(t->ch, t->to_fd + t->n_to_fd,
                                           (uint32_t)(sizeof t->to_fd -
                                                      t->n_to_fd),
                                           0);
      if (r > 0) {
        t->n_to_fd += (size_t)r;
        progress = true;
      } else if (r < 0 || ssh_channel_is_eof(t->ch)) {
        t->ch_eof = true;
      }
    }
    if (t->n_to_fd > 0) {
      ssize_t w = send(t->fd, t->to_fd, t->n_to_fd, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        memmove(t->to_fd, t->to_fd + w, t->n_to_fd - (size_t)w);
        t->n_to_fd -= (size_t)w;
        progress = true;
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
      }
    }
    if (t->ch_eof && t->n_to_fd == 0 && !t->fd_shut) {
      shutdown(t->fd, SHUT_WR);
      t->fd_shut = true;
    }
    if (!t->fd_eof && t->n_to_ch < sizeof t->to_ch) {
      ssize_t r = recv(t->fd, t->to_ch + t->n_to_ch,
                       sizeof t->to_ch - t->n_to_ch, MSG_DONTWAIT);
      if (r > 0) {
        t->n_to_ch += (size_t)r;
        progress = true;
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        t->fd_eof = true;
      }
    }
    if (t->n_to_ch > 0) {
      uint32_t win = ssh_channel_window_size(t->ch);
      if (win > 0) {
        uint32_t n = t->n_to_ch < win ? (uint32_t)t->n_to_ch : win;
        int w = ssh_channel_write(t->ch, t->to_ch, n);
        if (w < 0)
          return false;
        if (w > 0) {
          memmove(t->to_ch, t->to_ch + w, t->n_to_ch - (size_t)w);
          t->n_to_ch -= (size_t)w;
          progress = true;
        }
      }
    }
    if (t->fd_eof && t->n_to_ch == 0 && !t->eof_sent) {
      ssh_channel_send_eof(t->ch);
      t->eof_sent = true;
    }
  }
  if (ssh_channel_is_closed(t->ch))
    return false;
  return !(t->ch_eof && t->fd_eof && t->n_to_fd == 0 && t->n_to_ch == 0);
}

/* A new connection to the master for a forwarded channel. */
static int dial_master(const ssh_state *s) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                  *res;
  if (getaddrinfo(s->master_host, s->master_port, &hints, &res) != 0)
    return -1;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
}

/* Everything the I/O thread does for one host; lock held.  Returns true
 * when it still has work that no descriptor will announce. */
static bool service_host(ssh_state *s, ssh_host *h) {
  if (h->s == NULL || h->ctl == NULL)
    return false;
  bool busy = false;
  flush_out(h);
  busy |= h->out_len > 0;
  char buf[8192];
  for (int stream = 0; stream < 2; stream++) {
    for (;;) {
      int r = ssh_channel_read_nonblocking(h->ctl, buf, sizeof buf, stream);
      if (r <= 0)
        break;
      for (int i = 0; i < r; i++) {
        if (stream == 1) {
          if (h->err_len == sizeof h->err) {
            print_tagged(h, h->err, &h->err_len, true);
          }
          h->err[h->err_len++] = buf[i];
          continue;
        }
        if (buf[i] == '\n') {
          h->in[h->in_len] = '\0';
          handle_line(s, h, h->in);
          h->in_len = 0;
        } else if (h->in_len < sizeof h->in - 1) {
          h->in[h->in_len++] = buf[i];
        }
      }
      if (stream == 1)
        print_tagged(h, h->err, &h->err_len, false);
    }
  }
  if (s->tunnel && h->fwd_port > 0) {
    ssh_channel ch;
    int dport;
    while ((ch = ssh_channel_open_forward_port(h->s, 0, &dport, NULL, NULL)) !=
           NULL) {
      tunnel_conn *t = calloc(1, sizeof *t);
      int fd = t ? dial_master(s) : -1;
      if (fd < 0) {
        free(t);
        ssh_channel_close(ch);
        ssh_channel_free(ch);
        continue;
      }
      t->ch = ch;
      t->fd = fd;
      t->next = h->tunnels;
      h->tunnels = t;
    }
    for (tunnel_conn **pt = &h->tunnels; *pt;) {
      tunnel_conn *t = *pt;
      if (!pump_tunnel(t)) {
        *pt = t->next;
        close_tunnel(t);
        continue;
      }
      busy |= t->n_to_ch > 0;
      pt = &t->next;
    }
  }
  if (h->kill_deadline > 0 && now_s() > h->kill_deadline) {
    /* SIGKILL was sent and the host is silent: stop waiting for it.  The
     * session's end makes its proxy stop whatever is left. */
    lose_workers(s, h);
    h->kill_deadline = 0;
  }
  /* The exit status follows the end of output: wait for it, or the close. */
  if (ssh_channel_is_closed(h->ctl) ||
      (ssh_get_status(h->s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) ||
      (ssh_channel_is_eof(h->ctl) &&
       ssh_channel_get_exit_status(h->ctl) != -1))
    proxy_gone(s, h);
  return busy;
}

static void *io_main(void *arg) {
  ssh_state *s = arg;
  struct pollfd *fds = NULL;
  size_t cap = 0;
  pthread_mutex_lock(&s->lock);
  while (!s->io_stop) {
    bool busy = false;
    for (int i = 0; i < s->nh; i++)
      busy |= service_host(s, &s->h[i]);
    size_t need = 1;
    for (int i = 0; i < s->nh; i++) {
      need += s->h[i].ctl != NULL;
      for (tunnel_conn *t = s->h[i].tunnels; t; t = t->next)
        need++;
    }
    if (need > cap) {
      struct pollfd *grown = realloc(fds, need * sizeof *fds);
      if (grown == NULL) {
        busy = true;
        need = 0;
      } else {
        fds = grown;
        cap = need;
      }
    }
    size_t n = 0;
    if (need > 0) {
      fds[n++] = (struct pollfd){s->wake[0], POLLIN, 0};
      for (int i = 0; i < s->nh; i++) {
        ssh_host *h = &s->h[i];
        /* A session whose proxy is gone has nothing more to say, and its
         * socket may poll readable forever (the peer's end). */
        if (h->ctl == NULL)
          continue;
        short ev = POLLIN;
        if (ssh_get_poll_flags(h->s) & SSH_WRITE_PENDING)
          ev |= POLLOUT;
        fds[n++] = (struct pollfd){ssh_get_fd(h->s), ev, 0};
        for (tunnel_conn *t = h->tunnels; t; t = t->next) {
          short tev = 0;
          if (!t->fd_eof && t->n_to_ch < sizeof t->to_ch)
            tev |= POLLIN;
          if (t->n_to_fd > 0)
            tev |= POLLOUT;
          fds[n++] = (struct pollfd){t->fd, tev, 0};
        }
      }
    }
    bool kill_pending = false;
    for (int i = 0; i < s->nh; i++)
      kill_pending |= s->h[i].kill_deadline > 0;
    pthread_mutex_unlock(&s->lock);
    poll(fds, n, busy || kill_pending ? IO_BUSY_MS : IO_TICK_MS);
    drain(s->wake[0]);
    pthread_mutex_lock(&s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  free(fds);
  return NULL;
}

/* ---- launch ---- */

/* How many remote hosts are still in `phase`; lock held. */
static int count_phase(const ssh_state *s, host_phase phase) {
  int n = 0;
  for (int i = 0; i < s->nh; i++)
    n += !s->h[i].dropped && s->h[i].phase == phase;
  return n;
}

/* Sends a connected host its instructions and the proxy configuration
 * (nothing blocks: the I/O thread writes them). */
static int open_proxy(ssh_state *s, ssh_host *h,
                      const distc_launch_spec *spec) {
  char master[512];
  const char *exe = h->spec.exename ? h->spec.exename : s->exe;
  const char *dir = h->spec.dir ? h->spec.dir : s->dir;
  if (s->tunnel)
    snprintf(master, sizeof master, "127.0.0.1:%d", h->fwd_port);
  else
    snprintf(master, sizeof master, "%s:%s",
             s->master_addr ? s->master_addr : h->local_addr, s->master_port);
  if (spec->verbose || spec->dry_run) {
    char *cmd = bootstrap_command(false);
    distc__log_print("[%s] ssh %s %s", h->label, h->label,
            cmd ? cmd : "(out of memory)");
    free(cmd);
    distc__log_print(
            "[%s] then, over the channel: cd %s, run %s as "
            "the proxy, its workers dial the master at %s",
            h->label, dir, exe,
            spec->dry_run
                ? (s->tunnel ? "127.0.0.1:<forwarded port>"
                   : s->master_addr
                       ? s->master_addr
                       : "<this host's address as seen from there>:<port>")
                : master);
  }
  if (spec->dry_run)
    return 0;
  if (queue_config(s, h, spec, master) != 0) {
    host_fail(h, "%s: out of memory", h->label);
    return -1;
  }
  h->phase = H_STARTING;
  ssh_set_blocking(h->s, 0);
  return 0;
}

/* Stops what launch started: remote workers are killed, proxies told to
 * end, and we wait (bounded) for their reports; local workers killed. */
static void abort_launch(ssh_state *s) {
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->ctl == NULL)
      continue;
    char line[32];
    snprintf(line, sizeof line, "signal %d\n", SIGKILL);
    out_append(h, line, strlen(line));
    h->closing = true;
  }
  poke(s->wake[1]);
  double deadline = now_s() + KILL_GRACE_S;
  for (;;) {
    int running = 0;
    for (int i = 0; i < s->nh; i++)
      for (int k = 0; k < s->h[i].count; k++)
        running += s->h[i].w[k].running;
    bool open = false;
    for (int i = 0; i < s->nh; i++)
      open |= s->h[i].ctl != NULL;
    if ((running == 0 && !open) || now_s() >= deadline || !s->io_running)
      break;
    wait_until(s, deadline);
  }
  pthread_mutex_unlock(&s->lock);
  if (s->local != NULL) {
    distc__launch_spawn.signal(s->local, SIGKILL);
    while (distc__launch_spawn.reap(s->local, NULL, NULL) > 0)
      ; /* SIGKILLed children of ours: each reap waits for what has ended */
  }
}

static int ssh_launch(void *state, const distc_launch_spec *spec) {
  ssh_state *s = state;
  int rc;
  if (s->h == NULL)
    return distc__seterr(DISTC_ESTATE, "the ssh manager launches only after "
                                       "nodes(); this is a bug in distc");
  if (s->launched)
    return distc__seterr(DISTC_ESTATE,
                         "the ssh manager starts workers once per instance; "
                         "open another for more");
  s->launched = true;

  /* Where the master listens: the port for everyone, the host for --tunnel
   * (the far end of the forwarded connections). */
  const char *colon = strrchr(spec->master_addr, ':');
  if (colon == NULL || colon == spec->master_addr ||
      (size_t)(colon - spec->master_addr) >= sizeof s->master_host)
    return distc__seterr(DISTC_EINVAL, "bad master address '%s'",
                         spec->master_addr);
  memcpy(s->master_host, spec->master_addr,
         (size_t)(colon - spec->master_addr));
  s->master_host[colon - spec->master_addr] = '\0';
  snprintf(s->master_port, sizeof s->master_port, "%s", colon + 1);

  char cwd[PATH_MAX];
  const char *dir = spec->dir;
  if (dir == NULL)
    dir = getcwd(cwd, sizeof cwd) ? cwd : ".";
  s->dir = strdup(dir);
  s->exe = strdup(spec->exename);
  if (s->dir == NULL || s->exe == NULL)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  /* The bootstrap reads them a line each. */
  for (size_t i = 1; spec->argv && spec->argv[0] && spec->argv[i]; i++)
    if (strchr(spec->argv[i], '\n') != NULL)
      return distc__seterr(DISTC_EINVAL,
                           "argument %zu of the program has a newline, which "
                           "cannot be passed to other hosts",
                           i);
  bool newline = strchr(s->dir, '\n') || strchr(s->exe, '\n');
  for (int i = 0; i < s->nh; i++)
    newline |= (s->h[i].spec.dir && strchr(s->h[i].spec.dir, '\n')) ||
               (s->h[i].spec.exename && strchr(s->h[i].spec.exename, '\n'));
  if (newline)
    return distc__seterr(DISTC_EINVAL, "a directory or program path with a "
                                       "newline cannot be used on other "
                                       "hosts");
  for (size_t i = 0; spec->env && spec->env[i]; i++) {
    if (!exportable(spec->env[i]))
      return distc__seterr(DISTC_EINVAL,
                           "--env %.*s cannot be passed to other hosts: the "
                           "name must be a shell variable name and the value "
                           "one line",
                           (int)strcspn(spec->env[i], "="), spec->env[i]);
    if (never_forwarded(spec->env[i]) && s->nh > 0)
      distc__log(DISTC__LOG_WARN,
              "--env %.*s is not passed to other hosts "
              "(SSH_* and DISPLAY mean something only here)",
              (int)strcspn(spec->env[i], "="), spec->env[i]);
  }

  int local = s->local_count < spec->count ? s->local_count : spec->count;
  if (local > 0) {
    /* This host's workers are children of ours, as the local manager's. */
    s->local = calloc(1, distc__launch_spawn.state_size);
    if (s->local == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory");
    distc_launch_spec ls = *spec;
    ls.count = local;
    ls.started = NULL;
    ls.hosts = NULL;
    ls.nhosts = 0;
    if ((rc = distc__launch_spawn.launch(s->local, &ls)) != 0)
      return rc;
  }

  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->dropped)
      continue;
    open_proxy(s, h, spec);
  }
  if (spec->dry_run) {
    if (spec->started)
      *spec->started = spec->count;
    return 0;
  }

  if (start_thread(&s->io, io_main, s) != 0) {
    rc = distc__seterr(DISTC_EIO, "cannot start the SSH I/O thread");
    goto fail;
  }
  s->io_running = true;

  /* Phase 1: every proxy says hello (or fails). */
  double deadline = now_s() + s->timeout_s;
  pthread_mutex_lock(&s->lock);
  poke(s->wake[1]);
  while (count_phase(s, H_STARTING) > 0 && now_s() < deadline)
    wait_until(s, deadline);
  for (int i = 0; i < s->nh; i++)
    if (!s->h[i].dropped && s->h[i].phase == H_STARTING)
      host_fail(&s->h[i],
                "%s: the program did not answer within %.3g s; raise "
                "--timeout if the host is slow",
                s->h[i].label, s->timeout_s);
  int failed = count_phase(s, H_FAILED);
  int ok = count_phase(s, H_HELLO);
  if (failed > 0 && (!s->partial || ok + local == 0)) {
    rc = report_failures(s, "a host could not start its workers");
    pthread_mutex_unlock(&s->lock);
    goto fail;
  }

  /* Phase 2: indices, contiguous after the local workers. */
  int next = spec->first_index + local;
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->dropped)
      continue;
    if (h->phase == H_FAILED) {
      distc__log(DISTC__LOG_WARN, "leaving out %s", h->error);
      h->dropped = true;
      h->closing = true;
      continue;
    }
    int want = spec->first_index + spec->count - next;
    int count = h->spec.slots < want ? h->spec.slots : want;
    h->first = next;
    if (count <= 0) {
      h->closing = true;
      h->dropped = true;
      continue;
    }
    h->w = calloc((size_t)count, sizeof *h->w);
    if (h->w == NULL) {
      rc = distc__seterr(DISTC_ENOMEM, "out of memory");
      pthread_mutex_unlock(&s->lock);
      goto fail;
    }
    h->count = count;
    /* Running from now on: they count for reap until their proxy reports
     * them gone, or is gone itself. */
    for (int k = 0; k < h->count; k++)
      h->w[k] = (remote_worker){.index = next + k, .running = true};
    next += h->count;
    out_line(h, "start %d %d", h->first, h->count);
  }
  /* Not waited for: the workers start while the master does.  A proxy
   * that cannot start one says so (the I/O thread prints it), and the
   * worker counts as exited before connecting, which fails the start. */
  s->started = true;
  poke(s->wake[1]);
  pthread_mutex_unlock(&s->lock);
  int started = next - spec->first_index;
  if (spec->started != NULL)
    *spec->started = started;
  else if (started < spec->count) {
    rc = distc__seterr(DISTC_ESPAWN, "only %d of %d workers could be started",
                       started, spec->count);
    goto fail;
  }
  return 0;

fail:;
  /* The message survives the teardown, which may set errors of its own. */
  char *msg = strdup(distc_errmsg());
  abort_launch(s);
  distc__seterr(rc, "%s", msg ? msg : distc_strerror(rc));
  free(msg);
  return rc;
}

/* ---- signal, reap, teardown ---- */

static int ssh_signal(void *state, int sig) {
  ssh_state *s = state;
  if (s->local != NULL)
    distc__launch_spawn.signal(s->local, sig);
  if (!s->init)
    return 0;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    if (h->ctl == NULL || h->dropped)
      continue;
    out_line(h, "signal %d", sig);
    if (sig == SIGKILL && h->kill_deadline == 0)
      h->kill_deadline = now_s() + KILL_GRACE_S;
  }
  pthread_mutex_unlock(&s->lock);
  poke(s->wake[1]);
  return 0;
}

static int ssh_reap(void *state, distc_exit_cb cb, void *arg) {
  ssh_state *s = state;
  int running = 0;
  if (s->local != NULL)
    running += distc__launch_spawn.reap(s->local, cb, arg);
  if (!s->init)
    return running;
  drain(s->event[0]);
  pthread_mutex_lock(&s->lock);
  exit_rec *ex = s->exits;
  size_t nex = s->nexits;
  s->exits = NULL;
  s->nexits = s->capexits = 0;
  for (int i = 0; i < s->nh; i++)
    for (int k = 0; k < s->h[i].count; k++)
      running += s->h[i].w[k].running;
  pthread_mutex_unlock(&s->lock);
  for (size_t i = 0; cb && i < nex; i++)
    cb(arg, ex[i].index, (pid_t)ex[i].pid, ex[i].status);
  free(ex);
  return running;
}

static int ssh_event_fd(void *state) {
  ssh_state *s = state;
  return s->init ? s->event[0] : -1;
}

static void ssh_destroy(void *state) {
  ssh_state *s = state;
  if (!s->init)
    return;
  if (s->io_running) {
    /* Let the proxies hear the end of their channels first. */
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->nh; i++)
      if (s->h[i].ctl != NULL)
        s->h[i].closing = true;
    s->io_stop = true;
    pthread_mutex_unlock(&s->lock);
    poke(s->wake[1]);
    pthread_join(s->io, NULL);
    s->io_running = false;
  }
  for (int i = 0; i < s->nh; i++) {
    ssh_host *h = &s->h[i];
    while (h->tunnels) {
      tunnel_conn *t = h->tunnels;
      h->tunnels = t->next;
      close_tunnel(t);
    }
    host_disconnect(h);
    free(h->error);
    free(h->out);
    free(h->w);
    free(h->spec.name);
    free(h->spec.user);
    free(h->spec.dir);
    free(h->spec.exename);
  }
  free(s->h);
  if (s->local != NULL) {
    distc__launch_spawn.destroy(s->local);
    free(s->local);
  }
  free(s->identity);
  free(s->config);
  free(s->master_addr);
  free(s->exe);
  free(s->dir);
  free(s->exits);
  for (int i = 0; i < 2; i++) {
    if (s->wake[i] >= 0)
      close(s->wake[i]);
    if (s->event[i] >= 0)
      close(s->event[i]);
  }
  pthread_cond_destroy(&s->changed);
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->kh_lock);
  memset(s, 0, sizeof *s);
}

const distc__launch_ops distc__launch_ssh = {
    .name = "ssh",
    .title = "starting workers over SSH (libssh, no ssh binary)",
    .options = ssh_options,
    .state_size = sizeof(ssh_state),
    .set_option = ssh_set_option,
    .event_fd = ssh_event_fd,
    .prepare = ssh_prepare,
    .launch = ssh_launch,
    .signal = ssh_signal,
    .reap = ssh_reap,
    .destroy = ssh_destroy,
};

/* ssh_session.c — one host's SSH session (libssh, no ssh binary): connect
 * with the host's ssh_config settings, check its host key against
 * known_hosts, authenticate with a public key, and start the bootstrap
 * command right away, so the login shell starts while other hosts still
 * connect; an `auto` host reports its core count first. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "hostspec.h"
#include "ssh.h"

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
    distc__plink_fail(&h->p,
              "%s: HOST KEY MISMATCH: the host key it offers (%s) is not the "
              "one known_hosts holds for it%s; if %s was reinstalled, remove "
              "the old entry (ssh-keygen -R %s) and check the new key; "
              "otherwise someone may be intercepting the connection",
              h->p.label, fp,
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
        distc__plink_fail(&h->p, "%s: cannot add its host key to known_hosts: %s",
                  h->p.label, ssh_get_error(h->s));
        return -1;
      }
      if (s->verbose)
        distc__log_print("[%s] accepted new host key %s",
                h->p.label, fp);
      return 0;
    }
    distc__plink_fail(&h->p,
              "%s: unknown host: its host key (%s) is not in known_hosts; "
              "check the key and add it (connect once with ssh, or "
              "ssh-keyscan), or pass --accept-new-hostkeys to accept keys of "
              "hosts never seen before",
              h->p.label, fp);
    return -1;
  case SSH_KNOWN_HOSTS_ERROR:
  default:
    distc__plink_fail(&h->p, "%s: cannot check its host key: %s", h->p.label,
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
      distc__plink_fail(&h->p,
                "%s: cannot read the private key %s (a key with a "
                "passphrase must be loaded into ssh-agent with ssh-add "
                "instead)",
                h->p.label, s->identity);
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
    distc__plink_fail(&h->p,
              "%s: the server wants more than a public key for user %s (a "
              "second factor), which distc cannot give; allow public key "
              "authentication alone for this user",
              h->p.label, user ? user : "?");
  else if (rc == SSH_AUTH_DENIED)
    distc__plink_fail(&h->p,
              "%s: authentication refused for user %s (%s); add your public "
              "key to ~%s/.ssh/authorized_keys there, load your key into "
              "ssh-agent, or give the right one with --ssh-identity",
              h->p.label, user ? user : "?",
              s->identity ? s->identity
                          : "tried the SSH agent and the identity files",
              user ? user : "");
  else
    distc__plink_fail(&h->p, "%s: authentication failed: %s", h->p.label,
              ssh_get_error(h->s));
  ssh_string_free_char(user);
  return -1;
}

/* The bootstrap command, quoted for the login shell. */
char *distc__ssh_bootstrap_command(bool with_cores) {
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
    char *nl = memchr(h->p.in, '\n', h->p.in_len);
    if (nl != NULL) {
      *nl = '\0';
      long n = strncmp(h->p.in, "cores ", 6) == 0 ? strtol(h->p.in + 6, NULL, 10)
                                                : 0;
      size_t used = (size_t)(nl + 1 - h->p.in);
      memmove(h->p.in, nl + 1, h->p.in_len - used);
      h->p.in_len -= used;
      if (n > 0)
        return n > DISTC_HOST_MAX_SLOTS ? DISTC_HOST_MAX_SLOTS : (int)n;
      continue;
    }
    int left = (int)((deadline - distc__ssh_now()) * 1000);
    if (left <= 0 || h->p.in_len == sizeof h->p.in)
      return -1;
    int r = ssh_channel_read_timeout(h->ctl, h->p.in + h->p.in_len,
                                     (uint32_t)(sizeof h->p.in - h->p.in_len), 0,
                                     left);
    if (r <= 0)
      return -1;
    h->p.in_len += (size_t)r;
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
    distc__plink_fail(&h->p,
              "%s: the SSH server refused to forward a port back (%s); "
              "--tunnel needs AllowTcpForwarding yes (or remote) in its "
              "sshd_config",
              h->p.label, ssh_get_error(h->s));
    return -1;
  }
  char *cmd = distc__ssh_bootstrap_command(cores);
  h->ctl = cmd ? ssh_channel_new(h->s) : NULL;
  if (h->ctl == NULL || ssh_channel_open_session(h->ctl) != SSH_OK ||
      ssh_channel_request_exec(h->ctl, cmd) != SSH_OK) {
    distc__plink_fail(&h->p, "%s: cannot start a command there: %s", h->p.label,
              ssh_get_error(h->s));
    free(cmd);
    return -1;
  }
  free(cmd);
  if (cores) {
    int n = read_cores(h, deadline);
    if (n < 1) {
      distc__plink_fail(&h->p,
                "%s: could not learn its core count for 'auto' (no answer "
                "from a POSIX shell there); give a number instead",
                h->p.label);
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
 * h->p.error says why.  Runs in a connect thread, without the state lock
 * (it touches only h). */
void distc__ssh_connect_host(ssh_state *s, ssh_host *h, double deadline) {
  double left = deadline - distc__ssh_now();
  if (left < 0.1)
    left = 0.1;
  long sec = (long)left, usec = (long)((left - (double)sec) * 1e6);
  h->s = ssh_new();
  if (h->s == NULL) {
    distc__plink_fail(&h->p, "%s: out of memory", h->p.label);
    return;
  }
  int verbosity = SSH_LOG_NOLOG, one = 1;
  bool no = false;
  ssh_options_set(h->s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
  ssh_options_set(h->s, SSH_OPTIONS_HOST, h->spec.name);
  /* The host's own settings (HostName, Port, User, IdentityFile,
   * UserKnownHostsFile) first; what the host list says wins over them. */
  if (ssh_options_parse_config(h->s, s->config) != 0) {
    distc__plink_fail(&h->p, "%s: cannot read the ssh configuration %s: %s", h->p.label,
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
    if (distc__ssh_now() >= deadline - 0.05 || strstr(e, "imeout") != NULL)
      distc__plink_fail(&h->p,
                "%s: unreachable: no answer within %.3g s (%s); check the "
                "name and the network, and that sshd runs there",
                h->p.label, s->timeout_s, e);
    else
      distc__plink_fail(&h->p,
                "%s: cannot connect: %s; check the host name (and the SSH "
                "port), and that sshd runs there",
                h->p.label, e);
    return;
  }
  if (check_host_key(s, h) != 0 || authenticate(s, h) != 0)
    return;
  local_address(h);
  if (start_bootstrap(s, h, deadline) != 0)
    return;
  h->p.phase = DISTC__P_CONNECTED;
  if (s->verbose) {
    char *host = NULL;
    unsigned int port = 22;
    ssh_options_get(h->s, SSH_OPTIONS_HOST, &host);
    ssh_options_get_port(h->s, &port);
    distc__log_print(
            "[%s] connected to %s port %u, host key known, "
            "%d worker%s; this host is %s there",
            h->p.label, host ? host : h->spec.name, port, h->spec.slots,
            h->spec.slots == 1 ? "" : "s", h->local_addr);
    ssh_string_free_char(host);
  }
}

void distc__ssh_disconnect(ssh_host *h) {
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


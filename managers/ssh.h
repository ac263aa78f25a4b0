/* ssh.h — what the files of the ssh launch half share (internal):
 *   ssh.c          the launch half: options, prepare, launch, signal,
 *                  reap;
 *   ssh_io.c       the I/O thread that owns the sessions after launch;
 *   ssh_session.c  one host's SSH session: connect, host key, auth, and
 *                  the bootstrap command;
 *   ssh_tunnel.c   --tunnel: workers' connections carried back to the
 *                  master through reverse port forwards;
 * and, shared with any launcher that starts proxies, proxy_link.c (the
 * manager's side of the proxy protocol). */
#ifndef DISTC_SSH_H
#define DISTC_SSH_H

#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>

#include "ssh_api.h"

#include "manager.h"
#include "proxy.h"

#define DISTC__SSH_TUNNEL_BUF 65536

typedef struct distc__tunnel distc__tunnel; /* ssh_tunnel.c */

typedef struct ssh_host {
  distc_host spec; /* owned */
  int at;          /* its index in the host list of prepare */
  distc__plink p;  /* the proxy protocol; p.label is user@host:port */
  ssh_session s;
  char local_addr[INET6_ADDRSTRLEN]; /* this host, as seen from there */
  bool dropped;    /* --allow-partial left it out */
  ssh_channel ctl; /* the bootstrap, then the proxy */
  char *hint_reach; /* for p: what to do when workers cannot reach us */
  int fwd_port;    /* --tunnel: the port the remote sshd listens on */
  distc__tunnel *tunnels;
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
  int next_connect; /* prepare: the next host a connect thread takes */
  int connecting;   /* connect threads not finished */
  pthread_mutex_t kh_lock; /* known_hosts file updates */
  /* workers on this host, through the spawn launch half */
  int local_count;
  void *local; /* its state; NULL until used */
  /* after launch */
  bool launched;
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

double distc__ssh_now(void);

/* ssh_io.c */

/* The I/O thread (started by launch, stopped by destroy with io_stop). */
void *distc__ssh_io_main(void *state);
/* The links' on_exit: records an exit for reap and wakes event[1]; lock
 * held. */
void distc__ssh_record_exit(void *state, int index, long pid, int status);
/* A byte into a wake-up pipe (a full pipe already holds one); and the
 * draining of one. */
void distc__ssh_poke(int fd);
void distc__ssh_drain(int fd);

/* ssh_session.c */

/* Connects, checks the host key, authenticates and starts the bootstrap
 * of one host (learning the core count of an `auto` one); on failure
 * h->p.error says why.  Runs in a connect thread, without the state lock
 * (it touches only h, and s->kh_lock for known_hosts). */
void distc__ssh_connect_host(ssh_state *s, ssh_host *h, double deadline);
void distc__ssh_disconnect(ssh_host *h);
/* The remote command, quoted for the login shell (malloc'd, or NULL). */
char *distc__ssh_bootstrap_command(bool with_cores);

/* ssh_tunnel.c; all with the state lock held, from the I/O thread */

/* Takes the forwarded channels the remote sshd opened and moves bytes on
 * every tunnel of h; returns true when one still has bytes waiting. */
bool distc__ssh_tunnels_service(const ssh_state *s, ssh_host *h);
/* How many pollfds h's tunnels need, and fills them. */
size_t distc__ssh_tunnels_count(const ssh_host *h);
size_t distc__ssh_tunnels_poll(const ssh_host *h, struct pollfd *fds);
void distc__ssh_tunnels_close(ssh_host *h);

#endif

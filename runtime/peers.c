/* peers.c — a worker's links to other workers, and the one dispatcher that
 * serves every link of a worker.
 *
 * Under the all_to_all topology (the default) every worker listens on the
 * same-host abstract socket and on TCP at the address it reached its master
 * from, and tells the master both in its HELLO.  A link is made on first
 * use (Julia's lazy all_to_all): the caller asks the master for the
 * callee's addresses, dials (the same-host socket when it can reach it,
 * which then moves to the shared-memory rings; TCP otherwise), and runs
 * the same handshake as the master's link (handshake.c).  So a cluster
 * whose workers never call sideways holds one link per worker, not n^2.
 *
 * Threads: the worker's I/O thread accepts and authenticates incoming
 * links (so two workers dialing each other at once cannot deadlock), then
 * hands them over; the main thread alone reads and answers every link, as
 * it does the master's, so a call from a worker runs exactly like a call
 * from the master.  While the main thread waits for an answer it keeps
 * serving every link (distc__peers_pump): a chain 2 -> 3 -> 4 -> 2 then
 * calls back into 2 while 2 waits. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "ring.h"
#include "transport.h"

/* A link's handshake: short, since both ends are live processes of the
 * same run answering at once (a stuck dialer holds the I/O thread). */
#define LINK_HANDSHAKE_S 5.0

int distc__topology = DISTC__TOPO_ALL_TO_ALL;

static int lfd_local = -1, lfd_tcp = -1;
static uv_poll_t poll_local, poll_tcp;
static int news_fd = -1; /* eventfd: the I/O thread added a link */

/* Every worker link (the I/O thread appends, the main thread removes), each
 * holding a reference; the main thread reads its own copy, refreshed when
 * the generation moved. */
static pthread_mutex_t links_mu = PTHREAD_MUTEX_INITIALIZER;
static distc__conn **links;
static size_t nlinks, caplinks;
static atomic_uint links_gen;
static distc__conn **snap;
static size_t nsnap, capsnap, rr;
static unsigned snap_gen = ~0u;

int distc__topology_parse(const char *s) {
  if (!s || !*s || strcmp(s, "all_to_all") == 0)
    return DISTC__TOPO_ALL_TO_ALL;
  if (strcmp(s, "master_worker") == 0)
    return DISTC__TOPO_MASTER_WORKER;
  return distc__seterr(DISTC_EINVAL,
                       "topology '%s' is not known: use all_to_all (workers "
                       "call each other directly) or master_worker (workers "
                       "talk to the master only)",
                       s);
}

/* ---- listening ---- */

/* Appends "ip:port" to out (comma-separated) unless it is there already
 * or does not fit. */
static void add_addr(char *out, size_t n, const struct sockaddr *sa,
                     socklen_t len, const char *port) {
  char h[NI_MAXHOST], one[NI_MAXHOST + 16];
  if (getnameinfo(sa, len, h, sizeof h, NULL, 0, NI_NUMERICHOST) != 0)
    return;
  snprintf(one, sizeof one, "%s:%s", h, port);
  size_t have = strlen(out), k = strlen(one);
  for (const char *p = out; (p = strstr(p, one)) != NULL; p += k)
    if ((p == out || p[-1] == ',') && (p[k] == ',' || p[k] == '\0'))
      return;
  if (have + k + 2 > n)
    return;
  snprintf(out + have, n - have, "%s%s", have ? "," : "", one);
}

/* Listens on every address of the family of the master link, port 0, and
 * lists first the address this host reached the master from (other
 * workers most likely reach us there too), then this host's other
 * non-loopback addresses: a multi-homed host may be reached from another
 * worker only through one of those. */
static int tcp_listener(int master_fd, const char *master_addr, char *out,
                        size_t n) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(master_fd, (struct sockaddr *)&ss, &len) < 0 ||
      (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
    /* On the same-host socket: the master's host is ours, and so is the
     * address it listens on. */
    char host[256];
    const char *colon = master_addr ? strrchr(master_addr, ':') : NULL;
    if (!colon || (size_t)(colon - master_addr) >= sizeof host)
      return -1;
    memcpy(host, master_addr, (size_t)(colon - master_addr));
    host[colon - master_addr] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, "0", &hints, &res) != 0)
      return -1;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
  }
  int fam = ss.ss_family;
  len = fam == AF_INET ? sizeof(struct sockaddr_in)
                       : sizeof(struct sockaddr_in6);
  struct sockaddr_storage any;
  memset(&any, 0, sizeof any);
  any.ss_family = (sa_family_t)fam;
  int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  char port[NI_MAXSERV];
  socklen_t l2 = len;
  if (bind(fd, (struct sockaddr *)&any, len) < 0 || listen(fd, 128) < 0 ||
      getsockname(fd, (struct sockaddr *)&any, &l2) < 0 ||
      getnameinfo((struct sockaddr *)&any, l2, NULL, 0, port, sizeof port,
                  NI_NUMERICSERV) != 0) {
    close(fd);
    return -1;
  }
  out[0] = '\0';
  add_addr(out, n, (struct sockaddr *)&ss, len, port);
  struct ifaddrs *ifs;
  if (getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
      if (i->ifa_addr && i->ifa_addr->sa_family == fam &&
          !(i->ifa_flags & IFF_LOOPBACK) && (i->ifa_flags & IFF_UP))
        add_addr(out, n, i->ifa_addr, len, port);
    freeifaddrs(ifs);
  }
  return fd;
}

void distc__peers_listen(int fd, const char *master_addr, char *local,
                         size_t nl, char *tcp, size_t nt) {
  local[0] = tcp[0] = '\0';
  int topo = distc__topology_parse(getenv(DISTC_ENV_TOPOLOGY));
  distc__topology = topo < 0 ? DISTC__TOPO_ALL_TO_ALL : topo;
  if (topo < 0)
    distc__log(DISTC__LOG_WARN, "%s; using all_to_all", distc_errmsg());
  if (distc__topology == DISTC__TOPO_MASTER_WORKER)
    return;
  distc__transport t;
  if (distc__transport_forced(&t) == 0 && t != DISTC__TRANSPORT_TCP &&
      distc__local_listener(local, nl, &lfd_local) < 0) {
    distc__log(DISTC__LOG_WARN, "%s: other workers reach this one over TCP",
               distc_errmsg());
    local[0] = '\0';
  }
  lfd_tcp = tcp_listener(fd, master_addr, tcp, nt);
  if (lfd_tcp < 0) {
    tcp[0] = '\0';
    distc__log(DISTC__LOG_WARN, "cannot listen on TCP for other workers (%s):"
               " workers on other hosts cannot call this one",
               strerror(errno));
  }
}

/* ---- the link list and the peer table ---- */

static void table_put(distc__conn *c) {
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->lock);
  if (c->id >= C->conncap) {
    int cap = C->conncap ? C->conncap : 16;
    while (cap <= c->id)
      cap *= 2;
    distc__conn **t = realloc(C->conns, sizeof *t * (size_t)cap);
    if (t) {
      memset(t + C->conncap, 0, sizeof *t * (size_t)(cap - C->conncap));
      C->conns = t;
      C->conncap = cap;
    }
  }
  /* Two workers that dialed each other at once hold two links: both are
   * served, the first one carries the calls. */
  if (c->id < C->conncap &&
      (!C->conns[c->id] || C->conns[c->id] == DISTC__GONE)) {
    C->conns[c->id] = c;
    atomic_fetch_add(&c->refs, 1);
  }
  pthread_mutex_unlock(&C->lock);
}

static bool links_add(distc__conn *c) {
  pthread_mutex_lock(&links_mu);
  if (nlinks == caplinks) {
    size_t cap = caplinks ? caplinks * 2 : 8;
    distc__conn **l = realloc(links, sizeof *l * cap);
    if (!l) {
      pthread_mutex_unlock(&links_mu);
      return false;
    }
    links = l;
    caplinks = cap;
  }
  links[nlinks++] = c;
  atomic_fetch_add(&c->refs, 1);
  atomic_fetch_add(&links_gen, 1);
  pthread_mutex_unlock(&links_mu);
  table_put(c);
  if (news_fd >= 0) {
    uint64_t one = 1;
    if (write(news_fd, &one, sizeof one) < 0) {
      /* The counter is full: the main thread is told already. */
    }
  }
  /* A main thread asleep on the master's ring (distc__peers_poll). */
  if (distc__C.master && distc__C.master->rx)
    distc__ring_wake(distc__C.master->rx);
  return true;
}

static void refresh(void) {
  unsigned g = atomic_load(&links_gen);
  if (g == snap_gen)
    return;
  pthread_mutex_lock(&links_mu);
  if (nlinks > capsnap) {
    distc__conn **s = realloc(snap, sizeof *s * nlinks);
    if (!s) {
      pthread_mutex_unlock(&links_mu);
      return; /* keep the old copy; try again next time */
    }
    snap = s;
    capsnap = nlinks;
  }
  if (nlinks > 0)
    memcpy(snap, links, sizeof *snap * nlinks);
  nsnap = nlinks;
  snap_gen = g;
  pthread_mutex_unlock(&links_mu);
}

/* Main thread: the link is over (the peer exited, or broke it).  Its calls
 * fail with the process-exited error; the worker itself carries on. */
static void link_lost(distc__conn *c) {
  distc__cluster *C = &distc__C;
  atomic_store(&c->dead, true);
  shutdown(c->fd, SHUT_RDWR);
  bool owned = false;
  pthread_mutex_lock(&C->lock);
  if (c->id < C->conncap && C->conns[c->id] == c) {
    C->conns[c->id] = NULL; /* a later call asks the master again */
    owned = true;
  }
  pthread_mutex_unlock(&C->lock);
  pthread_mutex_lock(&links_mu);
  for (size_t i = 0; i < nlinks; i++) {
    if (links[i] == c) {
      links[i] = links[--nlinks];
      break;
    }
  }
  atomic_fetch_add(&links_gen, 1);
  pthread_mutex_unlock(&links_mu);
  distc__conn_fail_pending(c);
  distc__log(DISTC__LOG_INFO, "link to worker %d closed", c->id);
  if (owned)
    distc__conn_unref(c);
  distc__conn_unref(c); /* the list's */
}

/* ---- accepting (the I/O thread) ---- */

/* HELLO of a link: [id, ospid, host, fingerprint]; WELCOME: [id, ospid,
 * host]; REFUSE: [message]. */
static void pack_self(distc__enc *e, bool fp) {
  char host[64];
  distc__hostname(host, sizeof host);
  msgpack_pack_array(&e->pk, fp ? 4 : 3);
  msgpack_pack_int(&e->pk, distc__C.myid);
  msgpack_pack_int(&e->pk, (int)getpid());
  msgpack_pack_str(&e->pk, strlen(host));
  msgpack_pack_str_body(&e->pk, host, strlen(host));
  if (fp) {
    msgpack_pack_bin(&e->pk, DISTC__FP_LEN);
    msgpack_pack_bin_body(&e->pk, distc__fingerprint(), DISTC__FP_LEN);
  }
}

/* Reads a HELLO or WELCOME: fills c's id, ospid and host; checks the
 * fingerprint of a HELLO.  0, or < 0 with why. */
static int read_self(const char *p, uint32_t len, distc__conn *c, bool fp,
                     char *why, size_t nwhy) {
  distc__dec d;
  if (distc__dec_open(&d, (char *)p, len) < 0) {
    snprintf(why, nwhy, "a malformed handshake frame");
    return DISTC_EPROTO;
  }
  const msgpack_object *r = distc__dec_root(&d);
  const msgpack_object *a = r->via.array.ptr;
  int rc = 0;
  if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != (fp ? 4u : 3u) ||
      a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 < 2 ||
      a[0].via.u64 > 1u << 30 || a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      a[2].type != MSGPACK_OBJECT_STR ||
      (fp && (a[3].type != MSGPACK_OBJECT_BIN ||
              a[3].via.bin.size != DISTC__FP_LEN))) {
    snprintf(why, nwhy, "a malformed handshake frame");
    rc = DISTC_EPROTO;
    goto out;
  }
  c->id = (int)a[0].via.u64;
  c->ospid = (pid_t)a[1].via.u64;
  snprintf(c->host, sizeof c->host, "%.*s", (int)a[2].via.str.size,
           a[2].via.str.ptr);
  if (fp) {
    char who[96];
    snprintf(who, sizeof who, "worker %d (pid %d on %s)", c->id,
             (int)c->ospid, c->host);
    if (!distc__hs_same_binary((const unsigned char *)a[3].via.bin.ptr, why,
                               nwhy, who))
      rc = DISTC_EFINGERPRINT;
  }
out:
  distc__dec_close(&d);
  return rc;
}

static void slot_release(int slot);

static void accept_link(int fd, bool local, int slot) {
  double deadline = distc__now() + LINK_HANDSHAKE_S * 1e9;
  char *p = NULL, why[512] = "";
  uint32_t len;
  uint8_t type;
  distc__conn *c = NULL;
  distc__enc e;
  int auth = distc__hs_accept(fd, deadline);
  slot_release(slot); /* authenticated or failed: nobody evicts it now */
  if (auth < 0 || distc__hs_recv(fd, &type, &p, &len, deadline) < 0) {
    distc__log(DISTC__LOG_WARN, "dropped an incoming link: %s",
               distc_errmsg());
    close(fd);
    return;
  }
  if (!(c = distc__conn_new(fd))) {
    snprintf(why, sizeof why, "out of memory");
  } else if (type != DISTC__F_HELLO) {
    snprintf(why, sizeof why, "the dialer sent no HELLO");
  } else {
    read_self(p, len, c, true, why, sizeof why);
  }
  free(p);
  distc__enc_init(&e);
  if (why[0]) {
    msgpack_pack_array(&e.pk, 1);
    msgpack_pack_str(&e.pk, strlen(why));
    msgpack_pack_str_body(&e.pk, why, strlen(why));
    distc__hs_send(fd, DISTC__F_REFUSE, &e, deadline);
  } else {
    pack_self(&e, false);
    if (distc__hs_send(fd, DISTC__F_WELCOME, &e, deadline) < 0)
      snprintf(why, sizeof why, "%s", distc_errmsg());
  }
  distc__enc_destroy(&e);
  if (why[0]) {
    distc__log(DISTC__LOG_WARN, "refused a link: %s", why);
    if (c)
      distc__conn_unref(c); /* closes fd */
    else
      close(fd);
    return;
  }
  c->shm_accept = local; /* the dialer offers the rings */
  c->is_link = true;
  if (!links_add(c))
    distc__log(DISTC__LOG_ERROR, "out of memory adding the link from "
               "worker %d", c->id);
  distc__conn_unref(c);
}

/* Incoming links are authenticated on threads of their own: the I/O
 * thread, which sends our heartbeats and watches the master, never waits on
 * a stranger.  ACCEPT_MAX of them may be in the handshake at once (each
 * holds a slot until it has proved the secret or failed); a newcomer that
 * finds them all taken evicts the oldest one that has had EVICT_AGE_MS
 * (shut down, its thread fails at once), so a flood of silent or garbage
 * connections delays a real link by a moment, never by the handshake's
 * LINK_HANDSHAKE_S.  With no slot to evict, the newcomer is closed. */
#define ACCEPT_MAX 8
#define EVICT_AGE_MS 50

typedef struct accept_slot {
  int fd; /* -1: free */
  double born;
} accept_slot;

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static accept_slot slots[ACCEPT_MAX] = {[0 ... ACCEPT_MAX - 1] = {-1, 0}};
static atomic_int threads; /* handshake threads alive, evicted ones included */

static void slot_release(int slot) {
  pthread_mutex_lock(&slots_mu);
  slots[slot].fd = -1;
  pthread_mutex_unlock(&slots_mu);
}

/* A free slot for fd, or the oldest evictable one (its connection shut
 * down); -1 when every slot is younger than EVICT_AGE_MS. */
static int slot_take(int fd) {
  double now = distc__now();
  int pick = -1;
  pthread_mutex_lock(&slots_mu);
  for (int i = 0; i < ACCEPT_MAX && pick < 0; i++)
    if (slots[i].fd < 0)
      pick = i;
  if (pick < 0) {
    for (int i = 0; i < ACCEPT_MAX; i++)
      if (now - slots[i].born >= EVICT_AGE_MS * 1e6 &&
          (pick < 0 || slots[i].born < slots[pick].born))
        pick = i;
    if (pick >= 0)
      shutdown(slots[pick].fd, SHUT_RDWR);
  }
  if (pick >= 0)
    slots[pick] = (accept_slot){fd, now};
  pthread_mutex_unlock(&slots_mu);
  return pick;
}

typedef struct accept_job {
  int fd, slot;
  bool local;
} accept_job;

static void *accept_main(void *arg) {
  accept_job j = *(accept_job *)arg;
  free(arg);
  accept_link(j.fd, j.local, j.slot);
  atomic_fetch_sub(&threads, 1);
  return NULL;
}

static void accept_async(int fd, bool local) {
  static bool warned;
  accept_job *j = NULL;
  pthread_attr_t at;
  pthread_t t;
  /* Evicted threads end at once; the bound only guards against a stuck
   * one. */
  int slot = atomic_load(&threads) < 4 * ACCEPT_MAX ? slot_take(fd) : -1;
  if (slot < 0) {
    if (!warned)
      distc__log(DISTC__LOG_WARN, "%d incoming links are being authenticated "
                 "already: closing new ones until one is done", ACCEPT_MAX);
    warned = true;
    close(fd);
    return;
  }
  warned = false;
  if (!(j = malloc(sizeof *j)))
    goto drop;
  *j = (accept_job){fd, slot, local};
  atomic_fetch_add(&threads, 1);
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&at, 256 << 10);
  int rc = pthread_create(&t, &at, accept_main, j);
  pthread_attr_destroy(&at);
  if (rc == 0)
    return;
  atomic_fetch_sub(&threads, 1);
  free(j);
drop:
  slot_release(slot);
  close(fd);
}

static void on_accept(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  bool local = h == &poll_local;
  int lfd = local ? lfd_local : lfd_tcp;
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      return;
    if (!local) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    accept_async(fd, local);
  }
}

void distc__peers_start(uv_loop_t *loop, int topology) {
  (void)topology;
  /* One peer table on every process: the master's link is entry 1. */
  table_put(distc__C.master);
  if (distc__topology == DISTC__TOPO_MASTER_WORKER)
    return;
  news_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (lfd_local >= 0) {
    uv_poll_init(loop, &poll_local, lfd_local);
    uv_poll_start(&poll_local, UV_READABLE, on_accept);
  }
  if (lfd_tcp >= 0) {
    uv_poll_init(loop, &poll_tcp, lfd_tcp);
    uv_poll_start(&poll_tcp, UV_READABLE, on_accept);
  }
}

/* ---- dialing (the main thread) ---- */

/* Connects to one "host:port" within ms; -1 (errno set) otherwise. */
static int dial_one(const char *addr, int ms) {
  char host[NI_MAXHOST];
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) {
    errno = EINVAL;
    return -1;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST},
                  *res;
  if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
    errno = EINVAL;
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                  0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
    /* A filtered address never answers: wait for it no longer than ms. */
    struct pollfd pf = {fd, POLLOUT, 0};
    int err = errno, r;
    socklen_t el = sizeof err;
    if (err == EINPROGRESS) {
      while ((r = poll(&pf, 1, ms)) < 0 && errno == EINTR)
        ;
      err = r == 0 ? ETIMEDOUT : 0;
      if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
    }
    if (err) {
      close(fd);
      fd = -1;
      errno = err;
    }
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

/* Tries each address of a comma-separated list in turn. */
static int dial_tcp(const char *list, double deadline) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  int fd = -1;
  char *save = NULL;
  for (char *a = strtok_r(buf, ",", &save); a && fd < 0;
       a = strtok_r(NULL, ",", &save)) {
    int ms = (int)((deadline - distc__now()) / 1e6);
    if (ms <= 0)
      break;
    fd = dial_one(a, ms < 2000 ? ms : 2000);
  }
  return fd;
}

/* Asks the master where worker pid listens: 0 with local/tcp filled, or
 * < 0 with the master's reason. */
static int lookup(int pid, char *local, size_t nl, char *tcp, size_t nt) {
  distc_value *a = distc_listv(1, distc_int(pid)), *r = NULL;
  if (!a)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  int rc = distc_remotecall_fetch(DISTC_MASTER, "distc__peer_addr", a, &r);
  distc_value_free(a);
  if (rc < 0)
    return rc;
  int code = (int)distc_value_int(distc_list_at(r, 0));
  const char *s1 = distc_value_str(distc_list_at(r, 1), NULL);
  const char *s2 = distc_value_str(distc_list_at(r, 2), NULL);
  if (code < 0)
    rc = distc__seterr(code, "%s", s1 ? s1 : distc_strerror(code));
  else {
    snprintf(local, nl, "%s", s1 ? s1 : "");
    snprintf(tcp, nt, "%s", s2 ? s2 : "");
  }
  distc_value_free(r);
  return rc;
}

static int dial_link(int pid, distc__conn **out) {
  char local[64], tcp[256], why[512] = "";
  int rc = lookup(pid, local, sizeof local, tcp, sizeof tcp);
  if (rc < 0)
    return rc;
  if (!local[0] && !tcp[0]) {
    return distc__seterr(DISTC_ENOTSUP,
                  "worker %d does not accept calls from other workers (it "
                  "runs under --topology master_worker): call it from the "
                  "master, or start it with --topology all_to_all",
                  pid);
  }
  double deadline = distc__now() + LINK_HANDSHAKE_S * 1e9;
  distc__transport t;
  bool via_local = false;
  int fd = -1;
  if (distc__transport_forced(&t) == 0 && t != DISTC__TRANSPORT_TCP &&
      local[0])
    via_local = (fd = distc__local_dial(local)) >= 0;
  if (fd < 0 && tcp[0])
    fd = dial_tcp(tcp, deadline);
  if (fd < 0) {
    return distc__seterr(DISTC_EIO,
                  "cannot reach worker %d at %s%s%s (%s): if the workers "
                  "cannot reach each other, run with --topology "
                  "master_worker and call through the master",
                  pid, local[0] ? local : "", local[0] && tcp[0] ? " or " : "",
                  tcp, strerror(errno));
  }
  distc__conn *c = NULL;
  char *p = NULL;
  uint32_t len;
  uint8_t type;
  distc__enc e;
  distc__enc_init(&e);
  pack_self(&e, true);
  rc = distc__hs_dial(fd, deadline);
  if (!rc)
    rc = distc__hs_send(fd, DISTC__F_HELLO, &e, deadline);
  distc__enc_destroy(&e);
  if (!rc)
    rc = distc__hs_recv(fd, &type, &p, &len, deadline);
  if (rc < 0) {
    close(fd);
    return distc__seterr(rc, "link to worker %d: %s", pid, distc_errmsg());
  }
  if (!(c = distc__conn_new(fd))) {
    close(fd);
    free(p);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  c->is_link = true;
  if (type == DISTC__F_REFUSE) {
    distc__dec d;
    rc = DISTC_EAUTH;
    snprintf(why, sizeof why, "refused");
    if (distc__dec_open(&d, p, len) == 0) {
      const msgpack_object *r = distc__dec_root(&d);
      if (r->type == MSGPACK_OBJECT_ARRAY && r->via.array.size == 1 &&
          r->via.array.ptr[0].type == MSGPACK_OBJECT_STR)
        snprintf(why, sizeof why, "%.*s",
                 (int)r->via.array.ptr[0].via.str.size,
                 r->via.array.ptr[0].via.str.ptr);
      distc__dec_close(&d);
    }
  } else if (type != DISTC__F_WELCOME) {
    rc = DISTC_EPROTO;
    snprintf(why, sizeof why, "it answered without a WELCOME");
  } else if ((rc = read_self(p, len, c, false, why, sizeof why)) == 0 &&
             c->id != pid) {
    rc = DISTC_EPROTO;
    snprintf(why, sizeof why, "worker %d answered at its address", c->id);
  }
  free(p);
  if (rc < 0) {
    distc__conn_unref(c);
    return distc__seterr(rc, "link to worker %d: %s", pid, why);
  }
  /* On the same host the frames move to shared-memory rings, as the
   * master's link does (forced unix keeps the socket). */
  if (via_local && t != DISTC__TRANSPORT_UNIX && distc__conn_offer_shm(c) < 0)
    distc__log(DISTC__LOG_WARN, "link to worker %d: %s: staying on the socket",
               pid, distc_errmsg());
  if (!links_add(c)) {
    distc__conn_unref(c);
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  *out = c;
  return 0;
}

int distc__peer_link(int pid, distc__conn **out) {
  distc__conn *c = distc__conn_get(pid);
  *out = c;
  if (c)
    return 0;
  if (distc__topology == DISTC__TOPO_MASTER_WORKER)
    return distc__seterr(DISTC_ENOTSUP,
                         "worker %d cannot call worker %d: this run uses "
                         "--topology master_worker, where workers talk to the "
                         "master only; make the call from the master, or run "
                         "with --topology all_to_all",
                         distc__C.myid, pid);
  int rc = dial_link(pid, &c);
  if (rc < 0)
    return rc;
  distc__log(DISTC__LOG_DEBUG, "linked to worker %d (%s)", pid,
             distc__conn_on_ring(c) ? "rings" : "socket");
  *out = c; /* dial_link's reference is the caller's */
  return 0;
}

/* ---- frames read while sending ----
 * Two workers that send each other frames larger than their link holds at
 * the same moment would each wait for the other to read.  So a worker
 * waiting for room on a link reads what that link brings meanwhile and
 * keeps it here, to be dispatched (in order) once the send is done. */

typedef struct held_frame {
  distc__conn *c; /* a reference */
  distc__frame f;
} held_frame;
static held_frame *lheld;
static size_t lheld_head, lheld_n, lheld_cap;
static _Thread_local bool main_thread;

void distc__peers_main_thread(void) { main_thread = true; }

/* Whether reading c cannot reach its shared-memory switch, which takes
 * the write lock the sender holds. */
static bool may_drain(const distc__conn *c) {
  if (c->shm_accept)
    return c->shm != NULL; /* the dialer's offer is taken */
  return c->shm == NULL || c->tx != NULL; /* no offer of ours pending */
}

void distc__link_drain(distc__conn *c) {
  if (!main_thread || !c->is_link || !may_drain(c))
    return;
  for (;;) {
    if (lheld_n == lheld_cap) {
      if (lheld_head > 0) {
        memmove(lheld, lheld + lheld_head,
                (lheld_n - lheld_head) * sizeof *lheld);
        lheld_n -= lheld_head;
        lheld_head = 0;
      } else {
        size_t cap = lheld_cap ? lheld_cap * 2 : 16;
        held_frame *h = realloc(lheld, cap * sizeof *h);
        if (!h)
          return;
        lheld = h;
        lheld_cap = cap;
      }
    }
    distc__frame f;
    if (distc__conn_read_frame(c, &f) <= 0)
      return; /* a lost link is noticed by the sender and the pump */
    atomic_fetch_add(&c->refs, 1);
    lheld[lheld_n++] = (held_frame){c, f};
  }
}

int distc__peers_pump(void) {
  int r = distc__worker_pump_once(distc__C.master);
  if (r != 0)
    return r;
  if (lheld_head < lheld_n) {
    held_frame h = lheld[lheld_head++];
    if (lheld_head == lheld_n)
      lheld_head = lheld_n = 0;
    distc__worker_dispatch(h.c, &h.f);
    distc__conn_unref(h.c);
    return 1;
  }
  refresh();
  for (size_t k = 0; k < nsnap; k++) {
    distc__conn *c = snap[(rr + k) % nsnap];
    distc__frame fr;
    int got = distc__conn_read_frame(c, &fr);
    if (got == 0)
      continue;
    rr = (rr + k + 1) % (nsnap ? nsnap : 1);
    if (got < 0) {
      link_lost(c);
      return 1;
    }
    /* A nested wait may lose this link while its call runs. */
    atomic_fetch_add(&c->refs, 1);
    distc__worker_dispatch(c, &fr);
    distc__conn_unref(c);
    return 1;
  }
  return 0;
}

bool distc__peers_spin(bool on) {
  bool waiting = distc__conn_spin(distc__C.master, on);
  refresh();
  for (size_t i = 0; i < nsnap; i++)
    waiting |= distc__conn_spin(snap[i], on);
  return waiting;
}

void distc__peers_poll(int timeout_ms) {
  distc__conn *m = distc__C.master;
  refresh();
  if (nsnap == 0 && m->rx) {
    /* The master's ring alone (the common case): sleep on its futex, where
     * the I/O thread also wakes us for a new link (links_add). */
    uint32_t seq = distc__ring_sleep_begin(m->rx);
    if (atomic_load(&links_gen) == snap_gen && !distc__conn_spin(m, false))
      distc__ring_sleep_wait(m->rx, seq, timeout_ms);
    distc__ring_sleep_end(m->rx);
    return;
  }
  if (nsnap == 0 && news_fd < 0) {
    distc__conn_poll(m, timeout_ms);
    return;
  }
  /* Stop spinning everywhere first: a ring that got bytes meanwhile rang
   * no doorbell, so it is read now instead of slept on. */
  bool ready = distc__conn_spin(distc__C.master, false);
  for (size_t i = 0; i < nsnap; i++)
    ready |= distc__conn_spin(snap[i], false);
  if (ready)
    return;
  struct pollfd small[16], *pf = small;
  size_t n = nsnap + 2;
  if (n > DISTC__ARRAY_LEN(small) && !(pf = malloc(sizeof *pf * n))) {
    pf = small;
    n = DISTC__ARRAY_LEN(small);
  }
  size_t k = 0;
  pf[k++] = (struct pollfd){.fd = distc__C.master->fd, .events = POLLIN};
  if (news_fd >= 0)
    pf[k++] = (struct pollfd){.fd = news_fd, .events = POLLIN};
  for (size_t i = 0; i < nsnap && k < n; i++)
    pf[k++] = (struct pollfd){.fd = snap[i]->fd, .events = POLLIN};
  int r;
  do
    r = poll(pf, k, timeout_ms);
  while (r < 0 && errno == EINTR);
  if (r > 0 && news_fd >= 0 && (pf[1].revents & POLLIN)) {
    uint64_t v;
    if (read(news_fd, &v, sizeof v) < 0) {
      /* Nothing to clear. */
    }
  }
  if (pf != small)
    free(pf);
}

/* ---- the master's side: where workers listen ---- */

/* [pid] -> [0, local, tcp] or [code, message]: so a caller learns a
 * worker exited (DISTC_EPROCEXIT) rather than that a lookup failed. */
DISTC_FUNCTION(distc__peer_addr) {
  int pid = (int)distc_value_int(distc_list_at(args, 0));
  if (!distc__C.is_master)
    return distc_fail(ctx, "only the master knows where workers listen");
  distc__conn *c = distc__conn_get(pid);
  if (!c) {
    distc__cluster *C = &distc__C;
    pthread_mutex_lock(&C->lock);
    bool left = pid > 0 && pid < C->conncap && C->conns[pid] == DISTC__GONE;
    pthread_mutex_unlock(&C->lock);
    char msg[160];
    if (left)
      snprintf(msg, sizeof msg, "On worker %d: process exited (or was "
               "removed by distc_rmprocs)", pid);
    else
      snprintf(msg, sizeof msg, "there is no process %d (see "
               "distc_workers())", pid);
    return distc_listv(2, distc_int(left ? DISTC_EPROCEXIT : DISTC_ENOENT),
                       distc_string(msg));
  }
  distc_value *v = distc_listv(3, distc_int(0), distc_string(c->link_local),
                               distc_string(c->link_tcp));
  distc__conn_unref(c);
  return v;
}

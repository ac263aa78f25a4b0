/* master.c — what is the master's alone: the I/O thread (listeners,
 * accepting and authenticating workers with the handshake's accepting half,
 * reading their connections when no caller is, the liveness checker),
 * start-up and shutdown.  Its table of workers is membership.c, what their
 * frames mean dispatch.c, the threads that run their calls service.c, and
 * distc_addprocs/rmprocs addprocs.c.
 *
 * The I/O thread owns every libuv handle; other threads only write frames,
 * read under a connection's rlock, and wake the loop with uv_async. */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "launch_progress.h"
#include "transport.h"

#define HANDSHAKE_TIMEOUT_MS 10000
#define HELLO_MAX 4096 /* a HELLO frame is ~100 bytes */

/* One accepted socket: first a handshake in progress, then the holder of
 * its connection's poll handle.  The fd is closed only after the handle is
 * closed, so libuv never touches a number the kernel gave to someone else. */
typedef struct peer {
  uv_poll_t poll;
  uv_timer_t timer;
  int fd;
  int stage; /* 0: awaiting HELLO2, 1: awaiting HELLO frame, 2: connected */
  unsigned char nonce[DISTC__NONCE_LEN];
  unsigned char buf[DISTC__HDR_LEN + HELLO_MAX];
  size_t have;
  int closing; /* handles still to close */
  distc__conn *conn;
  distc__gate_entry gate; /* listed while unauthenticated (gate.c) */
} peer;

#define PEER_OF_GATE(e) ((peer *)((char *)(e)-offsetof(peer, gate)))

static int control_fd = -1;
/* "ready" was said: the pipe stays open for "lost" reports (written by the
 * I/O thread), and the launch indices [0, launcher_workers) are the
 * launcher's, whose manager kills them. */
static atomic_bool control_ready;
static int launcher_workers;
/* Launch indices of workers lost for silence on other hosts that one of
 * distc_addprocs' managers is still to kill: the I/O thread's own, retried
 * on every liveness tick while addprocs holds the managers. */
static int *kill_pending;
static int nkill_pending, capkill_pending;
bool distc__stopping; /* finalize has begun (the I/O thread stops) */
/* Admitted workers' sockets live in this epoll set, itself watched by the
 * loop, so that a spinning waiter can take its connection out of it
 * (distc__conn_quiet) without calling into libuv from another thread. */
static int conn_epfd = -1;
static uv_poll_t conn_poll;
/* The liveness checker: the workers' silence deadlines (liveness.c). */
static uv_timer_t live_timer;
/* Restarts accepting after a pause (a full gate, or out of descriptors). */
static uv_timer_t accept_timer;
static bool accept_paused, remote_polling;

static void peer_closed(uv_handle_t *h) {
  peer *p = h->data;
  if (--p->closing > 0)
    return;
  if (p->conn)
    distc__conn_unref(p->conn); /* closes the fd */
  else if (p->fd >= 0)
    close(p->fd);
  free(p);
}

static void peer_close(peer *p) {
  if (p->closing)
    return;
  distc__gate_remove(&p->gate);
  if (p->stage == 2)
    epoll_ctl(conn_epfd, EPOLL_CTL_DEL, p->conn->fd, NULL);
  p->closing = 2;
  uv_close((uv_handle_t *)&p->poll, peer_closed);
  uv_close((uv_handle_t *)&p->timer, peer_closed);
}

static void on_workers_io(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)status;
  (void)events;
  struct epoll_event ev[64];
  int n = epoll_wait(conn_epfd, ev, 64, 0);
  for (int i = 0; i < n; i++) {
    peer *p = ev[i].data.ptr;
    if (!p->closing &&
        ((ev[i].events & EPOLLOUT) || distc__conn_on_ring(p->conn)) &&
        distc__conn_flush(p->conn) < 0) {
      distc__worker_lost(p->conn);
      peer_close(p);
    }
    if (!p->closing && (ev[i].events & ~EPOLLOUT) &&
        distc__master_pump(p->conn, true) < 0) {
      distc__worker_lost(p->conn);
      peer_close(p);
    }
  }
}

/* Whether c's pid names its worker here: the same host name, and a
 * connection that crossed no network (the same-host socket, loopback, or
 * TCP whose two ends have one address).  A name alone is not enough:
 * containers and network namespaces share one, and a pid there names
 * another process, or one we must not kill. */
bool distc__worker_same_host(const distc__conn *c) {
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  if (strcmp(host, c->host) != 0 || c->ospid <= 0)
    return false;
  struct sockaddr_storage me, peer;
  socklen_t lm = sizeof me, lp = sizeof peer;
  if (getsockname(c->fd, (struct sockaddr *)&me, &lm) != 0 ||
      getpeername(c->fd, (struct sockaddr *)&peer, &lp) != 0)
    return false;
  if (me.ss_family == AF_UNIX)
    return true;
  if (me.ss_family == AF_INET && peer.ss_family == AF_INET) {
    struct in_addr a = ((struct sockaddr_in *)&me)->sin_addr;
    struct in_addr b = ((struct sockaddr_in *)&peer)->sin_addr;
    return a.s_addr == b.s_addr || (ntohl(b.s_addr) >> 24) == 127;
  }
  if (me.ss_family == AF_INET6 && peer.ss_family == AF_INET6) {
    struct in6_addr *a = &((struct sockaddr_in6 *)&me)->sin6_addr;
    struct in6_addr *b = &((struct sockaddr_in6 *)&peer)->sin6_addr;
    return memcmp(a, b, sizeof *a) == 0 || IN6_IS_ADDR_LOOPBACK(b);
  }
  return false;
}

/* Tells the launcher that its worker `index` is lost, so that its manager
 * kills it there; false when the index is not the launcher's.  A short
 * line on a pipe: atomic, and non-blocking (init set O_NONBLOCK). */
bool distc__report_lost(int index) {
  if (!atomic_load(&control_ready) || index < 0 || index >= launcher_workers)
    return false;
  char line[32];
  int n = snprintf(line, sizeof line, "lost %d\n", index);
  return write(control_fd, line, (size_t)n) == n;
}

/* SIGKILLs worker `index` through the distc_addprocs manager that started
 * it; the caller holds addprocs_lock.  False when none did. */
bool distc__manager_kill_index(int index) {
  distc__cluster *C = &distc__C;
  for (int i = 0; i < C->nmanagers; i++)
    if (distc__manager_kill_one(&C->managers[i], index, SIGKILL) == 0)
      return true;
  return false;
}

/* Asks distc_addprocs' managers to kill the pending indices; only while
 * nobody else uses them (addprocs holds the lock while it waits for its
 * workers, which needs this thread).  Runs on the I/O thread. */
static bool kill_pending_lost(void) {
  distc__cluster *C = &distc__C;
  bool any = false;
  if (nkill_pending == 0 || pthread_mutex_trylock(&C->addprocs_lock) != 0)
    return false;
  for (int k = 0; k < nkill_pending; k++)
    any |= distc__manager_kill_index(kill_pending[k]);
  nkill_pending = 0;
  pthread_mutex_unlock(&C->addprocs_lock);
  return any;
}

static void kill_later(int index) {
  if (nkill_pending == capkill_pending) {
    int cap = capkill_pending ? 2 * capkill_pending : 8;
    int *p = realloc(kill_pending, sizeof *p * (size_t)cap);
    if (p == NULL)
      return; /* then its connection's end is all it gets */
    kill_pending = p;
    capkill_pending = cap;
  }
  kill_pending[nkill_pending++] = index;
}

/* A worker silent past its deadline is lost as if it had exited: its calls
 * fail, pmap and pools move on, and it is killed so it cannot come back
 * half-way through: here by its pid, on another host by the manager that
 * started it (the launcher's, or one of distc_addprocs'); a worker nobody
 * started sees its connection shut and exits when it runs again. */
static void unresponsive(distc__conn *c, double silent_ns) {
  const char *how = "";
  if (distc__worker_same_host(c)) {
    if (kill(c->ospid, SIGKILL) == 0)
      how = " and killed";
  } else if (distc__report_lost(c->index)) {
    how = " and killed on its host";
  } else {
    kill_later(c->index);
    if (kill_pending_lost())
      how = " and killed on its host";
  }
  snprintf(c->why, sizeof c->why,
           "unresponsive for %.1f s (pid %d on %s): treated as exited%s; "
           "raise --heartbeat / DISTC_HEARTBEAT_S if it was only slow",
           silent_ns / 1e9, (int)c->ospid, c->host, how);
  distc__worker_lost(c);
  peer_close(c->epdata);
}

static void on_live_timer(uv_timer_t *t) {
  (void)t;
  distc__cluster *C = &distc__C;
  static double last;
  double now = distc__now();
  /* Stopped (Ctrl-Z) or starved ourselves: restart every clock. */
  bool late = distc__liveness_late(&last, now);
  pthread_mutex_lock(&C->lock);
  int n = C->nids;
  distc__conn **cs = malloc(sizeof *cs * (size_t)(n ? n : 1));
  for (int i = 0; cs && i < n; i++) {
    cs[i] = C->conns[C->ids[i]];
    atomic_fetch_add(&cs[i]->refs, 1);
  }
  pthread_mutex_unlock(&C->lock);
  kill_pending_lost();
  for (int i = 0; cs && i < n; i++) {
    distc__conn *c = cs[i];
    if (late)
      distc__conn_forgive(c, now);
    double silent = atomic_load(&c->lost) ? 0 : distc__conn_silent(c, now);
    if (silent > 0)
      unresponsive(c, silent);
    distc__conn_unref(c);
  }
  free(cs);
}

/* ---- the handshake, master half ---- */

static void refuse(peer *p, const char *msg) {
  distc__enc e;
  distc__enc_init(&e);
  msgpack_pack_array(&e.pk, 1);
  msgpack_pack_str(&e.pk, strlen(msg));
  msgpack_pack_str_body(&e.pk, msg, strlen(msg));
  distc__conn *tmp = distc__conn_new(dup(p->fd));
  if (tmp) {
    distc__send_encoded(tmp, DISTC__F_REFUSE, 0, 0, &e);
    distc__conn_unref(tmp);
  }
  distc__enc_destroy(&e);
}

/* Whether we can copy out of the worker's memory: it told us where its
 * fingerprint lies, and reading it back proves the pid names that very
 * process in our pid namespace (same host) and that we may read it. */
static bool can_read_memory(pid_t pid, uint64_t addr) {
  if (!addr || !distc__transport_cma_allowed())
    return false;
  unsigned char buf[DISTC__FP_LEN];
  struct iovec local = {buf, sizeof buf};
  struct iovec remote = {(void *)(uintptr_t)addr, sizeof buf};
  return process_vm_readv(pid, &local, 1, &remote, 1, 0) == sizeof buf &&
         memcmp(buf, distc__fingerprint(), sizeof buf) == 0;
}

/* Registers the worker whose HELLO is in p->buf, or refuses it. */
static void admit(peer *p, uint32_t len) {
  distc__cluster *C = &distc__C;
  distc__dec d;
  char why[512] = "";
  int code = DISTC_EPROTO; /* what await_workers reports for `why` */
  if (distc__dec_open(&d, (char *)p->buf + DISTC__HDR_LEN, len) < 0) {
    peer_close(p);
    return;
  }
  const msgpack_object *r = distc__dec_root(&d);
  const msgpack_object *a = r->via.array.ptr;
  if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size < 4 ||
      r->via.array.size > 6 ||
      (r->via.array.size >= 5 && a[4].type != MSGPACK_OBJECT_POSITIVE_INTEGER) ||
      (r->via.array.size == 6 &&
       (a[5].type != MSGPACK_OBJECT_ARRAY || a[5].via.array.size != 2 ||
        a[5].via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
        a[5].via.array.ptr[1].type != MSGPACK_OBJECT_STR)) ||
      (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
       a[0].type != MSGPACK_OBJECT_NEGATIVE_INTEGER) ||
      a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      a[2].type != MSGPACK_OBJECT_STR || a[3].type != MSGPACK_OBJECT_BIN ||
      a[3].via.bin.size != DISTC__FP_LEN) {
    distc__dec_close(&d);
    peer_close(p);
    return;
  }
  /* A worker started from outside (join.c) has no launch index: -1 asks
   * for the next one. */
  bool joiner = a[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
  int index = !joiner && a[0].via.u64 < 1 << 20 ? (int)a[0].via.u64 : -1;
  pid_t ospid = (pid_t)a[1].via.u64;
  char host[64];
  snprintf(host, sizeof host, "%.*s", (int)a[2].via.str.size, a[2].via.str.ptr);
  const unsigned char *fp = (const unsigned char *)a[3].via.bin.ptr;
  uint64_t probe = r->via.array.size >= 5 ? a[4].via.u64 : 0;
  /* Where it listens for other workers (peers.c); "" when it does not. */
  char link_local[64] = "", link_tcp[256] = "";
  if (r->via.array.size == 6) {
    const msgpack_object *l = a[5].via.array.ptr;
    snprintf(link_local, sizeof link_local, "%.*s", (int)l[0].via.str.size,
             l[0].via.str.ptr);
    snprintf(link_tcp, sizeof link_tcp, "%.*s", (int)l[1].via.str.size,
             l[1].via.str.ptr);
  }
  if (memcmp(fp, distc__fingerprint(), DISTC__FP_LEN) != 0) {
    char mine[17], theirs[17];
    distc__fingerprint_hex(distc__fingerprint(), mine);
    distc__fingerprint_hex(fp, theirs);
    code = DISTC_EFINGERPRINT;
    if (joiner)
      snprintf(why, sizeof why,
               "a joining worker (pid %d on %s) runs a different binary "
               "than the master (build %s, master %s): every process must "
               "run the same executable; start the master's program",
               (int)ospid, host, theirs, mine);
    else
      snprintf(why, sizeof why,
               "worker %d (pid %d on %s) runs a different binary than the "
               "master (build %s, master %s): every process must run the "
               "same executable; rebuild and copy it, or fix --exename",
               index >= 0 ? DISTC_INDEX_TO_ID(index) : -1, (int)ospid, host,
               theirs, mine);
  }
  distc__dec_close(&d);

  pthread_mutex_lock(&C->lock);
  if (joiner && !why[0])
    index = C->next_index++;
  int id = index >= 0 ? DISTC_INDEX_TO_ID(index) : -1;
  if (!why[0] && (index < 0 || index >= C->next_index))
    snprintf(why, sizeof why, "worker index %d was not launched by this run",
             index);
  if (!why[0] && distc__members_cap(id) < 0)
    snprintf(why, sizeof why, "out of memory");
  if (!why[0] && C->conns[id])
    snprintf(why, sizeof why, "worker %d has already joined", id);
  distc__conn *c = NULL;
  if (!why[0] && !(c = distc__conn_new(p->fd)))
    snprintf(why, sizeof why, "out of memory");
  if (why[0]) {
    /* A refused joiner fails nobody's start-up: the master keeps serving. */
    if (!joiner) {
      free(C->refused);
      C->refused = strdup(why);
      C->refused_code = code;
    }
    pthread_cond_broadcast(&C->changed);
    pthread_mutex_unlock(&C->lock);
    distc__log(DISTC__LOG_ERROR, "refused a worker: %s", why);
    refuse(p, why);
    peer_close(p);
    return;
  }
  c->id = id;
  c->cma = can_read_memory(ospid, probe);
  c->epfd = conn_epfd;
  c->epdata = p;
  c->index = index;
  c->ospid = ospid;
  memcpy(c->host, host, sizeof host);
  memcpy(c->link_local, link_local, sizeof link_local);
  memcpy(c->link_tcp, link_tcp, sizeof link_tcp);
  p->conn = c;
  p->fd = -1; /* the connection owns it now */

  /* WELCOME [id, [ids], cma, heartbeat s, misses] — sent before the worker
   * becomes visible, so no call can overtake it.  The worker takes our
   * liveness settings, so both ends agree on the deadline. */
  distc__enc e;
  distc__enc_init(&e);
  msgpack_pack_array(&e.pk, 5);
  msgpack_pack_int(&e.pk, id);
  msgpack_pack_array(&e.pk, (size_t)C->nids + 1);
  int k = 0;
  while (k < C->nids && C->ids[k] < id)
    msgpack_pack_int(&e.pk, C->ids[k++]);
  msgpack_pack_int(&e.pk, id);
  for (; k < C->nids; k++)
    msgpack_pack_int(&e.pk, C->ids[k]);
  if (c->cma)
    msgpack_pack_true(&e.pk);
  else
    msgpack_pack_false(&e.pk);
  msgpack_pack_double(&e.pk, distc__liveness_get()->interval_ns / 1e9);
  msgpack_pack_int(&e.pk, distc__liveness_get()->misses);
  int rc = distc__send_encoded(c, DISTC__F_WELCOME, 0, 0, &e);
  distc__enc_destroy(&e);
  if (rc < 0) {
    pthread_mutex_unlock(&C->lock);
    peer_close(p);
    return;
  }
  C->conns[id] = c;
  atomic_fetch_add(&c->refs, 1); /* the table's reference */
  int i = C->nids;
  while (i > 0 && C->ids[i - 1] > id) {
    C->ids[i] = C->ids[i - 1];
    i--;
  }
  C->ids[i] = id;
  C->nids++;
  /* Noted before anyone can see it in the table: a program that registers
   * its members callback once distc_init has its workers must not hear of
   * them as joining later. */
  distc__members_note(id, true);
  pthread_cond_broadcast(&C->changed);
  pthread_mutex_unlock(&C->lock);

  /* From now on the worker's socket is read through conn_epfd. */
  uv_poll_stop(&p->poll);
  uv_timer_stop(&p->timer);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = p};
  if (epoll_ctl(conn_epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
    distc__log(DISTC__LOG_ERROR, "cannot watch worker %d: %s", id,
               strerror(errno));
    distc__worker_lost(c);
    peer_close(p);
    return;
  }
  p->stage = 2;
  distc__log(DISTC__LOG_INFO, "worker %d joined (pid %d on %s)", id,
             (int)ospid, host);
}

static void on_handshake_timeout(uv_timer_t *t) {
  distc__gate_drop(DISTC__DROP_SLOW, distc__now());
  peer_close(t->data);
}

static void on_handshake(uv_poll_t *h, int status, int events) {
  (void)events;
  peer *p = h->data;
  if (status < 0)
    goto drop;
  size_t want = p->stage == 0 ? DISTC__HELLO2_LEN : DISTC__HDR_LEN;
  if (p->stage == 1 && p->have >= DISTC__HDR_LEN) {
    uint32_t len = (uint32_t)p->buf[0] | (uint32_t)p->buf[1] << 8 |
                   (uint32_t)p->buf[2] << 16 | (uint32_t)p->buf[3] << 24;
    want = DISTC__HDR_LEN + len;
  }
  ssize_t r = recv(p->fd, p->buf + p->have, want - p->have, MSG_DONTWAIT);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
    goto drop;
  if (r < 0)
    return;
  p->have += (size_t)r;
  if (p->have < want)
    return;

  if (p->stage == 0) {
    /* Nothing from the peer is interpreted before its MAC checks out. */
    unsigned char mine[DISTC__MAC_LEN];
    if (!distc__hs_check(p->nonce, p->buf, mine)) {
      distc__gate_drop(DISTC__DROP_AUTH, distc__now());
      goto drop;
    }
    if (send(p->fd, mine, sizeof mine, MSG_NOSIGNAL) != sizeof mine)
      goto drop;
    p->stage = 1;
    p->have = 0;
    /* Authenticated: out of the gate, with the rest of the handshake's
     * time to send its HELLO. */
    distc__gate_remove(&p->gate);
    uv_timer_start(&p->timer, on_handshake_timeout, HANDSHAKE_TIMEOUT_MS, 0);
    return;
  }
  if (p->have == DISTC__HDR_LEN) {
    uint32_t len = (uint32_t)p->buf[0] | (uint32_t)p->buf[1] << 8 |
                   (uint32_t)p->buf[2] << 16 | (uint32_t)p->buf[3] << 24;
    if (p->buf[4] != DISTC__F_HELLO || len > HELLO_MAX)
      goto drop;
    if (len > 0)
      return; /* read the payload next time */
  }
  admit(p, (uint32_t)(p->have - DISTC__HDR_LEN));
  return;
drop:
  peer_close(p);
}

static void listeners(bool on) {
  distc__cluster *C = &distc__C;
  uv_poll_t *ls[] = {&C->listen_poll, C->local_fd >= 0 ? &C->local_poll : NULL,
                     remote_polling ? &C->remote_poll : NULL,
                     distc__join_poll()};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(ls); i++)
    if (ls[i]) {
      if (on)
        uv_poll_start(ls[i], UV_READABLE, distc__master_on_listen);
      else
        uv_poll_stop(ls[i]);
    }
}

static void on_accept_timer(uv_timer_t *t) {
  (void)t;
  accept_paused = false;
  if (!distc__stopping)
    listeners(true);
}

/* Stops accepting for ms: the connections wait in the kernel's backlog,
 * and the listening sockets, which stay readable, cannot make us spin. */
static void pause_accepting(int ms) {
  if (accept_paused)
    return;
  accept_paused = true;
  listeners(false);
  uv_timer_start(&accept_timer, on_accept_timer, (uint64_t)ms, 0);
}

#define ACCEPT_BATCH 32 /* per wake-up, so handshakes get turns */

void distc__master_on_listen(uv_poll_t *h, int status, int events) {
  (void)events;
  distc__cluster *C = &distc__C;
  int lfd;
  if (status < 0 || uv_fileno((uv_handle_t *)h, &lfd) != 0)
    return;
  for (int k = 0; k < ACCEPT_BATCH; k++) {
    double now = distc__now();
    distc__gate_entry *old;
    int wait_ms = distc__gate_room(now, &old);
    if (wait_ms > 0) {
      pause_accepting(wait_ms);
      return;
    }
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        /* Out of descriptors: free the oldest unauthenticated one if it
         * had its chance, and look again shortly. */
        if ((old = distc__gate_oldest()) &&
            now - old->born >= DISTC__GATE_MIN_AGE_MS * 1e6) {
          distc__gate_drop(DISTC__DROP_EVICTED, now);
          peer_close(PEER_OF_GATE(old));
        }
        pause_accepting(50);
      }
      return;
    }
    if (old) {
      distc__gate_drop(DISTC__DROP_EVICTED, now);
      peer_close(PEER_OF_GATE(old));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer *p = calloc(1, sizeof *p);
    unsigned char m1[DISTC__HELLO1_LEN];
    if (!p || distc__random(p->nonce, sizeof p->nonce) < 0) {
      free(p);
      close(fd);
      continue;
    }
    distc__hs_hello1(m1, p->nonce);
    p->fd = fd;
    uv_poll_init(&C->loop, &p->poll, fd);
    uv_timer_init(&C->loop, &p->timer);
    p->poll.data = p->timer.data = p;
    distc__gate_add(&p->gate, now);
    if (send(fd, m1, sizeof m1, MSG_NOSIGNAL) != sizeof m1) {
      peer_close(p);
      continue;
    }
    uv_poll_start(&p->poll, UV_READABLE, on_handshake);
    /* A worker answers at once; a short first deadline keeps idle
     * connections from holding their descriptors. */
    uv_timer_start(&p->timer, on_handshake_timeout, DISTC__GATE_FIRST_MS, 0);
  }
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  if (h->data && (h->type == UV_POLL || h->type == UV_TIMER) &&
      h != (uv_handle_t *)&distc__C.listen_poll &&
      h != (uv_handle_t *)&distc__C.remote_poll &&
      h != (uv_handle_t *)&distc__C.local_poll &&
      h != (uv_handle_t *)&conn_poll) {
    peer_close(h->data);
    return;
  }
  uv_close(h, NULL);
}

static void on_wake(uv_async_t *a) {
  (void)a;
  distc__cluster *C = &distc__C;
  pthread_mutex_lock(&C->lock);
  if (C->remote_pending && !distc__stopping) {
    C->remote_pending = false;
    if (uv_poll_init(&C->loop, &C->remote_poll, C->remote_fd) == 0) {
      remote_polling = true;
      if (!accept_paused)
        uv_poll_start(&C->remote_poll, UV_READABLE, distc__master_on_listen);
    }
  }
  pthread_mutex_unlock(&C->lock);
  if (!distc__stopping) {
    distc__join_on_wake(&C->loop);
    distc__interrupt_on_wake();
  }
  if (distc__stopping)
    uv_walk(&distc__C.loop, close_walk, NULL);
}

static void io_main(void *arg) {
  (void)arg;
  distc__conn_set_io_thread();
  uv_run(&distc__C.loop, UV_RUN_DEFAULT);
}

/* ---- start ---- */

static int env_int(const char *name, int dflt) {
  const char *s = getenv(name);
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  return (s && *end == '\0' && v >= 0) ? (int)v : dflt;
}

static int read_exact(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int open_listener(void) {
  distc__cluster *C = &distc__C;
  int fd = env_int(DISTC_ENV_LISTEN_FD, -1);
  if (fd < 0) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(fd, 1024) < 0) {
      int e = errno;
      if (fd >= 0)
        close(fd);
      return distc__seterr(DISTC_EIO, "cannot listen on 127.0.0.1: %s",
                           strerror(e));
    }
  }
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
      sa.sin_family != AF_INET)
    return distc__seterr(DISTC_EIO, "%s=%d is not a listening TCP socket",
                         DISTC_ENV_LISTEN_FD, fd);
  char ip[INET_ADDRSTRLEN] = "127.0.0.1";
  if (sa.sin_addr.s_addr != htonl(INADDR_ANY))
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  snprintf(C->master_addr, sizeof C->master_addr, "%s:%d", ip,
           ntohs(sa.sin_port));
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  distc__set_nonblock(fd, true);
  C->listen_fd = fd;
  return 0;
}

static void report(const char *word, const char *msg) {
  if (control_fd < 0)
    return;
  char line[1024];
  int n = snprintf(line, sizeof line, "%s%s%s\n", word, msg ? " " : "",
                   msg ? msg : "");
  for (char *q = line; q < line + n - 1; q++)
    if (*q == '\n')
      *q = ' ';
  if (write(control_fd, line, (size_t)n) < 0) {
    /* The launcher is gone; nothing to tell. */
  }
  if (strcmp(word, "ready") == 0) {
    atomic_store(&control_ready, true);
    return;
  }
  close(control_fd);
  control_fd = -1;
}

/* How many of the launch indices [first, first + n) have joined. */
static int joined_in(int first, int n) {
  distc__cluster *C = &distc__C;
  int joined = 0;
  pthread_mutex_lock(&C->lock);
  for (int i = first; i < first + n; i++) {
    int id = DISTC_INDEX_TO_ID(i);
    joined += id < C->conncap && C->conns[id] != NULL;
  }
  pthread_mutex_unlock(&C->lock);
  return joined;
}

/* Waits until every index in [first, first + n) has joined, a worker was
 * refused, or the deadline passes; alive (may be NULL) says whether the
 * workers are still running; hosts (may be NULL) maps the indices to their
 * hosts for the progress line.  Returns 0 or an error with its message. */
int distc__await_workers(int first, int n, double deadline,
                          bool (*alive)(void *), void *arg, const char *hosts) {
  distc__cluster *C = &distc__C;
  int rc = 0, joined = 0;
  distc__launch_progress lp;
  distc__launch_progress_start(&lp, first, n, hosts, joined_in);
  pthread_mutex_lock(&C->lock);
  for (;;) {
    joined = 0;
    for (int i = first; i < first + n; i++) {
      int id = DISTC_INDEX_TO_ID(i);
      joined += id < C->conncap && C->conns[id] != NULL;
    }
    if (joined == n)
      break;
    if (C->refused) {
      rc = distc__seterr(C->refused_code ? C->refused_code : DISTC_EPROTO,
                         "%s", C->refused);
      break;
    }
    double now = distc__now();
    if (now >= deadline) {
      rc = distc__seterr(DISTC_ETIMEDOUT,
                         "only %d of %d workers connected in time; raise the "
                         "timeout, or check that the workers can reach the "
                         "master at %s",
                         joined, n, C->master_addr);
      break;
    }
    pthread_mutex_unlock(&C->lock);
    distc__launch_progress_update(&lp, joined, n);
    bool gone = alive && !alive(arg);
    pthread_mutex_lock(&C->lock);
    if (gone) {
      rc = distc__seterr(DISTC_ESPAWN,
                         "a worker exited before connecting to the master (%d "
                         "of %d had joined); is the program linked with "
                         "libdistc and does it call distc_init() first?",
                         joined, n);
      break;
    }
    double until = now + 20e6 < deadline ? now + 20e6 : deadline;
    distc__cond_wait_ns(&C->changed, &C->lock, until - now);
  }
  pthread_mutex_unlock(&C->lock);
  distc__launch_progress_end(&lp, joined, n);
  return rc;
}

static void at_exit(void) { distc_finalize(); }

int distc__master_init(void) {
  distc__cluster *C = &distc__C;
  int rc;
  control_fd = env_int(DISTC_ENV_CONTROL_FD, -1);
  int nworkers = env_int(DISTC_ENV_NWORKERS, 0);
  double timeout = 60;
  const char *ts = getenv(DISTC_ENV_TIMEOUT);
  if (ts && atof(ts) > 0)
    timeout = atof(ts);
  int secret_fd = env_int(DISTC_ENV_SECRET_FD, -1);
  pid_t parent = (pid_t)env_int(DISTC_ENV_PARENT, 0);
  if (parent > 0) {
    /* Started by distc-launch: if it dies, nobody could stop our workers'
     * master, so go with it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
  }
  if (secret_fd >= 0) {
    if (read_exact(secret_fd, C->secret, DISTC_SECRET_LEN) < 0) {
      rc = distc__seterr(DISTC_EAUTH, "could not read the cluster secret "
                                      "from the launcher");
      goto fail;
    }
    close(secret_fd);
  } else if ((rc = distc__random(C->secret, DISTC_SECRET_LEN)) < 0) {
    goto fail;
  }
  distc__transport forced;
  if ((rc = distc__transport_forced(&forced)) < 0 ||
      (rc = open_listener()) < 0)
    goto fail;
  /* The launcher's same-host socket, or one of our own for addprocs; we
   * work without (TCP only) if neither can be had. */
  int lfd = env_int(DISTC_ENV_LISTEN_LOCAL_FD, -1);
  if (lfd >= 0) {
    struct sockaddr_un su;
    socklen_t sl = sizeof su;
    if (getsockname(lfd, (struct sockaddr *)&su, &sl) == 0 &&
        su.sun_family == AF_UNIX && sl > offsetof(struct sockaddr_un, sun_path) + 1 &&
        su.sun_path[0] == '\0') {
      size_t n = sl - offsetof(struct sockaddr_un, sun_path) - 1;
      snprintf(C->local_addr, sizeof C->local_addr, "@%.*s", (int)n,
               su.sun_path + 1);
      C->local_fd = lfd;
      fcntl(lfd, F_SETFD, FD_CLOEXEC);
    }
  } else if (distc__local_listener(C->local_addr, sizeof C->local_addr,
                                  &C->local_fd) < 0) {
    C->local_fd = -1;
  }
  if (C->local_fd >= 0)
    distc__set_nonblock(C->local_fd, true);
  if ((rc = distc__join_adopt()) < 0)
    goto fail;
  int min_workers = env_int(DISTC_ENV_MIN_WORKERS, -1);
  const char *ours[] = {DISTC_ENV_ROLE, DISTC_ENV_SECRET_FD, DISTC_ENV_LISTEN_FD,
                        DISTC_ENV_NWORKERS, DISTC_ENV_CONTROL_FD,
                        DISTC_ENV_TIMEOUT, DISTC_ENV_PARENT,
                        DISTC_ENV_LISTEN_LOCAL_FD, DISTC_ENV_JOIN_FD,
                        DISTC_ENV_JOIN_ADDR, DISTC_ENV_JOIN_KEY_FILE,
                        DISTC_ENV_MIN_WORKERS};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(ours); i++)
    unsetenv(ours[i]);
  if (control_fd >= 0) {
    fcntl(control_fd, F_SETFD, FD_CLOEXEC);
    /* The I/O thread reports lost workers on it: never block there. */
    fcntl(control_fd, F_SETFL, fcntl(control_fd, F_GETFL) | O_NONBLOCK);
    launcher_workers = nworkers;
  }

  C->next_index = nworkers;
  distc__log_setid(1);
  conn_epfd = epoll_create1(EPOLL_CLOEXEC);
  if (conn_epfd < 0 || uv_loop_init(&C->loop) ||
      uv_async_init(&C->loop, &C->wake, on_wake) ||
      uv_poll_init(&C->loop, &C->listen_poll, C->listen_fd) ||
      uv_poll_start(&C->listen_poll, UV_READABLE, distc__master_on_listen) ||
      uv_poll_init(&C->loop, &conn_poll, conn_epfd) ||
      uv_poll_start(&conn_poll, UV_READABLE, on_workers_io) ||
      uv_timer_init(&C->loop, &live_timer) ||
      uv_timer_init(&C->loop, &accept_timer) ||
      (C->local_fd >= 0 &&
       (uv_poll_init(&C->loop, &C->local_poll, C->local_fd) ||
        uv_poll_start(&C->local_poll, UV_READABLE, distc__master_on_listen)))) {
    rc = distc__seterr(DISTC_EIO, "cannot set up the event loop");
    goto fail;
  }
  live_timer.data = accept_timer.data = NULL; /* not a peer's (close_walk) */
  double beat = distc__liveness_get()->interval_ns / 1e6;
  if (beat > 0) {
    /* Four looks per interval: a silent peer is lost within a quarter
     * interval of its deadline. */
    uint64_t every = beat / 4 < 5 ? 5 : (uint64_t)(beat / 4);
    uv_timer_start(&live_timer, on_live_timer, every, every);
  }
  if (uv_thread_create(&C->io_thread, io_main, NULL) != 0) {
    rc = distc__seterr(DISTC_EIO, "cannot start the I/O thread");
    goto fail;
  }
  C->io_running = true;
  C->initialised = true;
  atexit(at_exit);
  uv_async_send(&C->wake); /* polls the door, if distc-launch opened one */

  /* --min-workers: start once that many are present, launched or joined;
   * the rest keep joining. */
  if (min_workers >= 0) {
    rc = distc_wait_workers(min_workers, timeout);
    if (rc >= 0)
      rc = 0;
  } else {
    rc = distc__await_workers(0, nworkers, distc__now() + timeout * 1e9, NULL, NULL,
                       getenv(DISTC_ENV_WORKER_HOSTS));
  }
  if (rc < 0) {
    report("fail", distc_errmsg());
    return rc;
  }
  report("ready", NULL);
  /* Under distc-launch, a first Ctrl-C interrupts the workers' calls
   * (interrupt.c); installed only now, so one during the start still stops
   * it at once. */
  if (parent > 0)
    distc__interrupt_sigint_install();
  return 0;
fail:
  report("fail", distc_errmsg());
  return rc;
}

int distc__master_finalize(void) {
  distc__cluster *C = &distc__C;
  distc__interrupt_sigint_stop(); /* its wake-up is about to close */
  distc__join_stop();
  /* Every worker, however many: the count first, then room for them (one
   * may join in between; distc_workers never writes past max). */
  int n = C->nids ? distc_workers(NULL, 0) : 0;
  int *ids = n > 0 ? calloc((size_t)n, sizeof *ids) : NULL;
  if (ids != NULL) {
    int now = distc_workers(ids, n);
    n = now < n ? now : n;
  } else {
    n = 0;
  }
  int rc = n ? distc_rmprocs(ids, n) : 0;
  free(ids);
  /* Under the lock: the I/O thread may be asking them to kill a worker. */
  pthread_mutex_lock(&C->addprocs_lock);
  for (int i = 0; i < C->nmanagers; i++) {
    distc__manager_stop(&C->managers[i], SIGTERM, 1.0, NULL, NULL);
    distc__manager_close(&C->managers[i]);
  }
  free(C->managers);
  C->managers = NULL;
  C->nmanagers = 0;
  pthread_mutex_unlock(&C->addprocs_lock);

  distc__stopping = true;
  if (C->io_running) {
    uv_async_send(&C->wake);
    uv_thread_join(&C->io_thread);
    C->io_running = false;
    free(kill_pending);
    kill_pending = NULL;
    nkill_pending = capkill_pending = 0;
    uv_loop_close(&C->loop);
  }
  distc__join_close();
  if (conn_epfd >= 0)
    close(conn_epfd);
  conn_epfd = -1;
  distc__gate_flush();
  distc__service_stop();

  pthread_mutex_lock(&C->lock);
  for (int i = 0; i < C->conncap; i++) {
    if (C->conns[i] && C->conns[i] != DISTC__GONE)
      distc__conn_unref(C->conns[i]);
    C->conns[i] = NULL;
  }
  free(C->conns);
  free(C->ids);
  free(C->refused);
  C->conns = NULL;
  C->ids = NULL;
  C->refused = NULL;
  C->conncap = C->nids = 0;
  pthread_mutex_unlock(&C->lock);
  if (C->listen_fd >= 0)
    close(C->listen_fd);
  C->listen_fd = -1;
  if (C->local_fd >= 0)
    close(C->local_fd);
  C->local_fd = -1;
  if (C->remote_fd >= 0)
    close(C->remote_fd);
  C->remote_fd = -1;
  C->finalised = true;
  return rc;
}

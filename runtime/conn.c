/* conn.c — one authenticated connection: framed writes, framed reads, and
 * the table of calls waiting for an answer on it.
 *
 * Writers (any thread) send whole frames under wlock with sendmsg, so a large
 * array goes from the value's memory to the socket without an intermediate
 * copy.  On the master, what a full socket does not take is copied into the
 * connection's send queue (up to a high-water mark) and written by the I/O
 * thread, so no caller waits on a slow or stopped worker; past the mark a
 * caller waits, until there is room or the worker is lost.  Exactly one
 * thread at a time reads (rlock): whichever thread is waiting for an answer
 * and spinning, or the I/O thread when nobody is. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "ring.h"

/* Frames of the shared-memory switch, outside the normal type range: they
 * never leave conn.c.  SHM (worker -> master, a memfd attached): the rings;
 * SHM_ACK (master -> worker, flags 1: accepted): everything after it comes
 * through the ring; SHM_ON (worker -> master): the same the other way. */
#define F_SHM 0xF0
#define F_SHM_ACK 0xF1
#define F_SHM_ON 0xF2
/* A reader with an empty ring looks at its socket (for its end) at least
 * this often even without a doorbell. */
#define PROBE_NS 1e6
#define PROBE_EVERY 256

#define STAGE_SIZE 65536
/* Frames from this size on get a "send" span when tracing. */
#define TRACE_SEND_MIN ((size_t)1 << 20)

static void rearm(distc__conn *c);
static size_t drain_ring_queue(distc__conn *c);

/* Only the connection's reader bumps it: no atomic read-modify-write. */
static inline void count_rx(distc__conn *c, size_t n) {
  atomic_store_explicit(
      &c->rx_bytes,
      atomic_load_explicit(&c->rx_bytes, memory_order_relaxed) + n,
      memory_order_relaxed);
}

int distc__set_nonblock(int fd, bool on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return DISTC_EIO;
  fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
  return fcntl(fd, F_SETFL, fl) < 0 ? DISTC_EIO : 0;
}

distc__conn *distc__conn_new(int fd) {
  distc__conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->stage = malloc(STAGE_SIZE);
  if (!c->stage) {
    free(c);
    return NULL;
  }
  c->fd = fd;
  c->epfd = -1;
  c->fd_in = -1;
  atomic_init(&c->refs, 1);
  pthread_mutex_init(&c->qlock, NULL);
  pthread_mutex_init(&c->wlock, NULL);
  pthread_mutex_init(&c->rlock, NULL);
  pthread_mutex_init(&c->plock, NULL);
  pthread_cond_init(&c->wcond, NULL);
  distc__set_nonblock(fd, true);
  return c;
}

void distc__conn_unref(distc__conn *c) {
  if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  if (c->fd >= 0)
    close(c->fd);
  if (c->fd_in >= 0)
    close(c->fd_in);
  distc__shm_unmap(c->shm);
  free(c->stage);
  distc__free(c->partial.payload);
  free(c->pending.keys);
  free(c->pending.vals);
  free(c->linebuf);
  free(c->sq);
  pthread_cond_destroy(&c->wcond);
  pthread_mutex_destroy(&c->wlock);
  pthread_mutex_destroy(&c->rlock);
  pthread_mutex_destroy(&c->plock);
  pthread_mutex_destroy(&c->qlock);
  free(c);
}

void distc__conn_quiet(distc__conn *c, bool on) {
  if (c->epfd < 0)
    return;
  pthread_mutex_lock(&c->qlock);
  bool was = c->spinners > 0;
  c->spinners += on ? 1 : -1;
  /* Hang-ups and errors are reported even with no events asked for, so a
   * worker that dies while we spin is still noticed. */
  if (was != (c->spinners > 0))
    rearm(c);
  pthread_mutex_unlock(&c->qlock);
}

void distc__conn_spinning(distc__conn *c, bool on) {
  if (!c->rx)
    return;
  pthread_mutex_lock(&c->qlock);
  c->ring_spinners += on ? 1 : -1;
  if (c->ring_spinners < 0) /* began before the switch to the ring */
    c->ring_spinners = 0;
  bool stopped = !on && c->ring_spinners == 0;
  if (on && c->ring_spinners == 1)
    atomic_store(&c->rx->rd_spin, 1);
  pthread_mutex_unlock(&c->qlock);
  if (stopped) {
    atomic_store(&c->rx->rd_spin, 0);
    distc__conn_drain_unbelled(c);
  }
}

void distc__conn_drain_unbelled(distc__conn *c) {
  /* Bytes that came meanwhile came without a doorbell: read them now, or
   * nobody would.  Another reader holding the role reads them too, or lets
   * go and we take it.  A thread still spinning or asleep on the ring will
   * read them itself. */
  atomic_thread_fence(memory_order_seq_cst);
  while ((distc__ring_used(c->rx) > 0 || c->stage_len > c->stage_off) &&
         !atomic_load(&c->rx->rd_spin) && !atomic_load(&c->rx->rd_sleep) &&
         !atomic_load(&c->dead)) {
    if (distc__master_pump(c, false) != 0)
      break;
    sched_yield();
  }
}

static void ring_bell(distc__conn *c, distc__ring *r) {
  atomic_fetch_add(&r->bells, 1);
  char b = 0;
  if (send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    /* Full of doorbells already, or the peer is gone: either way it is
     * told. */
  }
}

/* Producer, after publishing bytes: nothing while the reader spins; the
 * futex while it sleeps on the ring (it reads everything when it wakes);
 * else the doorbell byte, for a reader asleep on the socket (an epoll or
 * poll loop, which a futex cannot join). */
static void tx_bell(distc__conn *c) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&c->tx->rd_spin, memory_order_relaxed))
    return;
  if (atomic_load_explicit(&c->tx->rd_sleep, memory_order_relaxed))
    distc__ring_wake(c->tx);
  else
    ring_bell(c, c->tx);
}

bool distc__conn_spin(distc__conn *c, bool on) {
  distc__ring *r = c->rx;
  if (!r)
    return false;
  /* Stores only on a change: the writer reads this line on every frame. */
  if (on) {
    if (!atomic_load_explicit(&r->rd_spin, memory_order_relaxed))
      atomic_store_explicit(&r->rd_spin, 1, memory_order_relaxed);
    return false;
  }
  if (atomic_load_explicit(&r->rd_spin, memory_order_relaxed))
    atomic_store_explicit(&r->rd_spin, 0, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
  return distc__ring_used(r) > 0 || c->stage_len > c->stage_off;
}

size_t distc__conn_ring_unread(distc__conn *c) {
  return c->rx ? distc__ring_used(c->rx) : 0;
}

bool distc__conn_on_ring(distc__conn *c) { return atomic_load(&c->on_ring); }

ssize_t distc__conn_write_some(distc__conn *c, const void *p, size_t n) {
  if (!c->tx)
    return send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  struct iovec v = {(void *)p, n};
  size_t w = distc__ring_writev(c->tx, &c->tx_head, &v, 1);
  if (w == 0) {
    errno = EAGAIN;
    return -1;
  }
  tx_bell(c);
  return (ssize_t)w;
}

static void put_hdr(unsigned char *b, uint32_t len, uint8_t type,
                    uint8_t flags, uint64_t id) {
  for (int i = 0; i < 4; i++)
    b[i] = (unsigned char)(len >> (8 * i));
  b[4] = type;
  b[5] = flags;
  b[6] = b[7] = 0;
  for (int i = 0; i < 8; i++)
    b[8 + i] = (unsigned char)(id >> (8 * i));
}

static void get_hdr(const unsigned char *b, distc__hdr *h) {
  h->len = 0;
  for (int i = 0; i < 4; i++)
    h->len |= (uint32_t)b[i] << (8 * i);
  h->type = b[4];
  h->flags = b[5];
  h->id = 0;
  for (int i = 0; i < 8; i++)
    h->id |= (uint64_t)b[8 + i] << (8 * i);
}

int distc__conn_poll(distc__conn *c, int timeout_ms) {
  if (c->rx) {
    /* On the ring the reader sleeps on its futex: one wake-up, and no
     * doorbell byte to write and read.  The socket's end needs no watch
     * here: the worker's I/O thread exits the process on it. */
    uint32_t seq = distc__ring_sleep_begin(c->rx);
    if (!distc__conn_spin(c, false))
      distc__ring_sleep_wait(c->rx, seq, timeout_ms);
    distc__ring_sleep_end(c->rx);
    return 1;
  }
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  int r;
  do
    r = poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  return r;
}

/* Whether the peer closed its end of c's socket (its rings then stay
 * full forever). */
static bool hung_up(distc__conn *c) {
  struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
  return poll(&p, 1, 0) > 0 &&
         (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* Waits up to timeout_ms until fd can take more bytes; the socket is
 * non-blocking because the I/O thread polls it.  -1: the socket broke. */
static int wait_writable(int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  int r = poll(&p, 1, timeout_ms);
  if (r < 0 && errno == EINTR)
    return 0;
  return (r < 0 || (p.revents & (POLLERR | POLLHUP))) ? -1 : 0;
}

/* The high-water mark of a send queue: a caller whose frame would take the
 * queue past it waits (for room, or for the peer to be declared lost) instead
 * of copying more.  Small calls to a stopped worker queue and return; a large
 * one waits, bounded by liveness. */
#define SQ_HWM ((size_t)4 << 20)
/* How often a waiting sender looks again whether its peer is gone. */
#define SEND_RECHECK_MS 50

static _Thread_local bool in_io_thread;

void distc__conn_set_io_thread(void) { in_io_thread = true; }

/* Under qlock: the events the I/O thread watches c for. */
static void rearm(distc__conn *c) {
  struct epoll_event ev = {
      .events = (c->spinners ? 0 : EPOLLIN | EPOLLRDHUP) |
                (c->want_out && !c->tx ? EPOLLOUT : 0),
      .data.ptr = c->epdata};
  epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void want_out(distc__conn *c, bool on) {
  pthread_mutex_lock(&c->qlock);
  if (c->want_out != on) {
    c->want_out = on;
    rearm(c);
  }
  pthread_mutex_unlock(&c->qlock);
}

static size_t iov_bytes(const struct iovec *v, int n) {
  size_t t = 0;
  for (int i = 0; i < n; i++)
    t += v[i].iov_len;
  return t;
}

/* Under wlock: appends the rest of a frame to the queue. */
static int enqueue(distc__conn *c, const struct iovec *v, int n) {
  size_t add = iov_bytes(v, n), used = c->sq_len - c->sq_off;
  if (c->sq_off > 0 && used + add > c->sq_cap - c->sq_off) {
    memmove(c->sq, c->sq + c->sq_off, used);
    c->sq_off = 0;
    c->sq_len = used;
  }
  if (c->sq_len + add > c->sq_cap) {
    size_t cap = c->sq_cap ? c->sq_cap : 4096;
    while (cap < c->sq_len + add)
      cap *= 2;
    char *q = realloc(c->sq, cap);
    if (!q)
      return DISTC_ENOMEM;
    c->sq = q;
    c->sq_cap = cap;
  }
  for (int i = 0; i < n; i++) {
    memcpy(c->sq + c->sq_len, v[i].iov_base, v[i].iov_len);
    c->sq_len += v[i].iov_len;
  }
  if (c->tx) {
    drain_ring_queue(c);
    return 0;
  }
  if (used == 0)
    want_out(c, true);
  return 0;
}

/* Under wlock, on the ring: moves queued bytes into it; how many. */
static size_t drain_ring_queue(distc__conn *c) {
  size_t moved = 0;
  while (c->sq_len > c->sq_off) {
    struct iovec v = {c->sq + c->sq_off, c->sq_len - c->sq_off};
    size_t w = distc__ring_writev(c->tx, &c->tx_head, &v, 1);
    c->sq_off += w;
    moved += w;
    if (c->sq_len == c->sq_off)
      break;
    /* Full: the reader rings when it makes room (then the I/O thread, or
     * whoever pumps the connection, moves the rest). */
    atomic_store(&c->tx->wr_wait, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (distc__ring_used(c->tx) == DISTC__RING_CAP)
      break;
  }
  if (moved)
    tx_bell(c);
  if (c->sq_len == c->sq_off)
    c->sq_off = c->sq_len = 0;
  return moved;
}

static int send_frame(distc__conn *c, uint8_t type, uint8_t flags, uint64_t id,
                      const struct iovec *iov, int iovcnt, bool nowait) {
  struct iovec small[64], *v = small;
  unsigned char hdr[DISTC__HDR_LEN];
  size_t total = 0;
  if (iovcnt + 1 > (int)DISTC__ARRAY_LEN(small) &&
      !(v = malloc(sizeof *v * ((size_t)iovcnt + 1))))
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (total > distc__max_frame()) {
    if (v != small)
      free(v);
    return distc__seterr(DISTC_ETOOBIG,
                         "message of %zu bytes exceeds the frame limit of %zu "
                         "bytes (set DISTC_MAX_FRAME to raise it)",
                         total, distc__max_frame());
  }
  put_hdr(hdr, (uint32_t)total, type, flags, id);
  v[0].iov_base = hdr;
  v[0].iov_len = sizeof hdr;
  if (iovcnt > 0)
    memcpy(v + 1, iov, sizeof *iov * (size_t)iovcnt);
  int n = iovcnt + 1, first = 0, rc = 0;
  /* Large frames are transfers worth seeing on the timeline. */
  uint64_t t0 = distc__tracing() && total >= TRACE_SEND_MIN
                    ? distc__trace_now() : 0;
  nowait = nowait || in_io_thread;
  bool queueing = c->epfd >= 0, started = false;

  pthread_mutex_lock(&c->wlock);
  while (first < n) {
    if (atomic_load(&c->dead)) {
      rc = DISTC_EPROCEXIT;
      break;
    }
    size_t rest = total + DISTC__HDR_LEN; /* upper bound once started */
    if (!started && c->sq_len > c->sq_off) {
      /* Frames stay in order: behind the queue, or wait for room. */
      if (nowait || c->sq_len - c->sq_off + rest <= SQ_HWM) {
        rc = enqueue(c, v + first, n - first);
        break;
      }
      if (c->tx) {
        if (drain_ring_queue(c) == 0)
          distc__ring_wait_room(c->tx, SEND_RECHECK_MS);
        continue;
      }
      distc__cond_wait_ns(&c->wcond, &c->wlock, SEND_RECHECK_MS * 1e6);
      continue;
    }
    int k = n - first < IOV_MAX ? n - first : IOV_MAX;
    ssize_t w;
    if (c->tx) {
      w = (ssize_t)distc__ring_writev(c->tx, &c->tx_head, v + first, n - first);
      if (w > 0)
        tx_bell(c);
      else {
        w = -1;
        errno = EAGAIN;
      }
    } else {
      struct msghdr m = {.msg_iov = v + first, .msg_iovlen = (size_t)k};
      w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (queueing && (nowait || iov_bytes(v + first, n - first) <= SQ_HWM)) {
          rc = enqueue(c, v + first, n - first);
          break;
        }
        if (nowait && !started) {
          rc = DISTC_EIO;
          break;
        }
        /* A large frame goes out directly (the queue is empty), waiting
         * for room a little at a time so a lost peer ends the wait. */
        if (c->is_link)
          distc__link_drain(c);
        if (c->tx) {
          distc__ring_wait_room(c->tx, SEND_RECHECK_MS);
          /* A worker's link to another worker: nobody else notices that
           * reader's death while we wait (the master's link ends the
           * worker instead). */
          if (c->epfd < 0 ? !(c->is_link && hung_up(c))
                          : !atomic_load(&c->dead))
            continue;
        } else if (wait_writable(c->fd, SEND_RECHECK_MS) == 0)
          continue;
      }
      rc = DISTC_EPROCEXIT;
      break;
    }
    started = true;
    while (first < n && (size_t)w >= v[first].iov_len)
      w -= (ssize_t)v[first++].iov_len;
    if (first < n) {
      v[first].iov_base = (char *)v[first].iov_base + w;
      v[first].iov_len -= (size_t)w;
    }
  }
  if (rc == DISTC_ENOMEM && started)
    shutdown(c->fd, SHUT_RDWR); /* half a frame sent: the stream is lost */
  if (rc == 0)
    atomic_store_explicit(&c->tx_frames,
                          atomic_load_explicit(&c->tx_frames,
                                               memory_order_relaxed) + 1,
                          memory_order_relaxed);
  pthread_mutex_unlock(&c->wlock);
  if (v != small)
    free(v);
  if (rc == DISTC_ENOMEM)
    distc__seterr(rc, "out of memory queueing a message for process %d",
                  c->id);
  else if (rc == DISTC_EIO)
    distc__seterr(rc, "process %d is not reading its connection", c->id);
  else if (rc)
    distc__seterr(rc, "process %d exited (connection lost)", c->id);
  else
    distc__stat_add(&c->st.bytes_out, total + DISTC__HDR_LEN);
  if (t0)
    distc__trace_span("transfer", "send", t0, "\"to\":%d,\"bytes\":%zu",
                      c->id, total);
  return rc;
}

int distc__conn_send(distc__conn *c, uint8_t type, uint8_t flags, uint64_t id,
                     const struct iovec *iov, int iovcnt) {
  return send_frame(c, type, flags, id, iov, iovcnt, false);
}

int distc__conn_send_nowait(distc__conn *c, uint8_t type, uint8_t flags,
                            uint64_t id, const struct iovec *iov, int iovcnt) {
  return send_frame(c, type, flags, id, iov, iovcnt, true);
}

int distc__conn_flush(distc__conn *c) {
  if (pthread_mutex_trylock(&c->wlock) != 0)
    return 0; /* a sender holds it; it queues behind or writes itself */
  int rc = 0;
  if (c->tx) {
    if (c->sq_len == c->sq_off) {
      pthread_mutex_unlock(&c->wlock);
      return 0;
    }
    drain_ring_queue(c);
    if (c->sq_len == c->sq_off && c->sq_cap > 65536) {
      free(c->sq);
      c->sq = NULL;
      c->sq_cap = 0;
    }
    pthread_cond_broadcast(&c->wcond);
    pthread_mutex_unlock(&c->wlock);
    return 0;
  }
  while (c->sq_len > c->sq_off) {
    ssize_t w = send(c->fd, c->sq + c->sq_off, c->sq_len - c->sq_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        rc = DISTC_EPROCEXIT;
      break;
    }
    c->sq_off += (size_t)w;
  }
  if (c->sq_len == c->sq_off || rc < 0) {
    c->sq_off = c->sq_len = 0;
    want_out(c, false);
    if (c->sq_cap > 65536) { /* a stall is over: give its memory back */
      free(c->sq);
      c->sq = NULL;
      c->sq_cap = 0;
    }
  }
  pthread_cond_broadcast(&c->wcond);
  pthread_mutex_unlock(&c->wlock);
  return rc;
}

void distc__conn_wake_senders(distc__conn *c) {
  pthread_cond_broadcast(&c->wcond);
}

int distc__send_encoded(distc__conn *c, uint8_t type, uint8_t flags,
                        uint64_t id, distc__enc *e) {
  /* Head, msgpack part, and one entry per segment at most. */
  struct iovec small[64], *iov = small;
  int max = (int)DISTC__ARRAY_LEN(small);
  if (e->nsegs + 2 > (size_t)max) {
    max = (int)e->nsegs + 2;
    if (!(iov = malloc(sizeof *iov * (size_t)max)))
      return distc__seterr(DISTC_ENOMEM, "out of memory");
  }
  size_t total;
  int n = distc__enc_finish(e, iov, max, &total);
  if (n >= 0)
    n = distc__conn_send(c, type, flags, id, iov, n);
  if (iov != small)
    free(iov);
  return n;
}

/* Fills the staging buffer with whatever the socket has.  Returns bytes
 * read, 0 for nothing available, or < 0 when the connection is over. */
/* Reads up to n bytes from the ring into p; 0 when it is empty and the
 * socket says nothing new; < 0 once the peer's end is reached and the ring
 * is empty (a peer that wrote and then died is read to its last byte). */
static ssize_t ring_in(distc__conn *c, char *p, size_t n) {
  for (;;) {
    size_t r = distc__ring_read(c->rx, p, n);
    if (r > 0) {
      count_rx(c, r);
      if (distc__ring_room_made(c->rx))
        ring_bell(c, c->tx); /* its writer waits for room */
      return (ssize_t)r;
    }
    uint64_t b = atomic_load_explicit(&c->rx->bells, memory_order_relaxed);
    /* The clock only every PROBE_EVERY empty looks: a spinning reader
     * looks millions of times a second, and the clock was a third of a
     * look. */
    if (b == c->bells_seen && ++c->probe_skip % PROBE_EVERY != 0)
      return 0;
    double now = distc__now();
    if (b == c->bells_seen && now - c->probe_at < PROBE_NS)
      return 0;
    c->bells_seen = b;
    c->probe_at = now;
    char trash[256];
    ssize_t k;
    while ((k = recv(c->fd, trash, sizeof trash, MSG_DONTWAIT)) > 0 ||
           (k < 0 && errno == EINTR))
      ;
    bool eof = k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    if (distc__ring_used(c->rx) > 0)
      continue;
    return eof ? -1 : 0;
  }
}

/* Socket reads keep a descriptor passed along (the shared-memory offer). */
static ssize_t sock_in(distc__conn *c, char *p, size_t n) {
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct iovec v = {p, n};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = u.buf,
                     .msg_controllen = sizeof u.buf};
  ssize_t r = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (r > 0 && m.msg_controllen > 0) {
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
      if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
        continue;
      int fd;
      memcpy(&fd, CMSG_DATA(h), sizeof fd);
      if (c->fd_in >= 0)
        close(c->fd_in);
      c->fd_in = fd;
    }
  }
  return r;
}

static ssize_t fill_stage(distc__conn *c) {
  if (c->stage_off > 0 && c->stage_off == c->stage_len)
    c->stage_off = c->stage_len = 0;
  if (c->stage_off > 0 && c->stage_len - c->stage_off < DISTC__HDR_LEN) {
    memmove(c->stage, c->stage + c->stage_off, c->stage_len - c->stage_off);
    c->stage_len -= c->stage_off;
    c->stage_off = 0;
  }
  if (c->stage_len == STAGE_SIZE)
    return 0;
  if (c->rx) {
    ssize_t r = ring_in(c, c->stage + c->stage_len, STAGE_SIZE - c->stage_len);
    if (r > 0)
      c->stage_len += (size_t)r;
    return r;
  }
  for (;;) {
    ssize_t r = sock_in(c, c->stage + c->stage_len, STAGE_SIZE - c->stage_len);
    if (r > 0) {
      c->stage_len += (size_t)r;
      count_rx(c, (size_t)r);
      return r;
    }
    if (r == 0)
      return -1;
    if (errno == EINTR)
      continue;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
  }
}

/* Sends a bodiless frame on the socket, waiting for room (a handful of
 * bytes: only a broken socket fails it).  Under wlock. */
static int sock_send_hdr(distc__conn *c, uint8_t type, uint8_t flags,
                         int pass_fd) {
  unsigned char hdr[DISTC__HDR_LEN];
  put_hdr(hdr, 0, type, flags, 0);
  size_t off = 0;
  while (off < sizeof hdr) {
    struct iovec v = {hdr + off, sizeof hdr - off};
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    if (pass_fd >= 0 && off == 0) {
      memset(&u, 0, sizeof u);
      m.msg_control = u.buf;
      m.msg_controllen = sizeof u.buf;
      struct cmsghdr *h = CMSG_FIRSTHDR(&m);
      h->cmsg_level = SOL_SOCKET;
      h->cmsg_type = SCM_RIGHTS;
      h->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(h), &pass_fd, sizeof pass_fd);
    }
    ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_writable(c->fd, SEND_RECHECK_MS) < 0)
        return DISTC_EPROCEXIT;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return DISTC_EPROCEXIT;
    off += (size_t)w;
  }
  return 0;
}

int distc__conn_offer_shm(distc__conn *c) {
  void *map;
  int fd = distc__shm_create(&map);
  if (fd < 0)
    return distc__seterr(DISTC_EIO, "cannot create the shared-memory rings "
                         "(memfd_create/mmap: %s)", strerror(errno));
  pthread_mutex_lock(&c->wlock);
  int rc = sock_send_hdr(c, F_SHM, 0, fd);
  if (rc == 0)
    c->shm = map;
  pthread_mutex_unlock(&c->wlock);
  close(fd);
  if (rc < 0) {
    distc__shm_unmap(map);
    return distc__seterr(rc, "lost the master while offering shared memory");
  }
  return 0;
}

/* Under rlock: a step of the switch to the rings.  Whatever the socket
 * holds after it is doorbells, so the staged rest is dropped. */
static void shm_switch(distc__conn *c, const distc__hdr *h) {
  if (h->type == F_SHM && (c->epfd >= 0 || c->shm_accept) && !c->shm) { /* acceptor */
    void *map = c->fd_in >= 0 ? distc__shm_map(c->fd_in) : NULL;
    if (c->fd_in >= 0)
      close(c->fd_in);
    c->fd_in = -1;
    pthread_mutex_lock(&c->wlock);
    /* Bytes queued for the socket must reach it first: then decline. */
    bool ok = map && c->sq_len == c->sq_off;
    if (sock_send_hdr(c, F_SHM_ACK, ok, -1) < 0)
      ok = false;
    if (ok) {
      c->shm = map;
      c->tx = distc__shm_ring(map, 1);
      c->rx_next = distc__shm_ring(map, 0);
      atomic_store(&c->on_ring, true);
    }
    pthread_mutex_unlock(&c->wlock);
    if (!ok)
      distc__shm_unmap(map);
    if (!ok)
      distc__log(DISTC__LOG_WARN, "declined worker %d's shared memory; it "
                 "keeps the socket", c->id);
  } else if (h->type == F_SHM_ACK && c->shm && !c->tx) { /* worker */
    if (!(h->flags & 1)) {
      distc__log(DISTC__LOG_WARN,
                 "the master declined shared memory: using the socket");
      return;
    }
    pthread_mutex_lock(&c->wlock);
    sock_send_hdr(c, F_SHM_ON, 0, -1);
    c->tx = distc__shm_ring(c->shm, 0);
    c->rx = distc__shm_ring(c->shm, 1);
    atomic_store(&c->on_ring, true);
    c->stage_off = c->stage_len = 0;
    pthread_mutex_unlock(&c->wlock);
  } else if (h->type == F_SHM_ON && c->rx_next) { /* master */
    c->rx = c->rx_next;
    c->stage_off = c->stage_len = 0;
    pthread_mutex_lock(&c->qlock);
    atomic_store(&c->rx->rd_spin, c->ring_spinners > 0);
    pthread_mutex_unlock(&c->qlock);
  } else {
    distc__log(DISTC__LOG_WARN, "process %d sent an unexpected transport "
               "frame (type %u): ignored", c->id, h->type);
  }
}

int distc__conn_read_frame(distc__conn *c, distc__frame *f) {
  if (atomic_load(&c->dead))
    return DISTC_EPROCEXIT;
  if (!c->have_hdr) {
    while (c->stage_len - c->stage_off < DISTC__HDR_LEN) {
      ssize_t r = fill_stage(c);
      if (r < 0)
        return DISTC_EPROCEXIT;
      if (r == 0)
        return 0;
    }
    get_hdr((unsigned char *)c->stage + c->stage_off, &c->partial.h);
    c->stage_off += DISTC__HDR_LEN;
    if (c->partial.h.type >= F_SHM && c->partial.h.type <= F_SHM_ON &&
        c->partial.h.len == 0 && !c->rx) {
      shm_switch(c, &c->partial.h);
      return distc__conn_read_frame(c, f);
    }
    if (c->partial.h.len > distc__max_frame() || c->partial.h.type == 0 ||
        c->partial.h.type > DISTC__F_LAST) {
      distc__log(DISTC__LOG_ERROR,
                 "process %d sent a bad frame (type %u, %u bytes); dropping "
                 "its connection",
                 c->id, c->partial.h.type, c->partial.h.len);
      return DISTC_EPROTO;
    }
    /* +1 so an empty payload still gets a distinct, freeable buffer;
     * aligned_alloc gives a large one huge pages. */
    /* Large payloads get the aligned allocator's huge pages; a small
     * one is copied out of by the decoder and freed: malloc's fast path. */
    size_t n = (size_t)c->partial.h.len + 1;
    c->partial.payload =
        n < STAGE_SIZE ? distc__alloc(n) : distc__aligned_alloc(n);
    if (!c->partial.payload)
      return DISTC_ENOMEM;
    c->partial_have = 0;
    c->have_hdr = true;
  }
  size_t want = c->partial.h.len;
  while (c->partial_have < want) {
    size_t avail = c->stage_len - c->stage_off;
    if (avail > 0) {
      size_t k = want - c->partial_have < avail ? want - c->partial_have
                                                : avail;
      memcpy(c->partial.payload + c->partial_have, c->stage + c->stage_off, k);
      c->stage_off += k;
      c->partial_have += k;
      continue;
    }
    if (want - c->partial_have >= STAGE_SIZE && c->rx) {
      ssize_t r = ring_in(c, c->partial.payload + c->partial_have,
                          want - c->partial_have);
      if (r < 0)
        return DISTC_EPROCEXIT;
      if (r == 0)
        return 0;
      c->partial_have += (size_t)r;
      continue;
    }
    if (want - c->partial_have >= STAGE_SIZE) {
      /* Large payloads go straight from the socket to their buffer. */
      ssize_t r = recv(c->fd, c->partial.payload + c->partial_have,
                       want - c->partial_have, MSG_DONTWAIT);
      if (r > 0) {
        c->partial_have += (size_t)r;
        count_rx(c, (size_t)r);
        continue;
      }
      if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        return DISTC_EPROCEXIT;
      if (errno == EINTR)
        continue;
      return 0;
    }
    ssize_t r = fill_stage(c);
    if (r < 0)
      return DISTC_EPROCEXIT;
    if (r == 0)
      return 0;
  }
  *f = c->partial;
  c->partial.payload = NULL;
  c->have_hdr = false;
  distc__stat_add(&c->st.bytes_in, (uint64_t)f->h.len + DISTC__HDR_LEN);
  return 1;
}

/* ---- pending calls: open addressing on the call id ---- */

static size_t slot_of(const distc__pending *p, uint64_t key) {
  size_t i = (size_t)(key * 0x9e3779b97f4a7c15ull) & (p->cap - 1);
  while (p->keys[i] && p->keys[i] != key)
    i = (i + 1) & (p->cap - 1);
  return i;
}

static int grow(distc__pending *p) {
  size_t cap = p->cap ? p->cap * 2 : 16;
  distc__pending q = {calloc(cap, sizeof *q.keys), calloc(cap, sizeof *q.vals),
                      cap, p->n};
  if (!q.keys || !q.vals) {
    free(q.keys);
    free(q.vals);
    return DISTC_ENOMEM;
  }
  for (size_t i = 0; i < p->cap; i++) {
    if (p->keys[i]) {
      size_t j = slot_of(&q, p->keys[i]);
      q.keys[j] = p->keys[i];
      q.vals[j] = p->vals[i];
    }
  }
  free(p->keys);
  free(p->vals);
  *p = q;
  return 0;
}

int distc__pending_put(distc__conn *c, distc_future *f) {
  int rc = 0;
  pthread_mutex_lock(&c->plock);
  distc__pending *p = &c->pending;
  if ((p->n + 1) * 2 > p->cap && (rc = grow(p)) < 0)
    goto unlock;
  size_t i = slot_of(p, f->callid);
  p->keys[i] = f->callid;
  p->vals[i] = f;
  p->n++;
  atomic_fetch_add(&f->refs, 1);
  distc__stats_call_start(&c->st);
unlock:
  pthread_mutex_unlock(&c->plock);
  return rc;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void erase(distc__pending *p, size_t i) {
  size_t j = i;
  p->keys[i] = 0;
  p->vals[i] = NULL;
  for (;;) {
    j = (j + 1) & (p->cap - 1);
    if (!p->keys[j])
      return;
    size_t home = (size_t)(p->keys[j] * 0x9e3779b97f4a7c15ull) & (p->cap - 1);
    /* Move j back to i when i lies cyclically in [home, j). */
    bool move = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
    if (move) {
      p->keys[i] = p->keys[j];
      p->vals[i] = p->vals[j];
      p->keys[j] = 0;
      p->vals[j] = NULL;
      i = j;
    }
  }
}

distc_future *distc__pending_take(distc__conn *c, uint64_t id) {
  distc_future *f = NULL;
  pthread_mutex_lock(&c->plock);
  distc__pending *p = &c->pending;
  if (p->cap && id) {
    size_t i = slot_of(p, id);
    if (p->keys[i] == id) {
      f = p->vals[i];
      erase(p, i);
      p->n--;
      distc__stats_call_end(&c->st);
    }
  }
  pthread_mutex_unlock(&c->plock);
  return f;
}

void distc__conn_fail_pending(distc__conn *c) {
  for (;;) {
    distc_future *f = NULL;
    pthread_mutex_lock(&c->plock);
    distc__pending *p = &c->pending;
    for (size_t i = 0; i < p->cap && !f; i++) {
      if (p->keys[i]) {
        f = p->vals[i];
        erase(p, i);
        p->n--;
        distc__stats_call_end(&c->st);
      }
    }
    pthread_mutex_unlock(&c->plock);
    if (!f)
      return;
    char *msg = NULL;
    if ((c->why[0] ? asprintf(&msg, "On worker %d: %s", c->id, c->why)
                   : asprintf(&msg,
                              "On worker %d: process %s (pid %d on %s) "
                              "before the call completed",
                              c->id,
                              c->departure[0] ? c->departure : "exited",
                              (int)c->ospid, c->host)) < 0)
      msg = NULL;
    distc__future_complete(f, DISTC_EPROCEXIT, NULL, msg);
    distc__future_unref(f);
  }
}

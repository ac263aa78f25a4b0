/* internal.h — libdistc's internal types: connections, frames, futures and
 * the process-wide cluster state.  Nothing here is installed. */
#ifndef DISTC_INTERNAL_H
#define DISTC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common.h"
#include "manager.h"
#include "stats.h"
#include "trace.h"
#include "value.h"

/* ---- frames ----
 * Every message after the handshake is a 16-byte header and a payload:
 *   u32 len | u8 type | u8 flags | u16 0 | u64 id      (little-endian)
 * len is the payload length, bounded by the frame limit ($DISTC_MAX_FRAME,
 * default 1 GiB) so a peer can never make us allocate without bound. */
enum {
  DISTC__F_CALL = 1,    /* id: call id; payload [fn, args] */
  DISTC__F_RESULT,      /* id: call id; payload value */
  DISTC__F_ERROR,       /* id: call id; payload [code, message] */
  DISTC__F_OUTPUT,      /* payload: raw bytes of the worker's stdout+stderr */
  DISTC__F_EXIT,        /* master -> worker: flush and exit */
  DISTC__F_HELLO,       /* worker -> master: [index, ospid, host, fingerprint,
                           address of the fingerprint] */
  DISTC__F_WELCOME,     /* master -> worker: [id, [worker ids], cma] */
  DISTC__F_REFUSE,      /* master -> worker: [message] */
  DISTC__F_RELEASE,     /* master -> worker: done reading call id's lent arrays */
  DISTC__F_PING,        /* either way: a heartbeat on an idle link, no reply */
  DISTC__F_DEPART,      /* worker -> master: how it is exiting (text), its last */
  DISTC__F_INTERRUPT,   /* master -> worker: interrupt the running call */
  DISTC__F_LAST = DISTC__F_INTERRUPT
};
#define DISTC__F_NORESULT 1 /* CALL flag: remote_do, send nothing back */
#define DISTC__F_WHERE 2    /* ERROR flag: the message names the process */
#define DISTC__F_LENT 4     /* RESULT flag: it holds lent arrays (ext 3) */
#define DISTC__NAME_MAX 255 /* longest function name */

#define DISTC__HDR_LEN 16
typedef struct distc__hdr {
  uint32_t len;
  uint8_t type, flags;
  uint64_t id;
} distc__hdr;

typedef struct distc__frame {
  distc__hdr h;
  char *payload; /* h.len bytes, owned (distc__free) */
} distc__frame;

/* ---- futures ---- */
enum { DISTC__FUT_PENDING, DISTC__FUT_DONE };

struct distc_future {
  atomic_int state;
  atomic_int refs;   /* the caller's and the pending table's */
  int pid;           /* where it runs */
  uint64_t callid;
  int err;           /* 0 or DISTC_E* once done */
  distc_value *value;
  char *errmsg;      /* "On worker N: ..." when err != 0 */
  pthread_mutex_t mu;
  pthread_cond_t cond;
  int sleepers;      /* threads blocked on cond or wake_ring, under mu */
  /* a waiter asleep on this ring's futex (call.c), under mu: completing the
   * future wakes it there too */
  struct distc__ring *wake_ring;
  /* optional completion hook, under mu (see distc__future_on_done) */
  void (*notify)(distc_future *f, void *arg);
  void *notify_arg;
  /* passed as a value (future_ref.c): its export entry, or NULL */
  struct distc__export *exported;
  /* tracing only (trace.h): when the call was sent, its size, its name */
  uint64_t trace_t0;
  size_t trace_out;
  char *trace_fn;
};

/* ---- connections ---- */
typedef struct distc__pending {
  uint64_t *keys; /* 0 = empty */
  distc_future **vals;
  size_t cap, n;
} distc__pending;

typedef struct distc__conn {
  int fd;
  int id;             /* the peer's distc id */
  int index;          /* the peer's launch index (workers) */
  pid_t ospid;
  char host[64];
  atomic_bool dead;
  atomic_int refs;

  pthread_mutex_t wlock; /* whole frames are written under it */
  pthread_mutex_t rlock; /* the reader's role */
  /* read state, under rlock */
  char *stage;           /* staging buffer for small frames */
  size_t stage_off, stage_len;
  distc__frame partial;  /* frame whose payload is being read */
  size_t partial_have;
  bool have_hdr;

  pthread_mutex_t plock; /* pending calls */
  distc__pending pending;

  char *linebuf;         /* master: partial output line of this worker, */
  size_t linelen;        /* DISTC__LINE_CAP bytes at most (output.c) */
  bool linecr;           /* its last line ended with '\r' */
  char departure[128];   /* master: the worker's DEPART text, or "" */
  atomic_bool lost;      /* master: membership already updated */
  /* Same host and process_vm_readv works between us (probed at the
   * handshake): the worker lends large results instead of sending them. */
  bool cma;

  /* master: the I/O thread's epoll set holding fd (-1: none), and how many
   * waiters are spinning on it (see distc__conn_quiet) */
  int epfd;
  void *epdata;
  pthread_mutex_t qlock;
  int spinners;
  bool want_out;         /* under qlock: EPOLLOUT asked for (queue not empty) */

  /* The send queue (under wlock): bytes of whole frames the socket would
   * not take yet, written by the I/O thread when it becomes writable.  Only
   * connections the master's I/O thread watches (epfd >= 0) have one. */
  char *sq;
  size_t sq_off, sq_len, sq_cap;
  pthread_cond_t wcond;  /* the queue shrank, or the peer is gone */

  /* Liveness (liveness.c): counters bumped on the hot paths, read by the
   * checker, which keeps its own snapshot and clock. */
  /* Links (peers.c): the addresses a worker listens on, as it told the
   * master (master side); whether this end accepted the link, and so takes
   * a shared-memory offer (the master always does). */
  char link_local[64];
  char link_tcp[256]; /* "ip:port", comma-separated */
  bool shm_accept;
  bool is_link;       /* a worker's link to another worker */

  atomic_uint_fast64_t tx_frames; /* frames written (under wlock) */
  atomic_uint_fast64_t rx_bytes;  /* bytes read (by the reader) */
  uint64_t seen_tx, seen_rx;      /* checker's snapshot */
  double rx_at;                   /* checker: when rx_bytes last moved */
  char why[256];                  /* set before the loss: why it was lost */

  distc__peer_stats st; /* distc_stats */

  /* Shared-memory transport (conn.c, ring.c): the rings this side writes
   * and reads once switched (NULL: the socket), the mapping holding both,
   * a descriptor received over the socket, and the reader's doorbell
   * bookkeeping.  tx is set under wlock, rx under rlock. */
  void *shm;
  struct distc__ring *tx, *rx, *rx_next;
  uint64_t tx_head;  /* under wlock: the writer's copy of tx's head */
  atomic_bool on_ring;
  int fd_in;
  int ring_spinners; /* under qlock: master threads spinning on rx */
  uint64_t bells_seen;
  double probe_at;
  unsigned probe_skip;
} distc__conn;

/* conn.c */
distc__conn *distc__conn_new(int fd);
void distc__conn_unref(distc__conn *c);
/* Writes one frame (header + iov) under wlock, all of it or an error
 * (DISTC_EPROCEXIT once the peer is gone).  Never raises SIGPIPE. */
int distc__conn_send(distc__conn *c, uint8_t type, uint8_t flags, uint64_t id,
                     const struct iovec *iov, int iovcnt);
/* As distc__conn_send, but never waits for room: what the socket does not
 * take is queued whatever the high-water mark (for small frames that must
 * not block their sender: EXIT, RELEASE, PING, anything the master's I/O
 * thread sends).  On a connection without a queue, gives up with DISTC_EIO
 * when the socket is full (the frame may then be cut: only for sockets
 * about to be closed). */
int distc__conn_send_nowait(distc__conn *c, uint8_t type, uint8_t flags,
                            uint64_t id, const struct iovec *iov, int iovcnt);
/* Master I/O thread: writes what the queue holds; < 0 when the connection
 * broke. */
int distc__conn_flush(distc__conn *c);
/* Wakes every sender waiting for room on c (it is dead now). */
void distc__conn_wake_senders(distc__conn *c);
/* Marks the current thread as the master's I/O thread, whose sends never
 * wait (see distc__conn_send_nowait). */
void distc__conn_set_io_thread(void);
/* Reads one whole frame if one is available without blocking: returns 1 and
 * fills *f, 0 when none is complete yet, or a negative code when the
 * connection is closed, broken or sent a malformed header.  Caller holds
 * rlock (or is the only reader). */
int distc__conn_read_frame(distc__conn *c, distc__frame *f);
/* Blocks until fd is readable or timeout_ms passes (-1: forever); on the
 * rings, until the writer rings the reader's futex. */
int distc__conn_poll(distc__conn *c, int timeout_ms);
/* Master: a thread that slept on c's ring (or spun) reads what came without
 * a doorbell before it goes: nobody else was told of it. */
void distc__conn_drain_unbelled(distc__conn *c);
/* Worker: offers its master the shared-memory transport (a memfd over the
 * same-host socket); both sides switch when the master accepts.  < 0 when
 * no memfd could be made. */
int distc__conn_offer_shm(distc__conn *c);
/* The reader spins on the ring (true: the writer rings no doorbell) or
 * stops; stopping returns whether bytes wait in the ring, so the caller
 * reads them instead of sleeping. */
bool distc__conn_spin(distc__conn *c, bool on);
/* Bytes waiting unread in the connection's ring (0 without one). */
size_t distc__conn_ring_unread(distc__conn *c);
/* Master: a thread spins reading c (counted); the last to stop reads what
 * came meanwhile without a doorbell. */
void distc__conn_spinning(distc__conn *c, bool on);
bool distc__conn_on_ring(distc__conn *c);
/* Under wlock: writes what it can of p (the ring or the socket, with the
 * doorbell); -1 with errno EAGAIN when full.  Async-signal-safe. */
ssize_t distc__conn_write_some(distc__conn *c, const void *p, size_t n);
/* Pending-call table (under plock). */
int distc__pending_put(distc__conn *c, distc_future *f);
distc_future *distc__pending_take(distc__conn *c, uint64_t id);
/* Completes every pending future of c with a process-exited error. */
void distc__conn_fail_pending(distc__conn *c);
/* A waiter that spins reading c itself takes c out of the I/O thread's
 * epoll set meanwhile (on), and puts it back when it stops (off): otherwise
 * every answer would also wake the I/O thread, a third runnable thread on
 * two cores that preempts the very processes doing the work. */
void distc__conn_quiet(distc__conn *c, bool on);
size_t distc__max_frame(void);
int distc__set_nonblock(int fd, bool on);

/* Pack helpers for frames made of one encoder. */
int distc__send_encoded(distc__conn *c, uint8_t type, uint8_t flags,
                        uint64_t id, distc__enc *e);

/* ---- liveness (liveness.c) ----
 * A worker sends a PING on a link it has written nothing on for half an
 * interval; the master loses a worker whose link has carried no byte for
 * misses intervals.  The worker's heartbeats come from its I/O thread, so a
 * worker busy in a long call stays alive. */
typedef struct distc__liveness {
  double interval_ns; /* 0: heartbeats off */
  int misses;
} distc__liveness;
/* $DISTC_HEARTBEAT_S and $DISTC_HEARTBEAT_MISSES, or the defaults. */
const distc__liveness *distc__liveness_get(void);
/* Worker: takes the master's settings from its WELCOME. */
void distc__liveness_set(double interval_ns, int misses);
#define DISTC__HEARTBEAT_S_DEFAULT 1.0
#define DISTC__HEARTBEAT_MISSES_DEFAULT 10
/* Checker (called every interval / 4 or so): returns how many ns the peer
 * has been silent past the deadline's start, or 0 when it is alive.  Bytes
 * waiting unread in the socket count as life: the checker may run late. */
double distc__conn_silent(distc__conn *c, double now);
/* Checker: whether it runs late (more than an interval since *last), which
 * means this process was stopped or starved: it cannot blame its peers, so
 * it restarts their clocks (distc__conn_forgive) instead of judging them. */
bool distc__liveness_late(double *last, double now);
void distc__conn_forgive(distc__conn *c, double now);
/* Worker: sends a PING on c if nothing was written since the last call
 * (made every half interval); never waits. */
void distc__conn_heartbeat(distc__conn *c);

/* ---- authentication (auth.c) ---- */
#define DISTC__NONCE_LEN 32
#define DISTC__MAC_LEN 32
#define DISTC__HELLO1_LEN 40 /* master: "DSTC" u16 ver u16 0 nonce */
#define DISTC__HELLO2_LEN 72 /* worker: "DSTC" u16 ver u16 0 nonce mac */
#define DISTC__PROTO_VERSION 1
void distc__mac(const unsigned char *secret, const char *role,
                const unsigned char *n1, const unsigned char *n2,
                unsigned char *mac);
bool distc__mac_equal(const unsigned char *a, const unsigned char *b);
int distc__random(void *buf, size_t n);

/* ---- handshake.c: the one handshake of every link ----
 * The acceptor's first message (HELLO1) with its nonce. */
void distc__hs_hello1(unsigned char *m1, const unsigned char *nonce);
/* Acceptor: whether the dialer's HELLO2 proves the cluster secret against
 * our nonce; fills our own proof (DISTC__MAC_LEN bytes) to send back. */
bool distc__hs_check(const unsigned char *nonce, const unsigned char *m2,
                     unsigned char *proof);
/* Blocking halves, within deadline (monotonic ns): 0, or a negative
 * DISTC_E* with a message. */
int distc__hs_dial(int fd, double deadline);
int distc__hs_accept(int fd, double deadline);
/* Reads or writes exactly n bytes within the deadline; -1 on failure. */
int distc__hs_xfer(int fd, void *buf, size_t n, bool out, double deadline);
/* One frame of the handshake (HELLO, WELCOME, REFUSE), blocking; a
 * received payload is malloc'd (free), DISTC__HS_FRAME_MAX bytes at most. */
#define DISTC__HS_FRAME_MAX (1u << 20)
int distc__hs_send(int fd, uint8_t type, distc__enc *e, double deadline);
int distc__hs_recv(int fd, uint8_t *type, char **payload, uint32_t *len,
                   double deadline);
/* Whether fp is this build's fingerprint; else why (naming who) says so. */
bool distc__hs_same_binary(const unsigned char *fp, char *why, size_t n,
                           const char *who);

/* ---- peers.c: a worker's links to other workers ----
 * Topologies: all_to_all (workers listen; links are made on first use) or
 * master_worker (the star: workers neither listen nor call sideways). */
enum { DISTC__TOPO_ALL_TO_ALL, DISTC__TOPO_MASTER_WORKER };
#define DISTC_ENV_TOPOLOGY "DISTC_TOPOLOGY"
/* $DISTC_TOPOLOGY (or opts) parsed: the DISTC__TOPO_* value, or a negative
 * DISTC_EINVAL with a message naming the valid ones. */
int distc__topology_parse(const char *s);
/* Worker, before the handshake: opens the listeners (the same-host socket
 * unless TCP is forced, and TCP on the address the master link uses: fd is
 * that link's socket, master_addr its "host:port"); fills local/tcp with
 * their addresses ("" when none). */
void distc__peers_listen(int fd, const char *master_addr, char *local,
                         size_t nl, char *tcp, size_t nt);
/* Worker, after WELCOME: enters the master's link in the peer table
 * (distc__C.conns, by id, with the worker links), and starts accepting on
 * the I/O thread's loop unless the topology is master_worker. */
void distc__peers_start(uv_loop_t *loop, int topology);
/* Worker: *out, a new reference to the link to worker pid, dialing it
 * first (asking the master for its address) when there is none; or a
 * negative DISTC_E* (with a message) when it cannot be had. */
int distc__peer_link(int pid, distc__conn **out);
/* Worker: the dispatcher.  Handles one frame from the master or any
 * worker link (held frames first): 1 handled, 0 none, < 0 master lost. */
int distc__peers_pump(void);
/* Worker: sleeps until any link (or the listener's news) is readable or
 * timeout_ms passes (-1: forever); returns at once when a ring holds
 * bytes. */
void distc__peers_poll(int timeout_ms);
/* Worker: marks the thread that reads and answers every link. */
void distc__peers_main_thread(void);
/* conn.c, a sender waiting for room on a worker link: reads what the link
 * brings meanwhile (on the main thread; dispatched later by the pump), so
 * two workers sending each other large frames at once cannot wait on each
 * other forever. */
void distc__link_drain(distc__conn *c);
/* Worker: spin on every link's ring (no doorbells) or stop; stopping
 * returns whether bytes wait in a ring (read them: they rang nothing). */
bool distc__peers_spin(bool on);
/* Master: the registered function workers call for a worker's address. */
extern int distc__topology;

/* ---- fingerprint.c ---- */
#define DISTC__FP_LEN 32
const unsigned char *distc__fingerprint(void);
void distc__fingerprint_hex(const unsigned char *fp, char *out /* 17 */);

/* ---- registry.c ---- */
distc_fn distc__lookup(const char *name);

/* ---- calls (call.c) ---- */
struct distc_ctx {
  char *errmsg; /* set by distc_fail */
  /* where the answer goes, for distc__call_defer */
  distc__conn *conn;    /* the caller's connection; NULL for a local call */
  uint64_t callid;
  bool noresult;        /* remote_do */
  distc_future *local;  /* local call: the caller's future */
  bool deferred;        /* the function took the reply */
};
/* A deferred answer (call.c).  Inside a registered function:
 * distc__call_defer takes over answering the call (NULL when out of memory)
 * and whatever the function returns is then dropped; the reply must be given
 * to distc__reply_send exactly once, from any thread but the master's I/O
 * thread, which frees it.  v (taken over) is the result when err is 0; msg
 * (borrowed) says what failed otherwise. */
typedef struct distc__reply distc__reply;
distc__reply *distc__call_defer(distc_ctx *ctx);
void distc__reply_send(distc__reply *r, int err, distc_value *v,
                       const char *msg);
/* As distc__reply_send, for a msg that already names the process that
 * failed ("On worker N: ..."). */
void distc__reply_send_where(distc__reply *r, int err, distc_value *v,
                             const char *msg);
/* future_ref.c: f, passed as a value, completed (answers the processes
 * waiting to fetch it) or is being freed (forgets it). */
void distc__future_exported_done(distc_future *f);
void distc__future_unexport(distc_future *f);
/* distc_remotecall, except that from a worker a call to another worker goes
 * through the master (distc__forward), since workers hold no links to each
 * other.  The future's pid is then the master's. */
/* Waits for all n futures; returns the first error with every failure's
 * message gathered into distc_errmsg(), one per line. */
int distc__gather(distc_future **fs, size_t n);
int distc__remotecall_routed(int pid, const char *fn, const distc_value *args,
                             distc_future **out);
/* Executes a CALL frame and, unless it was remote_do, answers on c. */
void distc__run_call(distc__conn *c, distc__frame *f);
/* Handles RESULT/ERROR frames: completes the pending future. */
void distc__complete_call(distc__conn *c, distc__frame *f);
/* Waits for f, pumping its connection while spinning (adaptive), then
 * blocking. */
void distc__future_wait(distc_future *f);
/* A pending future of process pid with one reference (the caller's), for
 * code that completes it itself (distc__future_complete); NULL when out of
 * memory. */
distc_future *distc__future_new(int pid);
void distc__future_complete(distc_future *f, int err, distc_value *v,
                            char *errmsg);
void distc__future_unref(distc_future *f);
/* Calls cb(f, arg) once f completes, on the completing thread (the I/O
 * thread or a spinning waiter: keep it short, never block), or at once on
 * this thread if f is already complete. */
void distc__future_on_done(distc_future *f,
                           void (*cb)(distc_future *f, void *arg), void *arg);

/* ---- depart.c ---- */
/* Worker: report a fatal signal or exit() to the master over c (once). */
void distc__depart_init(distc__conn *c);

/* ---- interrupt.c ----
 * Worker: each top-level call gets a generation; an interrupt marks the
 * generation running when it arrives, so it can never hit the next call.
 * The main thread holds the master connection's rlock except while a
 * registered function runs (distc__reader_release/_take, thread-local):
 * then the I/O thread may read the connection itself (distc__interrupt_io_*)
 * to see an INTERRUPT behind which the busy main thread would not look. */
void distc__interrupt_worker_init(void);  /* worker main thread, at start */
void distc__interrupt_call_begin(void);   /* a call starts (nesting counted) */
bool distc__interrupt_call_end(void);     /* ... ends: whether interrupted */
void distc__interrupt_deliver(bool signal_main);
bool distc__reader_release(void); /* whether this thread held the role */
void distc__reader_take(bool had);
/* For a wait that reads the connection: takes the role unless this thread
 * holds it already (returns whether it took it); _drop gives it back. */
bool distc__reader_acquire(void);
void distc__reader_drop(bool took);
/* Worker I/O thread: starts its timer; poll is the master fd's handle. */
void distc__interrupt_io_start(uv_loop_t *loop, uv_poll_t *poll,
                               uv_poll_cb on_hangup);
/* Worker I/O thread: poll handle events; whether it handled them (false:
 * they mean the master hung up). */
bool distc__interrupt_io_readable(int status, int events);
/* Master: installs the SIGINT handler that interrupts every worker's call,
 * when the program left SIGINT at its default; _stop removes it. */
void distc__interrupt_sigint_install(void);
void distc__interrupt_sigint_stop(void);
/* Master I/O thread, on every wake-up: acts on a SIGINT. */
void distc__interrupt_on_wake(void);
/* call.c: queues a frame the I/O thread read for the main thread (under
 * rlock); false when out of memory. */
bool distc__worker_hold(distc__frame *fr);

/* ---- output.c ---- */
/* The longest partial line of a worker's output the master keeps. */
#define DISTC__LINE_CAP 4096
/* Worker: captures fds 1 and 2 into a pipe; the I/O thread and the executor
 * (before each result) forward it as OUTPUT frames. */
int distc__output_capture(void);
void distc__output_drain(distc__conn *c);   /* fflush(stdout), forward */
void distc__output_forward(distc__conn *c); /* the pipe only, no stdio */
int distc__output_fd(void);
/* Master: prints a worker's OUTPUT bytes as "      From worker N:\t" lines. */
void distc__output_print(distc__conn *c, const char *p, size_t n);
void distc__output_flush(distc__conn *c);

/* ---- cluster (cluster.c, master.c, worker.c) ---- */
typedef struct distc__cluster {
  int myid;
  bool is_master;
  bool initialised, finalised;

  pthread_mutex_t lock; /* everything below */
  pthread_cond_t changed; /* a worker joined or left */
  distc__conn **conns;  /* by id; NULL: never joined, DISTC__GONE: left */
  int conncap;
  int *ids;             /* live worker ids, ascending */
  int nids;
  int next_index;       /* launch index of the next worker */
  int rr;               /* round robin cursor for DISTC_ANY */
  char *refused;        /* why the last worker was refused */
  int refused_code;     /* and the DISTC_E* code that says it */

  /* master */
  unsigned char secret[DISTC_SECRET_LEN];
  int listen_fd;
  char master_addr[64];
  uv_loop_t loop;
  uv_thread_t io_thread;
  uv_async_t wake;
  uv_poll_t listen_poll;
  /* A second listener on every address, opened by the first addprocs over
   * SSH when the first one is on loopback only. */
  int remote_fd;
  char remote_addr[64];
  /* the same-host socket (local_socket.c): fd, "@name", its poll */
  int local_fd;
  char local_addr[64];
  uv_poll_t local_poll;
  bool remote_pending; /* the I/O thread has yet to poll it */
  uv_poll_t remote_poll;
  bool io_running;
  int argc;
  char **argv;          /* the master's, for workers started by addprocs */
  distc_manager *managers; /* started by addprocs, kept to reap */
  int nmanagers;
  pthread_mutex_t addprocs_lock;

  /* service threads: calls made to the master by workers */
  bool service_running;
  pthread_mutex_t qlock;
  pthread_cond_t qcond;
  struct distc__job *qhead, *qtail;

  /* worker */
  distc__conn *master;
  int worker_depth; /* nesting of calls executing on this worker */
} distc__cluster;

extern distc__cluster distc__C;
#define DISTC__GONE ((distc__conn *)1)

distc__conn *distc__conn_get(int id); /* new reference or NULL */
/* Master I/O thread: a worker's connection died or hung up. */
void distc__worker_lost(distc__conn *c);
int distc__master_init(void);
int distc__master_finalize(void);
int distc__worker_main(void); /* never returns */
/* Worker: reads one frame from the master and handles it (running a call
 * inline).  1: handled one, 0: none available, < 0: connection gone. */
int distc__worker_pump_once(distc__conn *c);
/* Worker: the one dispatcher of every frame a worker reads, from its master
 * or from another worker (EXIT and INTERRUPT only from the master); frees
 * the payload. */
void distc__worker_dispatch(distc__conn *c, distc__frame *fr);
/* ---- the master's parts: master.c (I/O thread, listeners, the
 * handshake's accepting half, liveness, start and finalize), membership.c,
 * dispatch.c, service.c, addprocs.c ---- */
extern bool distc__stopping; /* finalize has begun */
/* membership.c: room in the table for id (under C->lock). */
int distc__members_cap(int id);
/* master.c: whether c's pid names its process on this host (so the master
 * may signal it). */
bool distc__worker_same_host(const distc__conn *c);
/* master.c: tells the launcher its worker `index` is lost (false: not the
 * launcher's); kills it through the addprocs manager that started it
 * (caller holds addprocs_lock; false: none did). */
bool distc__report_lost(int index);
bool distc__manager_kill_index(int index);
/* master.c: waits until the launch indices [first, first + n) have joined,
 * a worker was refused, or the deadline passes (alive, may be NULL: whether
 * the workers still run; hosts, may be NULL: the progress line's map). */
int distc__await_workers(int first, int n, double deadline,
                         bool (*alive)(void *), void *arg, const char *hosts);
/* service.c: ends the service threads (finalize). */
void distc__service_stop(void);
/* Master: queue a worker's CALL for the service thread. */
void distc__service_enqueue(distc__conn *c, distc__frame *f);
/* Master: runs fn(arg) on the service thread, after the jobs queued before
 * it.  DISTC_ENOMEM (nothing queued) when out of memory. */
int distc__service_post(void (*fn)(void *arg), void *arg);
/* This process's host name as reported to the master: $DISTC_HOSTNAME when
 * set (tests use it to fake a worker on another host), else gethostname. */
void distc__hostname(char *buf, size_t n);

/* ---- gate.c: connections in the handshake (master I/O thread only) ---- */
typedef struct distc__gate_entry {
  struct distc__gate_entry *prev, *next;
  double born;
  bool listed;
} distc__gate_entry;
enum { DISTC__DROP_AUTH, DISTC__DROP_SLOW, DISTC__DROP_EVICTED,
       DISTC__DROP_MALFORMED, DISTC__DROP_KINDS };
/* A connection that must send its first message this soon. */
#define DISTC__GATE_FIRST_MS 3000
/* The least time an unauthenticated connection gets before it can be
 * dropped to make room. */
#define DISTC__GATE_MIN_AGE_MS 50
int distc__gate_cap(void);
void distc__gate_add(distc__gate_entry *e, double now);
void distc__gate_remove(distc__gate_entry *e); /* no-op when not listed */
/* Before accepting one more: 0 when there is room (*evict: the entry to
 * drop first, or NULL), else the milliseconds to pause accepting. */
int distc__gate_room(double now, distc__gate_entry **evict);
distc__gate_entry *distc__gate_oldest(void);
/* Counts a dropped connection; logs one summary at most every 10 s. */
void distc__gate_drop(int kind, double now);
void distc__gate_flush(void); /* logs what was not reported yet */

/* ---- join.c: elastic membership ---- */
/* Master: a worker joined (after it is in the table) or left; bumps the
 * generation on a join and queues the members callback. */
void distc__members_note(int id, bool joined);
/* Changes with every join: pmap and default pools look for newcomers when
 * it moved. */
unsigned distc__members_gen(void);
/* Master init: takes over the door distc-launch --listen opened. */
int distc__join_adopt(void);
/* I/O thread, on every wake-up: starts polling a newly opened door. */
void distc__join_on_wake(uv_loop_t *loop);
/* I/O thread: the door's poll handle while it is watched, else NULL (so
 * that pausing accepts pauses the door too). */
uv_poll_t *distc__join_poll(void);
/* Finalize: no more callbacks (first); then, once the I/O thread has
 * ended, closes the door and removes a key file distc_listen wrote. */
void distc__join_stop(void);
void distc__join_close(void);
/* distc_init of a process with DISTC_JOIN set: joins; never returns. */
int distc__join_main(void);
/* master.c: accepts on a listening socket (the poll's fd) and starts the
 * handshake of each connection. */
void distc__master_on_listen(uv_poll_t *h, int status, int events);
/* pool.c: whether p is a default pool (follows the membership). */
bool distc__pool_follows(distc_pool *p);

/* ---- shared.c ---- */
/* Worker: derives the names of this run's shared memory segments from the
 * cluster secret, before the worker forgets it. */
void distc__shared_set_secret(const unsigned char *secret);
/* Worker that lost its master: unlinks whatever segment of this run the
 * master left behind (it may have died while creating one).  Async-signal
 * and thread safe enough to run right before _exit. */
void distc__shared_orphaned(void);
/* Reads and dispatches what is available on c (master side); returns < 0
 * once c is dead. */
int distc__master_pump(distc__conn *c, bool block_lock);
double distc__now(void); /* monotonic, ns */
/* pthread_cond_timedwait for at most ns nanoseconds from now (the
 * condition's clock is CLOCK_REALTIME); the caller holds m. */
void distc__cond_wait_ns(pthread_cond_t *c, pthread_mutex_t *m, double ns);

static inline void distc__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

#endif

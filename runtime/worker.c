/* worker.c — the worker side of distc_init: dial the master, prove the
 * secret, announce ourselves, then serve calls until told to exit.
 *
 * The main thread is both the reader of the master connection and the
 * executor, so a call crosses no thread hand-off on the worker.  After each
 * frame it spins briefly on the socket before sleeping in poll(), since the
 * next call of a busy caller usually follows within microseconds.  A small
 * I/O thread forwards captured output, sends the heartbeats that tell the
 * master we live (liveness.c), and exits the process the moment the
 * master's connection hangs up, even while a long call runs. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "parallel.h"
#include "transport.h"

#define IDLE_SPIN_NS 100000.0
#define SPARE_CHECK 32 /* idle polls between looks at the run queue */

/* An idle worker spins for IDLE_SPIN_NS before it sleeps, since a busy
 * caller's next call usually follows within microseconds and waking a
 * sleeping process costs tens of them.  It spins hard only while the
 * cluster's processes on this host fit its cores: the workers its launch
 * started here ($DISTC_LOCAL_WORKERS, MPI's "local size") plus the master
 * when it is here.  Other programs do not count, whatever the load: a
 * nice 19 job per core must not turn a 2 us round trip into a wake-up of
 * tens (the scheduler gives the spinner its share anyway, as it does to an
 * MPI rank polling its shared memory; beside two nice 0 loops the round
 * trip measured the same 1.7 us).  A worker that joined by itself
 * knows only the membership the master sent at joining (workers that
 * joined early saw few peers), so it also looks at the kernel's count of
 * runnable tasks every SPARE_CHECK polls.  Otherwise it yields between
 * polls, so any task with work — a busy peer, the master, another program —
 * runs first, and it still picks up the next call without the cost of a
 * wake-up. */
static int local_workers; /* $DISTC_LOCAL_WORKERS, 0: unknown */

/* Whether the master runs on this host: the same-host socket, or a TCP
 * link whose two ends have one address (loopback, or our own). */
static bool master_here(int fd, bool via_local) {
  struct sockaddr_storage a, b;
  socklen_t la = sizeof a, lb = sizeof b;
  if (via_local)
    return true;
  if (getsockname(fd, (struct sockaddr *)&a, &la) < 0 ||
      getpeername(fd, (struct sockaddr *)&b, &lb) < 0 || a.ss_family != b.ss_family)
    return false;
  if (a.ss_family == AF_INET)
    return ((struct sockaddr_in *)&a)->sin_addr.s_addr ==
           ((struct sockaddr_in *)&b)->sin_addr.s_addr;
  if (a.ss_family == AF_INET6)
    return memcmp(&((struct sockaddr_in6 *)&a)->sin6_addr,
                  &((struct sockaddr_in6 *)&b)->sin6_addr,
                  sizeof(struct in6_addr)) == 0;
  return false;
}

static bool own_core(bool master_here) {
  cpu_set_t set;
  long cores = sched_getaffinity(0, sizeof set, &set) == 0
                   ? CPU_COUNT(&set)
                   : sysconf(_SC_NPROCESSORS_ONLN);
  int here = local_workers > 0 ? local_workers : distc__C.nids;
  return here + (master_here ? 1 : 0) <= cores;
}

/* Yielding pays while the tasks it lets run are our peers, which soon
 * sleep again.  Beside a task that never sleeps (another program's busy
 * loop, even at nice 19) it turns against us: the scheduler (EEVDF) pushes
 * a yielding task's deadline back a slice per yield, so after thousands of
 * them the busy task runs for milliseconds to seconds while the next call
 * waits, where a sleeping worker would have been woken at once (a round
 * trip of 190 us instead of 9 here with a nice 19 loop per core).  So one
 * yield that loses the core for YIELD_LOST_NS sends the worker straight to
 * sleep whenever it is idle for YIELD_BACKOFF_NS (sleeping also clears the
 * debt), then it tries yielding again.  Peers sharing cores (8 workers on
 * 2) give a yield back well within YIELD_LOST_NS: reduce8 is unchanged. */
#define YIELD_LOST_NS 5e6
#define YIELD_BACKOFF_NS 1e9

static void yield_briefly(double *lost_until) {
  double t0 = distc__now();
  sched_yield();
  double t1 = distc__now();
  if (t1 - t0 >= YIELD_LOST_NS)
    *lost_until = t1 + YIELD_BACKOFF_NS;
}

/* Answers to a run of short pmap batches leave together: while the batch
 * about to run and the next one are both already here, and calls have been
 * taking less than CORK_MAX_NS, the socket is corked, so the burst of
 * answers goes out in one segment instead of one segment (and one wake-up
 * of the master) each.  It is uncorked as soon as that stops being true, at
 * the latest when the input runs dry: an answer waits only for short
 * batches queued behind it, never for any other kind of call. */
#define CORK_MAX_NS 20000.0

static void cork(int fd, bool on) {
  int v = on;
  setsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, sizeof v);
}

static bool batches_ahead(const distc__conn *c) {
  return !c->have_hdr &&
         distc__batches_ahead(c->stage + c->stage_off,
                              c->stage_len - c->stage_off);
}

static uv_loop_t wloop;
static uv_poll_t out_poll, hup_poll;

#define die(...) distc__log_fatal("worker", __VA_ARGS__)

static double env_double(const char *name, double dflt) {
  const char *s = getenv(name);
  char *end;
  double v = s ? strtod(s, &end) : 0;
  return (s && *end == '\0' && v > 0) ? v : dflt;
}

static int dial(const char *addr, double deadline) {
  char host[256];
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
    die("bad master address '%s'", addr);
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  int rc = getaddrinfo(host, colon + 1, &hints, &res);
  if (rc)
    die("cannot resolve master address %s: %s", addr, gai_strerror(rc));
  int fd = -1;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0)
      continue;
    while (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
      if (errno == EINTR)
        continue;
      if ((errno == ECONNREFUSED || errno == ENETUNREACH) &&
          distc__now() < deadline) {
        usleep(20000);
        continue;
      }
      close(fd);
      fd = -1;
      break;
    }
  }
  freeaddrinfo(res);
  if (fd < 0)
    die("cannot connect to the master at %s: %s", addr, strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void read_secret(unsigned char *secret) {
  const char *s = getenv(DISTC_ENV_SECRET_FD);
  int fd = s ? atoi(s) : -1;
  if (fd < 0)
    die("%s is not set: workers are started by distc-launch or "
        "distc_addprocs", DISTC_ENV_SECRET_FD);
  size_t have = 0;
  while (have < DISTC_SECRET_LEN) {
    ssize_t r = read(fd, secret + have, DISTC_SECRET_LEN - have);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      die("could not read the cluster secret from fd %d", fd);
    have += (size_t)r;
  }
  close(fd);
}

/* The worker half of the handshake (handshake.c); on return fd is
 * authenticated both ways and *id holds the id the master gave us.  The
 * HELLO also tells the master where this worker listens for other workers
 * (local, tcp: "" when it does not). */
static void handshake(int fd, int index, double deadline, int *id, bool *cma,
                      const char *local, const char *tcp) {
  if (distc__hs_dial(fd, deadline) < 0)
    die("handshake with the master: %s", distc_errmsg());

  /* HELLO: [index, ospid, host, fingerprint, address of the fingerprint,
   * [local, tcp]] — the master reads that address with process_vm_readv
   * to learn whether it can copy our large results straight out of our
   * memory. */
  char host[64];
  distc__hostname(host, sizeof host);
  distc__enc e;
  distc__enc_init(&e);
  msgpack_pack_array(&e.pk, 6);
  msgpack_pack_int(&e.pk, index);
  msgpack_pack_int(&e.pk, (int)getpid());
  msgpack_pack_str(&e.pk, strlen(host));
  msgpack_pack_str_body(&e.pk, host, strlen(host));
  msgpack_pack_bin(&e.pk, DISTC__FP_LEN);
  msgpack_pack_bin_body(&e.pk, distc__fingerprint(), DISTC__FP_LEN);
  msgpack_pack_uint64(&e.pk, (uint64_t)(uintptr_t)distc__fingerprint());
  msgpack_pack_array(&e.pk, 2);
  msgpack_pack_str(&e.pk, strlen(local));
  msgpack_pack_str_body(&e.pk, local, strlen(local));
  msgpack_pack_str(&e.pk, strlen(tcp));
  msgpack_pack_str_body(&e.pk, tcp, strlen(tcp));
  if (distc__hs_send(fd, DISTC__F_HELLO, &e, deadline) < 0)
    die("lost the master during the handshake");
  distc__enc_destroy(&e);

  /* WELCOME [id, [ids], cma] or REFUSE [message] */
  uint8_t type;
  char *payload;
  uint32_t len;
  if (distc__hs_recv(fd, &type, &payload, &len, deadline) < 0)
    die("waiting for the master's welcome: %s", distc_errmsg());
  distc__dec d;
  if (distc__dec_open(&d, payload, len) < 0)
    die("the master sent a malformed welcome");
  const msgpack_object *root = distc__dec_root(&d);
  if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 1)
    die("the master sent a malformed welcome");
  const msgpack_object *f0 = &root->via.array.ptr[0];
  if (type == DISTC__F_REFUSE && f0->type == MSGPACK_OBJECT_STR)
    die("refused by the master: %.*s", (int)f0->via.str.size, f0->via.str.ptr);
  const msgpack_object *w = root->via.array.ptr;
  if (type != DISTC__F_WELCOME || f0->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      root->via.array.size != 5 || w[1].type != MSGPACK_OBJECT_ARRAY ||
      w[2].type != MSGPACK_OBJECT_BOOLEAN ||
      w[3].type != MSGPACK_OBJECT_FLOAT64 ||
      w[4].type != MSGPACK_OBJECT_POSITIVE_INTEGER || !(w[3].via.f64 >= 0) ||
      w[4].via.u64 < 1 || w[4].via.u64 > 1000000)
    die("the master sent a malformed welcome");
  distc__liveness_set(w[3].via.f64 * 1e9, (int)w[4].via.u64);
  *id = (int)f0->via.u64;
  *cma = root->via.array.ptr[2].via.boolean;
  /* The membership as of our joining: what distc_workers() says here. */
  const msgpack_object_array *ids = &root->via.array.ptr[1].via.array;
  distc__C.ids = calloc(ids->size + 1, sizeof(int));
  for (uint32_t i = 0; distc__C.ids && i < ids->size; i++)
    if (ids->ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
      distc__C.ids[distc__C.nids++] = (int)ids->ptr[i].via.u64;
  distc__dec_close(&d);
  free(payload);
}

static void on_output(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)status;
  (void)events;
  distc__output_forward(distc__C.master);
}

static void on_hangup(uv_poll_t *h, int status, int events) {
  (void)h;
  /* Readable only while a function runs: the I/O thread reads then. */
  if (distc__interrupt_io_readable(status, events))
    return;
  /* The master is gone: no result could reach anyone, and an orphaned
   * worker is exactly what must never exist. */
  distc__shared_orphaned();
  _exit(1);
}

/* The worker's heartbeat comes from this thread, not from the main one, so
 * a worker busy in a long call is still heard from. */
static void on_beat(uv_timer_t *t) {
  (void)t;
  distc__conn_heartbeat(distc__C.master);
}

static void io_main(void *arg) {
  (void)arg;
  uv_run(&wloop, UV_RUN_DEFAULT);
}

int distc__worker_main(void) {
  distc__cluster *C = &distc__C;
  const char *addr = getenv(DISTC_ENV_MASTER);
  const char *idx = getenv(DISTC_ENV_INDEX);
  const char *parent = getenv(DISTC_ENV_PARENT);
  if (!addr || !idx)
    die("%s or %s missing from the environment", DISTC_ENV_MASTER,
        DISTC_ENV_INDEX);
  if (parent) {
    /* Die with whoever started us; if it is already gone, go now. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)atol(parent))
      _exit(1);
  }
  /* The secret stays in memory (only): every link to another worker runs
   * the same handshake with it. */
  read_secret(C->secret);
  distc__shared_set_secret(C->secret);
  int index = atoi(idx);
  const char *lw = getenv(DISTC_ENV_LOCAL_WORKERS);
  local_workers = lw ? atoi(lw) : 0;
  double deadline = distc__now() + env_double(DISTC_ENV_TIMEOUT, 60) * 1e9;
  char *master_addr = strdup(addr);
  const char *local = getenv(DISTC_ENV_MASTER_LOCAL);
  /* The same-host socket when it is reachable (same host and network
   * namespace) and no transport is forced, TCP otherwise (transport.c). */
  int fd = distc__transport_dial_local(local);
  if (fd < -1)
    die("%s", distc_errmsg());
  bool via_local = fd >= 0;
  /* Nothing of ours may leak into programs this worker starts: they would
   * think they are workers too. */
  const char *ours[] = {DISTC_ENV_ROLE, DISTC_ENV_MASTER, DISTC_ENV_SECRET_FD,
                        DISTC_ENV_INDEX, DISTC_ENV_PARENT, DISTC_ENV_TIMEOUT,
                        DISTC_ENV_MASTER_LOCAL, DISTC_ENV_LOCAL_WORKERS};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(ours); i++)
    unsetenv(ours[i]);

  if (fd < 0)
    fd = dial(master_addr, deadline);
  uint64_t t_conn = distc__tracing() ? distc__trace_now() : 0;
  int id;
  bool cma = false;
  char link_local[64], link_tcp[256];
  distc__peers_listen(fd, master_addr, link_local, sizeof link_local,
                      link_tcp, sizeof link_tcp);
  handshake(fd, index, deadline, &id, &cma, link_local, link_tcp);
  if (distc__tracing()) {
    distc__trace_span_at("launch", "connect", distc__trace_t_init, t_conn,
                         "\"index\":%d,\"same_host_socket\":%s", index,
                         via_local ? "true" : "false");
    distc__trace_span("launch", "handshake", t_conn, "\"cma\":%s",
                      cma ? "true" : "false");
  }
  free(master_addr);

  C->myid = id;
  C->is_master = false;
  C->initialised = true;
  distc__log_setid(id);
  if (distc__tracing())
    distc__trace_name_track();
  C->master = distc__conn_new(fd);
  if (!C->master)
    die("out of memory");
  C->master->id = DISTC_MASTER;
  C->master->cma = cma;
  /* On the same host the rings carry the frames (transport.c); forced
   * unix keeps the socket alone. */
  distc__transport tr;
  if (via_local && distc__transport_forced(&tr) == 0 &&
      tr != DISTC__TRANSPORT_UNIX && distc__conn_offer_shm(C->master) < 0) {
    if (tr == DISTC__TRANSPORT_SHM)
      die("%s", distc_errmsg());
    distc__log(DISTC__LOG_WARN, "%s: staying on the socket", distc_errmsg());
  }
  if (distc__output_capture() < 0)
    die("%s", distc_errmsg());
  distc__depart_init(C->master);
  distc__interrupt_worker_init();
  distc__peers_main_thread();

  uv_loop_init(&wloop);
  uv_poll_init(&wloop, &out_poll, distc__output_fd());
  uv_poll_start(&out_poll, UV_READABLE, on_output);
  uv_poll_init(&wloop, &hup_poll, fd);
  uv_poll_start(&hup_poll, UV_DISCONNECT, on_hangup);
  distc__interrupt_io_start(&wloop, &hup_poll, on_hangup);
  distc__peers_start(&wloop, distc__topology);
  static uv_timer_t beat_timer;
  double beat = distc__liveness_get()->interval_ns / 1e6;
  if (beat > 0) {
    uint64_t every = beat / 2 < 5 ? 5 : (uint64_t)(beat / 2);
    uv_timer_init(&wloop, &beat_timer);
    uv_timer_start(&beat_timer, on_beat, every, every);
    /* The worker does not judge its master by silence: a master stopped
     * with Ctrl-Z (workers are in process groups of their own) must find
     * its workers when it resumes.  But a master whose host vanished never
     * acknowledges our heartbeats, and over TCP that ends the connection
     * after the deadline, so the worker exits instead of lingering. */
    unsigned int ms = (unsigned int)(beat * distc__liveness_get()->misses);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
  }
  uv_thread_t io;
  if (uv_thread_create(&io, io_main, NULL) != 0)
    die("cannot start the I/O thread");

  double last = distc__now(), took = CORK_MAX_NS;
  bool corked = false, mine = own_core(master_here(fd, via_local)), hard = mine;
  double yield_lost_until = 0;
  unsigned idle = 0;
  for (;;) {
    bool want = took < CORK_MAX_NS && batches_ahead(C->master);
    if (want != corked)
      cork(fd, corked = want);
    int r = distc__peers_pump(); /* the master's link and every worker's */
    if (r < 0) {
      distc__shared_orphaned();
      _exit(1);
    }
    if (r > 0) {
      double now = distc__now();
      took = now - last;
      last = now;
      idle = 0;
      continue;
    }
    if (corked)
      cork(fd, corked = false);
    took = CORK_MAX_NS; /* the next call is not known to be short */
    if (distc__now() - last < IDLE_SPIN_NS && last >= yield_lost_until) {
      distc__peers_spin(true); /* no doorbell while we look */
      if (idle++ % SPARE_CHECK == 0)
        hard = mine && (local_workers > 0 || distc__spare_core());
      if (hard)
        distc__cpu_relax();
      else
        yield_briefly(&yield_lost_until); /* lost: the next turn sleeps */
      continue;
    }
    distc__peers_poll(-1);
    last = distc__now();
  }
}

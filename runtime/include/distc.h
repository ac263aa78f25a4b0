/* distc.h — the one public header of libdistc.
 *
 * A program links libdistc, calls distc_init(&argc, &argv) first thing, and
 * is then either the master (distc_init returns with every worker connected)
 * or a worker (distc_init runs the worker loop and never returns).  Functions
 * registered with DISTC_FUNCTION exist on every process of the same binary and
 * can be called remotely by name.
 *
 * Conventions: every call that can fail returns 0 or a negative DISTC_E* code;
 * distc_strerror() names the code and distc_errmsg() gives the detailed text
 * of the last failure in the calling thread ("On worker 3: ...").
 * Values are reference counted: every function that returns a distc_value *
 * hands the caller one reference, released with distc_value_free().
 * One rule for results: a call that hands back a value, future, pool or
 * handle through an out-pointer (distc_fetch, distc_remotecall_fetch,
 * distc_pmap, ...) sets it on success and sets it to NULL on failure, so
 * freeing it afterwards is always safe.
 */
#ifndef DISTC_H
#define DISTC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DISTC_BUILDING)
#define DISTC_API __attribute__((visibility("default")))
#else
#define DISTC_API
#endif

#define DISTC_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------ */

#define DISTC_ERRNO_MAP(X)                                                    \
  X(EINVAL, "invalid argument")                                               \
  X(ENOMEM, "out of memory")                                                  \
  X(ENOENT, "no such process")                                                \
  X(EREMOTE, "the remote function failed")                                    \
  X(ENOTREG, "function is not registered")                                    \
  X(EPROCEXIT, "the process exited")                                          \
  X(ETIMEDOUT, "timed out")                                                   \
  X(EAUTH, "authentication failed")                                           \
  X(EPROTO, "protocol error")                                                 \
  X(EFINGERPRINT, "worker runs a different binary")                           \
  X(EIO, "input/output error")                                                \
  X(ESPAWN, "could not start a process")                                      \
  X(ENOTMASTER, "only the master may do this")                                \
  X(ETOOBIG, "message larger than the frame limit")                           \
  X(ETYPE, "value has another type")                                          \
  X(ELOAD, "could not load the shared object")                                \
  X(ENOTSUP, "not supported")                                                 \
  X(ESTATE, "distc is not initialised or already finalised")                  \
  X(ECLOSED, "the channel is closed")                                         \
  X(EINTERRUPTED, "interrupted")

enum {
  DISTC_OK = 0,
#define DISTC__ERR_ENUM(name, text) DISTC_##name,
  DISTC__ERR_FIRST = -100,
  DISTC_ERRNO_MAP(DISTC__ERR_ENUM)
#undef DISTC__ERR_ENUM
  DISTC__ERR_END
};

/* Static text for a DISTC_E* code (or "success"). */
DISTC_API const char *distc_strerror(int err);
/* Detailed message of the last failure in this thread (a successful call
 * leaves it as it was); valid until the next failure in this thread.
 * Never NULL. */
DISTC_API const char *distc_errmsg(void);

/* ---- start and stop ---------------------------------------------------- */

/* In a worker: runs the worker loop and never returns (the process exits when
 * the master says so or its connection is lost).  In the master: returns 0
 * with every worker the launcher started connected and ready.  A program run
 * without distc-launch is a master with no workers. */
DISTC_API int distc_init(int *argc, char ***argv);
/* Master: asks every worker to exit, waits for them, releases everything.
 * Also called at exit if the program did not. */
DISTC_API int distc_finalize(void);

/* ---- identity ---------------------------------------------------------- */

#define DISTC_MASTER 1
#define DISTC_ANY 0 /* spawnat target: the next worker, round robin */

DISTC_API int distc_myid(void);
DISTC_API int distc_nprocs(void);   /* master + workers */
DISTC_API int distc_nworkers(void); /* 1 when there are no workers, as Julia */
/* Writes up to max worker ids (ascending) to ids; returns how many workers
 * there are (may exceed max).  With no workers, the list is { 1 }. */
DISTC_API int distc_workers(int *ids, int max);

/* ---- adding and removing workers ---------------------------------------- */

typedef struct distc_addprocs_opts {
  int count;               /* workers to add, >= 1; 0: every slot of the
                              hosts the manager's resources name */
  const char *manager;     /* NULL: chosen as distc-launch chooses */
  const char *dir;         /* working directory; NULL: the master's */
  const char *exename;     /* executable; NULL: the master's own */
  const char *const *env;  /* NULL-terminated "K=V" list added, or NULL */
  double timeout_s;        /* 0: 60 s */
  /* Workers on other hosts over SSH: a host list as distc-launch --hosts
   * takes it ("node1:2,user@node2:4"), the same as a "hosts=..." entry of
   * manager_options; the manager is then "ssh" unless named.  count 0
   * means every slot the hosts give (ids needs room for them); a larger
   * count than that is an error. */
  const char *hosts;
  /* NULL-terminated options for the manager, written as distc-launch's
   * long options without "--": "ssh-config=FILE", "tunnel", ... (see
   * distc-launch(1)); they imply the manager as they do there, and an
   * option the manager does not take is an error naming it. */
  const char *const *manager_options;
  /* "all_to_all" (workers call each other, linked on first use) or
   * "master_worker" (workers talk to the master only); NULL: as the master
   * was started ($DISTC_TOPOLOGY, distc-launch --topology), else
   * all_to_all. */
  const char *topology;
} distc_addprocs_opts;

/* Master only.  Starts opts->count workers and waits until all are connected
 * (or none: on failure every worker of this call is stopped).  Writes the new
 * ids to ids (room for opts->count) and returns how many were added (fewer
 * only with the ssh manager's "allow-partial"). */
DISTC_API int distc_addprocs(const distc_addprocs_opts *opts, int *ids);
/* Master only.  Asks the workers to exit and waits for them (up to 5 s, or
 * $DISTC_RMPROCS_GRACE seconds, then kills them).  Returns once every
 * removed id is out of distc_workers() and of every pool.  Their ids are
 * never reused. */
DISTC_API int distc_rmprocs(const int *ids, int n);

/* ---- statistics --------------------------------------------------------- */

/* This process's traffic with one peer since it joined (distc-launch
 * --stats prints the master's for every worker at exit). */
typedef struct distc_peer_stats {
  uint64_t calls_sent;     /* calls this process sent to the peer */
  uint64_t calls_received; /* calls the peer sent to this process */
  uint64_t bytes_sent;     /* written to the peer's connection (frames) */
  uint64_t bytes_received; /* read from the peer's connection (frames) */
  /* Array bytes copied straight out of the peer's memory (a worker on the
   * master's host; process_vm_readv), which bytes_received leaves out. */
  uint64_t bytes_copied;
  /* Seconds during which at least one call of this process was running on
   * the peer (or waiting for its answer). */
  double busy_s;
} distc_peer_stats;

/* Fills *s with this process's counters for process pid: a worker (on the
 * master), the master (on a worker), or distc_myid() for the sums over
 * every peer.  Reads local counters only: sends nothing, never blocks.
 * 0, DISTC_EINVAL (s NULL), DISTC_ENOENT (pid is no live peer) or
 * DISTC_ESTATE; *s is zeroed on failure. */
DISTC_API int distc_stats(int pid, distc_peer_stats *s);

/* ---- workers that join from outside (elastic join) ---------------------- */

/* Where workers join: the address and the key file to give them. */
typedef struct distc_join_info {
  char addr[256];      /* "host:port": the joiner's DISTC_JOIN */
  char key_file[4096]; /* path: the joiner's DISTC_JOIN_KEY */
} distc_join_info;

/* Master only.  Opens the door for workers started by anyone else (a shell
 * loop, a batch job): listens on listen, "[ADDR:]PORT" (NULL: every
 * address, a port the system picks), and writes the cluster's key to
 * key_file (NULL: $HOME/.distc/join-HOST-PID.key), mode 0600, removed by
 * distc_finalize.  A program run with DISTC_JOIN=info->addr and
 * DISTC_JOIN_KEY=info->key_file in its environment then joins as the next
 * worker id once it proves the key (the mutual handshake every worker
 * runs) and runs the master's binary.  The published address is ADDR, or
 * this host's name when listening on every address.  Under distc-launch
 * --listen the door is already open: distc_listen(NULL, NULL, &info) fills
 * info; other arguments then fail with DISTC_ESTATE.  info may be NULL. */
DISTC_API int distc_listen(const char *listen, const char *key_file,
                           distc_join_info *info);
/* Master only.  Blocks until at least n workers are present or timeout_s
 * seconds have passed; returns how many are present, or DISTC_ETIMEDOUT. */
DISTC_API int distc_wait_workers(int n, double timeout_s);
/* Called once for every worker that joins (joined 1) or leaves (joined 0,
 * whether it exited, was removed or its job ended), in that order, on one
 * of the master's service threads: it may make calls, but calls that wait
 * on the worker that just joined hold up later events.  Registering
 * replaces the previous callback; NULL stops.  Events from before
 * registering are not replayed: read distc_workers() after it. */
typedef void (*distc_members_fn)(int id, int joined, void *arg);
DISTC_API int distc_on_members(distc_members_fn fn, void *arg);

/* ---- values ------------------------------------------------------------ */

typedef enum distc_type {
  DISTC_NIL,
  DISTC_BOOL,
  DISTC_INT,    /* int64_t */
  DISTC_DOUBLE,
  DISTC_STRING, /* UTF-8, NUL-terminated, length known */
  DISTC_BYTES,
  DISTC_ARRAY,  /* n-d numeric, column-major like Julia */
  DISTC_LIST,
  DISTC_HANDLE  /* a distributed array or remote channel (see the end) */
} distc_type;

typedef enum distc_dtype {
  DISTC_F64,
  DISTC_F32,
  DISTC_I64,
  DISTC_I32,
  DISTC_U8
} distc_dtype;

#define DISTC_MAXDIM 8

typedef struct distc_value distc_value;

DISTC_API distc_value *distc_nil(void);
DISTC_API distc_value *distc_bool(bool b);
DISTC_API distc_value *distc_int(int64_t i);
DISTC_API distc_value *distc_double(double d);
DISTC_API distc_value *distc_string(const char *s);             /* copies */
DISTC_API distc_value *distc_stringn(const char *s, size_t n);  /* copies */
DISTC_API distc_value *distc_bytes(const void *p, size_t n);    /* copies */
/* A zero-filled array; fill it through distc_array_data(). */
DISTC_API distc_value *distc_array(distc_dtype t, int ndim, const size_t *dims);
/* A list of n nils; fill it with distc_list_set(). */
DISTC_API distc_value *distc_list(size_t n);
/* A list holding the n values given; it takes over each reference, so
 * distc_listv(2, distc_int(1), distc_string("x")) leaks nothing. */
DISTC_API distc_value *distc_listv(size_t n, ...);
/* Appends v to list l (takes over the reference to v). */
DISTC_API int distc_list_push(distc_value *l, distc_value *v);
/* Replaces item i of list l with v (takes over the reference to v). */
DISTC_API int distc_list_set(distc_value *l, size_t i, distc_value *v);

DISTC_API distc_value *distc_value_ref(distc_value *v);
DISTC_API void distc_value_free(distc_value *v); /* NULL is fine */

DISTC_API distc_type distc_value_type(const distc_value *v);
DISTC_API bool distc_value_bool(const distc_value *v);     /* false if not bool */
DISTC_API int64_t distc_value_int(const distc_value *v);   /* also from double */
DISTC_API double distc_value_double(const distc_value *v); /* also from int */
/* String or bytes contents, owned by v; len may be NULL. */
DISTC_API const char *distc_value_str(const distc_value *v, size_t *len);
DISTC_API size_t distc_list_len(const distc_value *v);
/* Borrowed: valid while the list lives.  NULL when out of range. */
DISTC_API distc_value *distc_list_at(const distc_value *v, size_t i);
DISTC_API distc_dtype distc_array_dtype(const distc_value *v);
DISTC_API int distc_array_ndim(const distc_value *v);
DISTC_API const size_t *distc_array_dims(const distc_value *v);
DISTC_API size_t distc_array_len(const distc_value *v);   /* elements */
DISTC_API void *distc_array_data(const distc_value *v);   /* owned by v */
DISTC_API size_t distc_dtype_size(distc_dtype t);
/* Deep equality (same types, same contents). */
DISTC_API bool distc_value_equal(const distc_value *a, const distc_value *b);

/* ---- functions --------------------------------------------------------- */

typedef struct distc_ctx distc_ctx;

/* A remotely callable function.  args is a list, borrowed for the call.
 * Return a new value (ownership passes to distc), or NULL after
 * distc_fail() to report an error to the caller. */
typedef distc_value *(*distc_fn)(const distc_value *args, distc_ctx *ctx);

/* Registers fn under name in this process (what DISTC_FUNCTION does at load
 * time).  name must stay valid for the life of the process. */
DISTC_API int distc_register(const char *name, distc_fn fn);

/* Defines and registers a function on every process of this binary:
 *   DISTC_FUNCTION(square) { return distc_int(...); }                     */
#define DISTC_FUNCTION(name)                                                  \
  static distc_value *name(const distc_value *args DISTC__UNUSED,            \
                           distc_ctx *ctx DISTC__UNUSED);                     \
  __attribute__((constructor)) static void distc__register_##name(void) {    \
    distc_register(#name, name);                                              \
  }                                                                           \
  static distc_value *name(const distc_value *args DISTC__UNUSED,            \
                           distc_ctx *ctx DISTC__UNUSED)
#define DISTC__UNUSED __attribute__((unused))

/* Inside a registered function: records an error message for the caller and
 * returns NULL, so `return distc_fail(ctx, "n must be > 0, got %d", n);`. */
DISTC_API distc_value *distc_fail(distc_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Loads a shared object on every process (the workers, then the master),
 * the analog of `@everywhere using X`: its DISTC_FUNCTIONs become callable.
 * Master only.  Every process's error is gathered into distc_errmsg(). */
DISTC_API int distc_load_everywhere(const char *path);

/* ---- remote calls and futures ------------------------------------------ */

typedef struct distc_future distc_future;

/* Starts fn(args) on process pid and returns at once with a future in *out
 * (free it with distc_future_free).  args (a list, or NULL for none) is
 * borrowed: the caller keeps its reference. */
DISTC_API int distc_remotecall(int pid, const char *fn, const distc_value *args,
                               distc_future **out);
/* remotecall + fetch: *result receives a new reference. */
DISTC_API int distc_remotecall_fetch(int pid, const char *fn,
                                     const distc_value *args,
                                     distc_value **result);
/* remotecall + wait: returns once the call has completed; its result is
 * dropped, its error reported. */
DISTC_API int distc_remotecall_wait(int pid, const char *fn,
                                    const distc_value *args);
/* Fire and forget: nothing comes back; a failure is printed by the worker. */
DISTC_API int distc_remote_do(int pid, const char *fn, const distc_value *args);
/* remotecall on pid, or on the next worker round robin when pid is
 * DISTC_ANY (Julia's @spawn / @spawnat). */
DISTC_API int distc_spawnat(int pid, const char *fn, const distc_value *args,
                            distc_future **out);

/* Blocks until f is complete; *result receives a new reference to its value
 * (fetch may be repeated).  On a remote failure returns DISTC_EREMOTE (or
 * DISTC_ENOTREG, DISTC_EPROCEXIT) and distc_errmsg() says where. */
DISTC_API int distc_fetch(distc_future *f, distc_value **result);
DISTC_API int distc_wait(distc_future *f);
/* As distc_fetch and distc_wait, but give up after timeout_s seconds with
 * DISTC_ETIMEDOUT; the call goes on and f stays valid (fetch it again
 * later).  A worker that stops answering altogether is found by the
 * liveness check instead (DISTC_EPROCEXIT, see distc(7)). */
DISTC_API int distc_fetch_timeout(distc_future *f, double timeout_s,
                                  distc_value **result);
DISTC_API int distc_wait_timeout(distc_future *f, double timeout_s);
/* Waits for all n futures (Julia's @sync); returns the first error. */
DISTC_API int distc_wait_all(distc_future *const *fs, size_t n);
DISTC_API bool distc_isready(distc_future *f);
/* The pid the call ran on. */
DISTC_API int distc_future_where(const distc_future *f);
DISTC_API void distc_future_free(distc_future *f); /* NULL is fine */
/* A future as a value any process can be sent (Julia's Future): *out (a
 * new value, free it) is the pair [owner pid, reference], the owner being
 * this process.  Another process turns it back with
 * distc_future_from_value and fetches it from the owner, which answers once
 * f completes.  The pair is good while the owner keeps f: after
 * distc_future_free there, fetching it fails with DISTC_ENOENT. */
DISTC_API int distc_future_value(distc_future *f, distc_value **out);
/* The future a distc_future_value pair names (free it with
 * distc_future_free): on the owner, f itself; elsewhere, a call to the
 * owner that completes with f's value or error. */
DISTC_API int distc_future_from_value(const distc_value *v,
                                      distc_future **out);

/* Master only.  Runs fn(args) on every process (master included, last),
 * waits for all, and gathers every error into distc_errmsg(), one line per
 * failed process. */
DISTC_API int distc_everywhere(const char *fn, const distc_value *args);

/* ---- interrupts -------------------------------------------------------- */

/* Master only (Julia's interrupt(pids)).  Interrupts the call running on
 * each of the n workers in ids (ids NULL and n 0: on every worker); a
 * worker with no call running ignores it.  Returns once the interrupts are
 * sent, without waiting: the interrupted call's caller gets
 * DISTC_EINTERRUPTED ("On worker N: interrupted ...").  DISTC_ENOENT (and
 * nothing sent) when an id is not a worker's. */
DISTC_API int distc_interrupt(const int *ids, int n);
/* Inside a registered function: whether the call it serves was
 * interrupted.  A long computation polls it and returns (anything: the
 * caller gets DISTC_EINTERRUPTED); a wait in the library (distc_fetch, a
 * channel take) returns DISTC_EINTERRUPTED by itself, and a system call
 * blocked in the function returns early with EINTR.  Safe from any thread
 * of the process; false on the master and outside a call. */
DISTC_API bool distc_interrupted(void);

/* ---- worker pools, parallel map, distributed loops and reductions ------ */

/* A worker pool: a set of processes that calls can be sent to as a group
 * (Julia's WorkerPool).  A member that exits leaves the pool by itself.
 * Master only; the pool may be used from several threads. */
typedef struct distc_pool distc_pool;

/* Creates a pool of the n processes in ids (live workers, or the master
 * itself; no duplicates).  *out receives the pool, freed with
 * distc_pool_free.  DISTC_ENOENT names an id that is not a live process.
 * ids NULL and n 0 make the default pool: every worker present now and
 * every one that joins later (the master while there is none), as pmap
 * with no pool uses; pmap over it takes in workers that join mid-map. */
DISTC_API int distc_pool_new(const int *ids, int n, distc_pool **out);
/* Frees the pool.  Futures started through it stay valid.  NULL is fine. */
DISTC_API void distc_pool_free(distc_pool *p);
/* Live members now (exited workers are dropped first). */
DISTC_API int distc_pool_size(distc_pool *p);
/* Writes up to max live member ids (ascending) to ids; returns how many
 * members there are (may exceed max). */
DISTC_API int distc_pool_members(distc_pool *p, int *ids, int max);
/* remotecall on a free member of p: one with no call of this pool still
 * running (blocks until one is free, as Julia's take!).  The member counts as
 * busy until the call completes.  args is borrowed; *out as distc_remotecall.
 * DISTC_ENOENT when the pool has no live member. */
DISTC_API int distc_remotecall_pool(distc_pool *p, const char *fn,
                                    const distc_value *args,
                                    distc_future **out);
/* remotecall_pool + fetch: *result receives a new reference. */
DISTC_API int distc_remotecall_fetch_pool(distc_pool *p, const char *fn,
                                          const distc_value *args,
                                          distc_value **result);

/* pmap's hook for a failed item (Julia's on_error): runs on the calling
 * thread with the item borrowed and the error's code and text, at every
 * failure of the item and before any retry.  It returns a new reference to
 * the value put in the item's place, which ends the item (no retry), or
 * NULL to rethrow the error: the item is then retried if the retry options
 * allow, else pmap fails with that error. */
typedef distc_value *(*distc_pmap_error_fn)(size_t index,
                                            const distc_value *item, int err,
                                            const char *msg, void *arg);
/* pmap's retry predicate (Julia's retry_check): true to try the item again.
 * attempt is 1 for the first retry. */
typedef bool (*distc_pmap_retry_fn)(size_t index, int err, const char *msg,
                                    int attempt, void *arg);

/* Options of distc_pmap; all zero (or a NULL pointer) is the default:
 * every worker, automatic batches, fail on the first error, no retries,
 * a progress bar when stderr is a terminal. */
typedef struct distc_pmap_opts {
  distc_pool *pool;        /* NULL: every worker (the master when none),
                              workers that join mid-map included */
  size_t batch_size;       /* items per call; 0: automatic (batches sized so a
                              round trip is amortised, shrinking at the end) */
  /* A constant extra argument: fn receives [item, arg].  It is sent once to
   * each process that takes part, not with every item.  Borrowed for the
   * call; NULL: fn receives [item]. */
  const distc_value *arg;
  distc_pmap_error_fn on_error; /* NULL: see error_value */
  void *on_error_arg;
  /* When on_error is NULL: put (a reference to) this value in place of a
   * failed item that is not retried; NULL: pmap fails with the item's
   * error.  Borrowed. */
  const distc_value *error_value;
  int retries;             /* retries of a failed item, each on another
                              worker when one is free; on_error comes first */
  double retry_delay_s;    /* wait before the first retry (0: none) */
  double retry_factor;     /* each further wait this many times longer (<= 1:
                              constant) */
  double retry_max_delay_s; /* cap on the wait (0: none) */
  distc_pmap_retry_fn retry_check; /* NULL: retry every error */
  void *retry_arg;
  bool local;              /* run every item here (Julia's distributed=false) */
  bool no_progress;        /* never draw the progress bar */
} distc_pmap_opts;

/* Parallel map (Julia's pmap): calls fn([item]) (or fn([item, opts->arg]))
 * for every item of inputs, a list, or an array whose elements (in memory
 * order) are the items as int or double values.  A free worker takes the
 * next batch, so uneven items balance.  If a worker exits, its unfinished
 * items run on the others; with none left pmap fails with DISTC_EPROCEXIT.
 * On success *results receives a new list, as long as inputs, in input
 * order.  On failure (an item failed with no on_error or error_value to
 * stand in, or no worker is left) returns the error once the batches
 * already running have finished; distc_errmsg() names the item and worker.
 * inputs and opts (may be NULL) are borrowed.  Master only, unless
 * opts->local: on a worker it fails with DISTC_ENOTMASTER, since
 * worker-to-worker calls do not exist yet. */
DISTC_API int distc_pmap(const char *fn, const distc_value *inputs,
                         const distc_pmap_opts *opts, distc_value **results);

/* The built-in reduction operators, element-wise on arrays (same dtype and
 * length); an int combined with a double gives a double. */
typedef enum distc_op {
  DISTC_OP_SUM = 1,
  DISTC_OP_PROD,
  DISTC_OP_MIN,
  DISTC_OP_MAX
} distc_op;

/* Distributed reduction (Julia's `@distributed (op) for i in lo:hi-1`): the
 * range [lo, hi) is split into one contiguous chunk per worker (fewer when
 * the range is shorter) and fn([clo, chi]) (or fn([clo, chi, arg])) runs once
 * per chunk, reducing the whole chunk itself and returning its partial
 * value.  The partials are combined in chunk order with op.  Blocking:
 * *result receives a new reference to the result; an empty range gives nil
 * and runs nothing.  A failed chunk fails the reduction, and distc_errmsg()
 * names every failed chunk and its worker.  arg is borrowed.  Master
 * only. */
DISTC_API int distc_reduce(const char *fn, int64_t lo, int64_t hi, distc_op op,
                           const distc_value *arg, distc_value **result);
/* distc_reduce with a registered reducer function instead of an operator:
 * the partials p1, p2, ... are combined as reducer([reducer([p1, p2]), p3])
 * ..., on the master. */
DISTC_API int distc_reduce_with(const char *fn, int64_t lo, int64_t hi,
                                const char *reducer, const distc_value *arg,
                                distc_value **result);
/* Distributed loop without a reducer (`@sync @distributed for`): the same
 * split, run for its side effects; returns once every chunk is done, with the
 * chunks' errors gathered into distc_errmsg().  Master only. */
DISTC_API int distc_distributed_for(const char *fn, int64_t lo, int64_t hi,
                                    const distc_value *arg);
/* The same, without waiting (`@distributed for`): *out receives a future,
 * complete (with a nil value) when every chunk is done, or with the first
 * error; free it with distc_future_free.  arg is borrowed. */
DISTC_API int distc_distributed_for_async(const char *fn, int64_t lo,
                                          int64_t hi, const distc_value *arg,
                                          distc_future **out);

/* ---- shared arrays, distributed arrays, remote channels ---------------- */

/* Shared arrays (Julia's SharedArray).  An n-d numeric array in POSIX shared
 * memory (or a file) mapped by the master and by a set of participants, all
 * on the master's host.  It is an ordinary DISTC_ARRAY value: the data
 * pointer is distc_array_data(), writes are seen by every participant at
 * once, and passing it in a call (or to pmap) sends a handle, never the data;
 * the worker receiving it sees the same memory.  Only the master and the
 * participants can receive it.
 *
 * The memory is an anonymous memfd that the participants open through the
 * master's /proc entry, so it has no name: nothing stays in /dev/shm however
 * the processes end (SIGKILL of the launcher included); no file descriptor
 * stays open.  A file the array creates (opts.path, create) gets mode 0600.  The memory lives until the master's last reference is freed
 * (distc_value_free); then every participant unmaps it once the values it
 * still holds are freed too. */
typedef struct distc_shared_opts {
  /* The participants (master included or not; no duplicates), all on the
   * master's host; NULL: every worker on the master's host, or the master
   * alone when there is none (as Julia). */
  const int *pids;
  int npids;
  /* A registered function run once on each participant with the arguments
   * [S, init_args...], to fill its own part (distc_shared_localindices);
   * NULL: the array starts zeroed (or with the file's contents). */
  const char *init;
  const distc_value *init_args; /* a list, or NULL; borrowed */
  /* File-backed: map this file instead of shared memory (for data larger
   * than memory).  The data starts offset bytes into the file.  The file
   * must exist and be large enough, unless create is set: then it is
   * created or grown to fit (never shrunk).  The file stays. */
  const char *path;
  uint64_t offset;
  bool create;
} distc_shared_opts;

/* Master only.  Creates a shared array of dtype t and dims (column-major),
 * maps it on every participant, runs opts->init there, and hands the caller
 * *out (a new reference).  opts may be NULL.  Fails with DISTC_EINVAL when
 * a participant is on another host ("needs all its processes on one
 * machine"), DISTC_ENOENT for an id that is not a live process, DISTC_EIO
 * when the segment or file cannot be made, and the init function's error
 * (then nothing is left). */
DISTC_API int distc_shared_new(distc_dtype t, int ndim, const size_t *dims,
                               const distc_shared_opts *opts,
                               distc_value **out);
/* True when v is a shared array (on any process that holds one). */
DISTC_API bool distc_is_shared(const distc_value *v);
/* Writes up to max participant ids (in split order) to ids; returns how
 * many there are, or DISTC_ETYPE when s is not a shared array. */
DISTC_API int distc_shared_procs(const distc_value *s, int *ids, int max);
/* The part of s process pid works on: linear element indices [*lo, *hi)
 * (0-based, column-major), an even split over the participants in order;
 * empty for a process that is not one (the master, by default).  Returns 0
 * or DISTC_ETYPE. */
DISTC_API int distc_shared_indices(const distc_value *s, int pid, size_t *lo,
                                   size_t *hi);
/* distc_shared_indices for this process (Julia's localindices). */
DISTC_API int distc_shared_localindices(const distc_value *s, size_t *lo,
                                        size_t *hi);

/* Distributed arrays (Julia's DArray).  An n-d numeric array cut into a grid
 * of chunks, each held by one owner (a worker, or the master if named); the
 * data never needs to pass through the master and the owners may be on
 * different hosts.  The array is named by a DISTC_HANDLE value: pass it in
 * calls freely (only the small handle travels).  Creating, mapping,
 * reducing, gathering and freeing are master-only; localpart and the layout
 * queries work on any process holding the handle.  Indices are 0-based and
 * half-open, per dimension. */
typedef struct distc_darray_opts {
  const int *pids; /* owners, in chunk order; NULL: every worker */
  int npids;
  /* Chunks along each dimension (ndim entries, each >= 1 and at most the
   * dimension; their product at most the owner count); NULL: chosen from the
   * dims and the owner count (Julia's defaultdist). */
  const int *dist;
  /* distc_darray_new only: a registered function run on each owner with
   * [D, init_args...] that fills distc_darray_localpart(D) in place; NULL:
   * zeros.  Built in: "distc_darray_rand" (init_args [seed]: uniform in
   * [0, 1) for floating dtypes, in [0, 100) for integer ones; reproducible
   * for a seed and layout) and "distc_darray_fill" (init_args [x]). */
  const char *init;
  const distc_value *init_args; /* a list, or NULL; borrowed */
} distc_darray_opts;

/* Master only.  Cuts the local array a into chunks and sends each to its
 * owner; *out receives the handle.  a and opts (may be NULL) are
 * borrowed. */
DISTC_API int distc_darray_distribute(const distc_value *a,
                                      const distc_darray_opts *opts,
                                      distc_value **out);
/* Master only.  Creates the chunks directly on their owners (zeroed, then
 * opts->init); no data passes through the master. */
DISTC_API int distc_darray_new(distc_dtype t, int ndim, const size_t *dims,
                               const distc_darray_opts *opts,
                               distc_value **out);
DISTC_API bool distc_is_darray(const distc_value *v);
/* The dtype, ndim and dims (room for DISTC_MAXDIM) of the whole array; any
 * pointer may be NULL.  0 or DISTC_ETYPE. */
DISTC_API int distc_darray_info(const distc_value *d, distc_dtype *t,
                                int *ndim, size_t *dims);
/* How many chunks there are (0 when d is not a darray). */
DISTC_API size_t distc_darray_nchunks(const distc_value *d);
/* Chunk i (column-major over the chunk grid): its owner and its index
 * ranges lo[k] .. hi[k] (room for ndim each; may be NULL). */
DISTC_API int distc_darray_chunk(const distc_value *d, size_t i, int *owner,
                                 size_t *lo, size_t *hi);
/* Writes up to max owner ids (chunk order) to ids; returns the count. */
DISTC_API int distc_darray_procs(const distc_value *d, int *ids, int max);
/* On an owner: *out receives a new reference to its chunk, an ordinary
 * array that may be read and written in place.  DISTC_ENOENT on a process
 * holding no chunk of d (the master, by default) or once d was freed. */
DISTC_API int distc_darray_localpart(const distc_value *d, distc_value **out);
/* The index ranges of this process's chunk (room for ndim each), or
 * DISTC_ENOENT on a process that owns none. */
DISTC_API int distc_darray_localindices(const distc_value *d, size_t *lo,
                                        size_t *hi);
/* Master only.  Each owner runs fn([chunk, D, args...]) on its chunk and
 * keeps the array fn returns as its chunk of a new darray, *out.  Chunks may
 * change shape and dtype, as long as the new chunks still tile an array:
 * the same dtype everywhere, and chunks in one slab of the grid agreeing on
 * their length along it (200x200xk -> 200x1xk is fine).  args: a list or
 * NULL, borrowed. */
DISTC_API int distc_darray_map(const distc_value *d, const char *fn,
                               const distc_value *args, distc_value **out);
/* Master only.  Each owner reduces its own chunk with fn([chunk, D]) (NULL:
 * the chunk's elements combined with op), and the caller combines the
 * partials in chunk order with op; *out receives the result (nil for an
 * array with no elements). */
DISTC_API int distc_darray_reduce(const distc_value *d, const char *fn,
                                  distc_op op, distc_value **out);
/* Master only.  Fetches every chunk into one new local array *out. */
DISTC_API int distc_darray_gather(const distc_value *d, distc_value **out);
/* Master only.  Releases the chunks on every owner (waiting for them) and
 * frees the caller's reference.  Other handles to the array go stale:
 * localpart, map and gather on them fail with DISTC_ENOENT.  Freeing a
 * handle with distc_value_free alone releases nothing remote.  NULL is
 * fine. */
DISTC_API int distc_darray_free(distc_value *d);

/* Remote channels (Julia's RemoteChannel).  A bounded FIFO of values owned
 * by one process, named by a DISTC_HANDLE value usable from any process
 * (pass it in calls).  Waiting never holds the owner's thread that runs
 * calls.  If the owner exits, blocked calls fail with DISTC_EPROCEXIT and
 * later ones with DISTC_ENOENT (no such process). */

/* Creates a channel of capacity >= 1 on process owner (may be this one);
 * *out receives the handle. */
DISTC_API int distc_channel_new(int owner, size_t capacity, distc_value **out);
DISTC_API bool distc_is_channel(const distc_value *v);
/* Appends v (borrowed; the channel keeps its own reference, or a copy on
 * another process), blocking while the channel is full.  DISTC_ECLOSED once
 * the channel is closed. */
DISTC_API int distc_channel_put(const distc_value *ch, const distc_value *v);
/* Removes the oldest value and hands it to *out (a new reference), blocking
 * while the channel is empty.  DISTC_ECLOSED when it is closed and empty
 * (blocked takers wake with it). */
DISTC_API int distc_channel_take(const distc_value *ch, distc_value **out);
/* As take, but leaves the value in the channel (Julia's fetch). */
DISTC_API int distc_channel_fetch(const distc_value *ch, distc_value **out);
/* *ready: whether a value is waiting (a take would not block).  Never
 * blocks. */
DISTC_API int distc_channel_isready(const distc_value *ch, bool *ready);
/* Closes the channel: later puts fail, takes drain what is left and then
 * fail; every blocked caller wakes with DISTC_ECLOSED. */
DISTC_API int distc_channel_close(const distc_value *ch);
/* Closes the channel and frees it on its owner (its values with it), then
 * frees the caller's reference.  Other handles go stale (DISTC_ENOENT).
 * Freeing a handle with distc_value_free alone leaves the channel. */
DISTC_API int distc_channel_free(distc_value *ch);

#ifdef __cplusplus
}
#endif
#endif /* DISTC_H */

/* parallel.h — internals shared by the parallel layer: waiting on many
 * futures at once, the worker side of pmap batches, the progress bar and
 * the built-in reduction operators.  Nothing here is installed. */
#ifndef DISTC_PARALLEL_H
#define DISTC_PARALLEL_H

#include "internal.h"

/* ---- waitset.c: one thread waits for completions of many futures ----
 * Each watched future carries a node; when the future completes, its node
 * joins the set's done queue (on whichever thread completed it).  The owner
 * takes nodes back one at a time, reading the outstanding calls'
 * connections itself: spinning while answers are due soon (yielding
 * between reads when the machine has no core to spare), sleeping in poll()
 * otherwise. */
typedef struct distc__wsnode {
  struct distc__wsnode *next;
  distc_future *f;    /* the owner's reference */
  distc__conn *conn;  /* where the answer comes from; NULL: this process */
  struct distc__waitset *ws;
} distc__wsnode;

typedef struct distc__wsconn {
  distc__conn *c;     /* a reference */
  int n;              /* outstanding nodes on it */
  bool quiet;         /* out of the I/O thread's epoll set (see waitset.c) */
} distc__wsconn;

typedef struct distc__waitset {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  bool sleeping;           /* the owner waits on cond */
  atomic_int ndone;        /* nodes in the queue, read without mu */
  distc__wsnode *head, *tail;
  int outstanding;         /* watched and not yet taken back (owner only) */
  double spin_ns;          /* adaptive spin budget (owner only) */
  int efd;                 /* eventfd that wakes an owner in poll(), or -1 */
  distc__wsconn *conns;    /* connections with outstanding nodes */
  int nconns, capconns;
  bool quiet;              /* they are out of the I/O thread's hands */
} distc__waitset;

void distc__waitset_init(distc__waitset *ws);
/* Call only once every node has come back. */
void distc__waitset_destroy(distc__waitset *ws);
/* Watches n->f and n->conn (set by the caller; the set takes its own
 * reference to the connection); n comes back from waitset_next once the
 * future is complete, possibly at once. */
void distc__waitset_add(distc__waitset *ws, distc__wsnode *n);
/* The next completed node, or NULL when none completed before deadline
 * (distc__now() scale; 0: no deadline) or when nothing is outstanding.
 * busy is how many worker processes are computing for us, which decides
 * whether a hard spin would steal their core (then it yields instead).
 * From here on this thread alone reads the connections, until
 * distc__waitset_release. */
distc__wsnode *distc__waitset_next(distc__waitset *ws, int busy,
                                   double deadline);
/* A completed node if one is queued, else NULL; never waits or reads. */
distc__wsnode *distc__waitset_take(distc__waitset *ws);
/* Takes the connections (and those added later) out of the I/O thread's
 * hands now rather than at the first wait: for an owner whose sends cannot
 * block on a connection it already holds (one call per connection). */
void distc__waitset_hold(distc__waitset *ws);
/* Hands the connections back to the I/O thread.  Call before anything that
 * may block (a send, user code): while this thread does not read them, a
 * worker writing a large answer would wait forever. */
void distc__waitset_release(distc__waitset *ws);
/* Cores this process may run on (its affinity mask). */
int distc__ncores(void);
/* Whether a thread may spin without taking a core someone needs: the
 * kernel's count of runnable tasks (/proc/loadavg, the caller included)
 * does not exceed the cores.  One pread; true where /proc is missing. */
bool distc__spare_core(void);

/* ---- pmap_batch.c: the worker side of a pmap batch ----
 * A batch is one call of DISTC__BATCH_FN with arguments
 *   [mapid, fn, items, (arg)]
 * where items is a list, or a 1-d array whose elements are the items (an
 * array input's slice, or a run of ints or doubles packed by pmap.c), and
 * arg (the map's constant extra argument) comes only with the first batch a
 * process gets for that map: the process keeps it until DISTC__BATCH_END_FN
 * [mapid] arrives.  The answer is
 *   [results, errors, elapsed_ns]
 * with results a list as long as items (nil for a failed item) — or, when
 * no item failed and every result is an int (or every one a double), an
 * I64 (F64) array of them — errors nil or a list of [position, code,
 * message], and elapsed_ns the time the items took to run there. */
#define DISTC__BATCH_FN "distc__pmap_batch"
_Static_assert(sizeof DISTC__BATCH_FN - 1 < 32, "a msgpack fixstr");
#define DISTC__BATCH_END_FN "distc__pmap_end"
/* Whether buf (n bytes of a connection's input, at a frame boundary) holds
 * a whole batch call and the start of another one (worker.c corks its
 * answers then). */
bool distc__batches_ahead(const char *buf, size_t n);
/* Item i of an array input as a scalar value (double or int). */
distc_value *distc__array_item(const distc_value *a, size_t i);

/* ---- progress.c: a one-line progress bar on stderr ---- */
typedef struct distc__progress {
  bool on;
  size_t total, shown;
  double t0, last;
  const char *label;
} distc__progress;

/* Turns the bar on when stderr is a terminal and off is false. */
void distc__progress_start(distc__progress *p, const char *label, size_t total,
                           bool off);
/* Redraws when done changed and the last draw is 100 ms old (or done is the
 * total). */
void distc__progress_update(distc__progress *p, size_t done);
/* Final draw and newline, if the bar is on. */
void distc__progress_end(distc__progress *p, size_t done);

/* ---- reduce_ops.c: built-in reduction operators ---- */
/* *acc = op(*acc, v), element-wise on arrays; ints stay ints, an int met by
 * a double becomes a double.  *acc (owned) is replaced; v is borrowed.
 * DISTC_ETYPE with a message when the two cannot be combined. */
int distc__op_combine(distc_op op, distc_value **acc, const distc_value *v);
const char *distc__op_name(distc_op op);
/* The scalar operators every reduction uses (distc_reduce, pmap's,
 * distc_darray_reduce): integers wrap, min and max propagate NaN. */
int64_t distc__op_i64(distc_op op, int64_t a, int64_t b);
double distc__op_f64(distc_op op, double a, double b);

#endif

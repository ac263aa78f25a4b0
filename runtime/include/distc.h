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
  X(ENOENT, "no such worker or function")                                     \
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
  X(ESTATE, "distc is not initialised or already finalised")

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
/* Detailed message of the last failure in this thread; valid until the next
 * distc call in this thread.  Never NULL. */
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
  int count;               /* workers to add, >= 1 */
  const char *manager;     /* NULL: "local" */
  const char *dir;         /* working directory; NULL: the master's */
  const char *exename;     /* executable; NULL: the master's own */
  const char *const *env;  /* NULL-terminated "K=V" list added, or NULL */
  double timeout_s;        /* 0: 60 s */
} distc_addprocs_opts;

/* Master only.  Starts opts->count workers and waits until all are connected
 * (or none: on failure every worker of this call is stopped).  Writes the new
 * ids to ids (room for opts->count) and returns how many were added. */
DISTC_API int distc_addprocs(const distc_addprocs_opts *opts, int *ids);
/* Master only.  Asks the workers to exit and waits for them (up to 5 s, then
 * kills them).  Their ids are never reused. */
DISTC_API int distc_rmprocs(const int *ids, int n);

/* ---- values ------------------------------------------------------------ */

typedef enum distc_type {
  DISTC_NIL,
  DISTC_BOOL,
  DISTC_INT,    /* int64_t */
  DISTC_DOUBLE,
  DISTC_STRING, /* UTF-8, NUL-terminated, length known */
  DISTC_BYTES,
  DISTC_ARRAY,  /* n-d numeric, column-major like Julia */
  DISTC_LIST
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

/* Loads a shared object on every process (master first, then workers), the
 * analog of `@everywhere using X`: its DISTC_FUNCTIONs become callable.
 * Every process's error is gathered into distc_errmsg(). */
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
/* Waits for all n futures (Julia's @sync); returns the first error. */
DISTC_API int distc_wait_all(distc_future *const *fs, size_t n);
DISTC_API bool distc_isready(distc_future *f);
/* The pid the call ran on. */
DISTC_API int distc_future_where(const distc_future *f);
DISTC_API void distc_future_free(distc_future *f); /* NULL is fine */

/* Runs fn(args) on every process (master included), waits for all, and
 * gathers every error into distc_errmsg(). */
DISTC_API int distc_everywhere(const char *fn, const distc_value *args);

#ifdef __cplusplus
}
#endif
#endif /* DISTC_H */

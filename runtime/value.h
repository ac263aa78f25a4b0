/* value.h — the layout of distc_value and the wire codec (internal). */
#ifndef DISTC_VALUE_H
#define DISTC_VALUE_H

#include <msgpack.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "distc.h"

/* ---- handles ----
 * Some values stand for something that must not be copied when sent: a
 * shared array's memory, a distributed array, a channel.  Their kind's ops
 * say how to send the handle (msgpack ext type 2: u8 kind | body) and how to
 * turn a received one back into a value on this process.  Kinds register
 * once (distc__handle_register) before any such value is decoded. */
enum {
  DISTC__HK_SHARED = 1,  /* shared array (shared.c) */
  DISTC__HK_DARRAY = 2,  /* distributed array (darray.c) */
  DISTC__HK_CHANNEL = 3, /* remote channel (channel.c) */
  DISTC__HK_MAX = 16     /* kinds are < this */
};

typedef struct distc__handle_ops {
  uint8_t kind;
  const char *name; /* for messages: "shared array" */
  /* Writes obj's wire body into buf when it fits in cap bytes; returns the
   * body's length either way (so a NULL buf asks for the size). */
  size_t (*encode)(const void *obj, unsigned char *buf, size_t cap);
  /* Makes the value a received body stands for on this process: *out gets
   * a new value; or a DISTC_E* code with distc_errmsg set (DISTC_EPROTO for
   * a malformed body).  p is borrowed for the call. */
  int (*decode)(const unsigned char *p, size_t n, distc_value **out);
  /* The value holding obj is being freed. */
  void (*release)(void *obj);
} distc__handle_ops;

/* Registers a kind (ops must live forever); DISTC_EINVAL when the kind is
 * out of range or taken by other ops. */
int distc__handle_register(const distc__handle_ops *ops);
const distc__handle_ops *distc__handle_lookup(unsigned kind);
/* A DISTC_HANDLE value holding obj (which it releases when freed).  NULL
 * and distc_errmsg set when out of memory (obj is then released). */
distc_value *distc__handle_value(const distc__handle_ops *ops, void *obj);
/* A DISTC_ARRAY value whose data lives in obj (a mapping): it is sent as
 * obj's handle, and ops->release(obj) runs when the value is freed (also
 * when this fails: obj is then released). */
distc_value *distc__array_backed(distc_dtype t, int ndim, const size_t *dims,
                                 void *data, const distc__handle_ops *ops,
                                 void *obj);
/* The obj of a handle or backed array of the given kind, or NULL. */
void *distc__handle_obj(const distc_value *v, unsigned kind);

struct distc_value {
  atomic_int refs;
  distc_type type;
  union {
    bool b;
    int64_t i;
    double d;
    struct {
      char *p; /* NUL-terminated for strings and bytes alike */
      size_t n;
    } s;
    struct {
      distc_value **items;
      size_t n, cap;
    } l;
    struct {
      distc_dtype dtype;
      int ndim;
      size_t dims[DISTC_MAXDIM];
      size_t len;   /* elements */
      void *data;   /* 64-byte aligned, owned; or in obj when ops is set */
      const distc__handle_ops *ops; /* NULL for an ordinary array */
      void *obj;
    } a;
    struct {
      const distc__handle_ops *ops;
      void *obj;
    } h;
  } u;
};

/* Arrays whose data is at least this large travel as raw segments after the
 * msgpack part of a frame instead of through the encoder. */
#define DISTC__SEGMENT_MIN 4096
/* Deepest list nesting the encoder and decoder accept.  msgpack-c's unpacker
 * stops at 32 nested containers in a whole message, and the protocol's own
 * framing nests values a few levels down, so this stays well under 32. */
#define DISTC__MAX_DEPTH 24

/* ---- encoder ----
 * A payload is laid out as
 *   u32 mp_len | u32 nsegs | u64 seglen[nsegs] | msgpack (mp_len bytes) |
 *   segment 0 | segment 1 | ...
 * (all integers little-endian).  Values are msgpack nil, bool, int, float64,
 * str, bin and array (for lists); n-d arrays are msgpack ext type 1:
 *   u8 dtype | u8 ndim | u8 inline | u8 0 | u64 dims[ndim] |
 *   inline ? raw data : u32 segment index
 * and handles (DISTC_HANDLE values, and arrays backed by a handle's memory)
 * are ext type 2: u8 kind | the kind's body.
 * The segments point into the values' own memory: the values must outlive
 * the send (the iovecs borrow them). */
typedef struct distc__enc {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  struct iovec *segs; /* borrowed array data */
  size_t nsegs, segcap;
  char *head;         /* u32 mp_len | u32 nsegs | u64 lens[], built by finish */
  size_t headlen;
  /* Same-host fast path: with lend set, arrays of DISTC__LEND_MIN bytes or
   * more are sent as their address (ext type 3) for the receiver to copy
   * with process_vm_readv; lent says one was.  The sender must keep them
   * unchanged until the receiver says it is done (a RELEASE frame). */
  bool lend, lent;
  /* Segment and lent bytes so far: with the msgpack part, they are held
   * under distc__max_frame() while encoding.  toobig: the size a write
   * would have made it, past the limit (0: none did). */
  size_t data_bytes;
  size_t toobig;
  /* Where a small frame is built without an allocation (most calls and
   * results): sb.data and head start here and move to the heap only when
   * they outgrow it.  The encoder must therefore not be copied. */
  char small_mp[192];
  char small_head[24];
} distc__enc;
#define DISTC__LEND_MIN ((size_t)1 << 20)

void distc__enc_init(distc__enc *e);
void distc__enc_destroy(distc__enc *e);
/* Packs v at the packer's current position (the protocol packs its own
 * fields around it through e->pk). */
int distc__enc_value(distc__enc *e, const distc_value *v);
/* Fills iov (room for max entries) with the whole payload; returns the entry
 * count, or DISTC_ENOMEM / DISTC_ETOOBIG (more than max entries needed).
 * *total receives the payload length.  The iovecs are valid until
 * distc__enc_destroy. */
int distc__enc_finish(distc__enc *e, struct iovec *iov, int max, size_t *total);

/* ---- decoder ----
 * Opens a payload (borrowed for the decoder's life), checking the layout.
 * Returns DISTC_EPROTO on anything malformed or truncated (DISTC_ENOMEM when
 * out of memory); a failed open leaves nothing to close. */
typedef struct distc__dec {
  const char *payload;
  size_t len;
  const char *mp;
  size_t mplen;
  uint32_t nsegs;
  const char **seg;   /* start of each segment */
  uint64_t *seglen;
  msgpack_unpacked up; /* the unpacked msgpack part */
  int lender;          /* pid whose lent arrays may be read, 0: none */
  size_t *copied;      /* if set, gets the bytes read out of the lender */
  size_t lent_bytes;   /* read so far: held under distc__max_frame() too */
} distc__dec;

int distc__dec_open(distc__dec *d, const char *payload, size_t len);
void distc__dec_close(distc__dec *d);
/* The root msgpack object of the payload (valid until dec_close). */
const msgpack_object *distc__dec_root(const distc__dec *d);
/* Converts one msgpack object of this payload into a new value (copies all
 * data out of the payload).  DISTC_EPROTO when malformed. */
int distc__dec_value(const distc__dec *d, const msgpack_object *o,
                     distc_value **out);

/* distc_array without the zero fill, for data about to be overwritten. */
distc_value *distc__array_uninit(distc_dtype t, int ndim, const size_t *dims);

/* Allocation of value memory goes through here so tests can inject failure. */
void *distc__alloc(size_t n);
void *distc__realloc(void *p, size_t n);
void *distc__aligned_alloc(size_t n);
void distc__free(void *p);
/* Tests only (not thread-safe): when set to N > 0, the Nth allocation from
 * now fails, once; it reads 0 afterwards.  Still > 0 after an operation means
 * that operation made fewer than N allocations. */
extern int distc__alloc_fail_after;

#endif

/* value.h — the layout of distc_value and the wire codec (internal). */
#ifndef DISTC_VALUE_H
#define DISTC_VALUE_H

#include <msgpack.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "distc.h"

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
      void *data;   /* 64-byte aligned, owned */
    } a;
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
 * The segments point into the values' own memory: the values must outlive
 * the send (the iovecs borrow them). */
typedef struct distc__enc {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  struct iovec *segs; /* borrowed array data */
  size_t nsegs, segcap;
  char *head;         /* u32 mp_len | u32 nsegs | u64 lens[], built by finish */
  size_t headlen;
} distc__enc;

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

/* codec.c — distc_value <-> wire payload, as laid out in value.h.
 *
 * The encoder packs values with msgpack-c and leaves large array data where
 * it is, as segments the caller sends with writev.  The decoder takes bytes
 * from the network, so it trusts nothing: every length is checked against
 * what is really there before anything is read or allocated, and anything
 * off is DISTC_EPROTO with a message saying what.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "common.h"
#include "trace.h"
#include "value.h"

/* msgpack ext types: an n-d array; a handle (value.h). */
#define EXT_ARRAY 1
#define EXT_HANDLE 2
#define EXT_LENT 3

/* msgpack_unpack_next keeps open containers on a fixed stack of
 * MSGPACK_EMBED_STACK_SIZE (32 in the library as built) and fails deeper
 * documents with MSGPACK_UNPACK_NOMEM_ERROR, indistinguishable from running
 * out of memory; mp_scan() rejects them first, with a clear message. */
#define MP_MAX_NEST 32

/* Values nest inside the protocol's own msgpack framing: leave it room, or a
 * value the encoder accepts could fail to decode. */
_Static_assert(DISTC__MAX_DEPTH + 8 <= MP_MAX_NEST,
               "DISTC__MAX_DEPTH leaves no room for the protocol's framing");

/* The wire format is little-endian whatever the host. */
static void put_le(unsigned char *p, uint64_t x, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(x >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t x = 0;
  for (int i = n - 1; i >= 0; i--)
    x = x << 8 | p[i];
  return x;
}

/* msgpack's own lengths are big-endian. */
static uint64_t get_be(const unsigned char *p, int n) {
  uint64_t x = 0;
  for (int i = 0; i < n; i++)
    x = x << 8 | p[i];
  return x;
}

/* The largest payload a peer may send or make us copy; here, beside the
 * encoder and decoder that enforce it, so both hold it before the work. */
size_t distc__max_frame(void) {
  static size_t limit;
  if (!limit) {
    const char *s = getenv("DISTC_MAX_FRAME");
    char *end;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    limit = (s && *end == '\0' && v >= 1024 && v <= UINT32_MAX)
                ? (size_t)v
                : (size_t)1 << 30;
  }
  return limit;
}

/* ---- handle kinds ------------------------------------------------------- */

/* Written by constructors before main, read afterwards: no lock needed. */
static const distc__handle_ops *handle_kinds[DISTC__HK_MAX];

int distc__handle_register(const distc__handle_ops *ops) {
  if (!ops || ops->kind == 0 || ops->kind >= DISTC__HK_MAX || !ops->encode ||
      !ops->decode || !ops->release)
    return distc__seterr(DISTC_EINVAL, "handle kind without its ops or out "
                         "of range");
  if (handle_kinds[ops->kind] && handle_kinds[ops->kind] != ops)
    return distc__seterr(DISTC_EINVAL, "handle kind %u is taken by %s",
                         ops->kind, handle_kinds[ops->kind]->name);
  handle_kinds[ops->kind] = ops;
  return 0;
}

const distc__handle_ops *distc__handle_lookup(unsigned kind) {
  return kind < DISTC__HK_MAX ? handle_kinds[kind] : NULL;
}

/* ---- encoder ------------------------------------------------------------- */

/* The packer writes through this instead of msgpack_sbuffer_write so its
 * allocations go through distc__realloc (and fail when a test says so).  The
 * buffer stays a valid msgpack_sbuffer. */
static int enc_write(void *data, const char *buf, size_t len) {
  distc__enc *e = data;
  msgpack_sbuffer *sb = &e->sb;
  /* Stop at the frame limit rather than after encoding the whole value. */
  if (len > distc__max_frame() - e->data_bytes - sb->size) {
    e->toobig = e->data_bytes + sb->size + len;
    return -1;
  }
  if (len > sb->alloc - sb->size) {
    if (len > SIZE_MAX / 2 - sb->size)
      return -1;
    size_t need = sb->size + len;
    size_t cap = sb->alloc > 256 ? sb->alloc : 256;
    while (cap < need)
      cap *= 2;
    char *p = sb->data == e->small_mp ? distc__alloc(cap)
                                      : distc__realloc(sb->data, cap);
    if (!p)
      return -1;
    if (sb->data == e->small_mp)
      memcpy(p, sb->data, sb->size);
    sb->data = p;
    sb->alloc = cap;
  }
  memcpy(sb->data + sb->size, buf, len);
  sb->size += len;
  return 0;
}

/* e must not move after this: the packer points at e->sb. */
void distc__enc_init(distc__enc *e) {
  /* Only the header fields: the inline buffers need no clearing. */
  memset(e, 0, offsetof(distc__enc, small_mp));
  msgpack_sbuffer_init(&e->sb);
  e->sb.data = e->small_mp;
  e->sb.alloc = sizeof e->small_mp;
  msgpack_packer_init(&e->pk, e, enc_write);
}

void distc__enc_destroy(distc__enc *e) {
  if (e->sb.data != e->small_mp)
    distc__free(e->sb.data);
  distc__free(e->segs);
  if (e->head != e->small_head)
    distc__free(e->head);
  memset(e, 0, offsetof(distc__enc, small_mp));
}

static int enc_toobig(size_t bytes) {
  return distc__seterr(DISTC_ETOOBIG,
                       "message of more than %zu bytes exceeds the frame "
                       "limit of %zu bytes (set DISTC_MAX_FRAME to raise it)",
                       bytes, distc__max_frame());
}

/* A packer write failed: the frame limit (enc_write says which) or memory. */
static int enc_nomem(const distc__enc *e) {
  if (e->toobig)
    return enc_toobig(e->toobig);
  return distc__seterr(DISTC_ENOMEM, "out of memory encoding a value");
}

/* Counts n bytes of data that travel beside the msgpack part (a segment, or
 * a lent array that the receiver copies): the limit holds for them too, and
 * is checked before anything is copied. */
static int enc_reserve(distc__enc *e, size_t n) {
  size_t max = distc__max_frame();
  if (e->sb.size > max || n > max - e->sb.size ||
      e->data_bytes > max - e->sb.size - n)
    return enc_toobig(e->sb.size + e->data_bytes + n);
  e->data_bytes += n;
  return 0;
}

static int enc_add_segment(distc__enc *e, void *p, size_t n) {
  if (e->nsegs == UINT32_MAX)
    return distc__seterr(DISTC_ETOOBIG, "more than 2^32 arrays in one message");
  if (e->nsegs == e->segcap) {
    size_t cap = e->segcap ? e->segcap * 2 : 8;
    struct iovec *segs = distc__realloc(e->segs, cap * sizeof *segs);
    if (!segs)
      return enc_nomem(e);
    e->segs = segs;
    e->segcap = cap;
  }
  e->segs[e->nsegs++] = (struct iovec){.iov_base = p, .iov_len = n};
  return 0;
}

/* ext 1: u8 dtype | u8 ndim | u8 inline | u8 0 | u64 dims[ndim] |
 *        inline ? data : u32 segment index */
/* ext 3: u8 dtype | u8 ndim | u16 0 | u32 0 | u64 dims[ndim] |
 *        u64 address | u64 bytes — an array the receiver copies out of the
 * sender's memory (same host; see distc__enc.lend). */
static int enc_lent(distc__enc *e, const distc_value *v, size_t bytes) {
  unsigned char hdr[8 + 8 * DISTC_MAXDIM + 16] = {0};
  int rc = enc_reserve(e, bytes);
  if (rc < 0)
    return rc;
  size_t n = 8;
  hdr[0] = (unsigned char)v->u.a.dtype;
  hdr[1] = (unsigned char)v->u.a.ndim;
  for (int k = 0; k < v->u.a.ndim; k++, n += 8)
    put_le(hdr + n, v->u.a.dims[k], 8);
  put_le(hdr + n, (uint64_t)(uintptr_t)v->u.a.data, 8);
  put_le(hdr + n + 8, bytes, 8);
  n += 16;
  if (msgpack_pack_ext(&e->pk, n, EXT_LENT) < 0 ||
      msgpack_pack_ext_body(&e->pk, hdr, n) < 0)
    return enc_nomem(e);
  e->lent = true;
  return 0;
}

static int enc_array(distc__enc *e, const distc_value *v) {
  size_t bytes = v->u.a.len * distc_dtype_size(v->u.a.dtype);
  if (e->lend && bytes >= DISTC__LEND_MIN)
    return enc_lent(e, v, bytes);
  bool inl = bytes < DISTC__SEGMENT_MIN;
  unsigned char hdr[4 + 8 * DISTC_MAXDIM + 4];
  size_t n = 4;
  hdr[0] = (unsigned char)v->u.a.dtype;
  hdr[1] = (unsigned char)v->u.a.ndim;
  hdr[2] = inl;
  hdr[3] = 0;
  for (int k = 0; k < v->u.a.ndim; k++, n += 8)
    put_le(hdr + n, v->u.a.dims[k], 8);
  if (!inl) {
    put_le(hdr + n, e->nsegs, 4);
    n += 4;
    int rc = enc_reserve(e, bytes);
    if (rc == 0)
      rc = enc_add_segment(e, v->u.a.data, bytes);
    if (rc < 0)
      return rc;
  }
  if (msgpack_pack_ext(&e->pk, n + (inl ? bytes : 0), EXT_ARRAY) < 0 ||
      msgpack_pack_ext_body(&e->pk, hdr, n) < 0 ||
      (inl && bytes && msgpack_pack_ext_body(&e->pk, v->u.a.data, bytes) < 0))
    return enc_nomem(e);
  return 0;
}

/* ext 2: u8 kind | body.  The body is small (ids and a layout). */
static int enc_handle(distc__enc *e, const distc__handle_ops *ops,
                      const void *obj) {
  size_t n = ops->encode(obj, NULL, 0);
  if (n > UINT32_MAX - 1)
    return distc__seterr(DISTC_ETOOBIG, "%s handle of %zu bytes", ops->name, n);
  unsigned char *body = distc__alloc(n + 1);
  if (!body)
    return enc_nomem(e);
  body[0] = ops->kind;
  ops->encode(obj, body + 1, n);
  int rc = msgpack_pack_ext(&e->pk, n + 1, EXT_HANDLE) < 0 ||
                   msgpack_pack_ext_body(&e->pk, body, n + 1) < 0
               ? enc_nomem(e)
               : 0;
  distc__free(body);
  return rc;
}

/* depth: lists enclosing v. */
static int enc_rec(distc__enc *e, const distc_value *v, int depth) {
  msgpack_packer *pk = &e->pk;
  int rc = 0;
  if (!v)
    return distc__seterr(DISTC_EINVAL, "cannot encode a NULL value");
  switch (v->type) {
  case DISTC_NIL:
    rc = msgpack_pack_nil(pk);
    break;
  case DISTC_BOOL:
    rc = v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    break;
  case DISTC_INT:
    rc = msgpack_pack_int64(pk, v->u.i);
    break;
  case DISTC_DOUBLE:
    rc = msgpack_pack_double(pk, v->u.d);
    break;
  case DISTC_STRING:
  case DISTC_BYTES:
    /* msgpack lengths are 32-bit; msgpack-c would silently truncate. */
    if (v->u.s.n > UINT32_MAX)
      return distc__seterr(DISTC_ETOOBIG, "string or bytes of %zu bytes "
                           "exceed the 4 GiB limit", v->u.s.n);
    if (v->type == DISTC_STRING)
      rc = msgpack_pack_str_with_body(pk, v->u.s.p, v->u.s.n);
    else
      rc = msgpack_pack_bin_with_body(pk, v->u.s.p, v->u.s.n);
    break;
  case DISTC_ARRAY:
    /* A shared array travels as its handle, never its data. */
    if (v->u.a.ops)
      return enc_handle(e, v->u.a.ops, v->u.a.obj);
    return enc_array(e, v);
  case DISTC_HANDLE:
    return enc_handle(e, v->u.h.ops, v->u.h.obj);
  case DISTC_LIST:
    if (depth >= DISTC__MAX_DEPTH)
      return distc__seterr(DISTC_EINVAL, "lists nested deeper than %d levels "
                           "cannot be sent (does a list contain itself?)",
                           DISTC__MAX_DEPTH);
    if (v->u.l.n > UINT32_MAX)
      return distc__seterr(DISTC_ETOOBIG, "list of %zu items exceeds 2^32",
                           v->u.l.n);
    if (msgpack_pack_array(pk, v->u.l.n) < 0)
      return enc_nomem(e);
    for (size_t i = 0; i < v->u.l.n; i++)
      if ((rc = enc_rec(e, v->u.l.items[i], depth + 1)) < 0)
        return rc;
    return 0;
  default:
    return distc__seterr(DISTC_EINVAL, "cannot encode a value of type %d",
                         (int)v->type);
  }
  return rc < 0 ? enc_nomem(e) : 0;
}

/* On failure the packer holds part of v: the encoder is fit only for
 * distc__enc_destroy. */
int distc__enc_value(distc__enc *e, const distc_value *v) {
  return enc_rec(e, v, 0);
}

int distc__enc_finish(distc__enc *e, struct iovec *iov, int max,
                      size_t *total) {
  if (max < 2 || e->nsegs > (size_t)max - 2)
    return distc__seterr(DISTC_ETOOBIG, "message needs %zu iovec entries, "
                         "%d allowed (too many large arrays)", e->nsegs + 2,
                         max);
  if (e->sb.size > UINT32_MAX)
    return distc__seterr(DISTC_ETOOBIG, "msgpack part of %zu bytes exceeds "
                         "the 4 GiB limit", e->sb.size);
  size_t headlen = 8 + 8 * e->nsegs;
  unsigned char *head;
  if (headlen <= sizeof e->small_head && (!e->head || e->head == e->small_head))
    head = (unsigned char *)e->small_head;
  else if (e->head == e->small_head)
    head = distc__alloc(headlen);
  else
    head = distc__realloc(e->head, headlen);
  if (!head)
    return enc_nomem(e);
  e->head = (char *)head;
  e->headlen = headlen;
  put_le(head, e->sb.size, 4);
  put_le(head + 4, e->nsegs, 4);
  iov[0] = (struct iovec){.iov_base = head, .iov_len = headlen};
  iov[1] = (struct iovec){.iov_base = e->sb.data, .iov_len = e->sb.size};
  size_t sum = headlen + e->sb.size;
  for (size_t i = 0; i < e->nsegs; i++) {
    put_le(head + 8 + 8 * i, e->segs[i].iov_len, 8);
    iov[2 + i] = e->segs[i];
    sum += e->segs[i].iov_len;
  }
  *total = sum;
  return (int)(2 + e->nsegs);
}

/* ---- decoder ------------------------------------------------------------- */

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return distc__seterr(DISTC_EPROTO, "malformed payload: %s", msg);
}

/* Walks the msgpack part once before msgpack-c sees it.  msgpack-c allocates
 * a container's items as soon as it reads the header, so a five-byte "array
 * of 2^32 items" would ask for 100 GB: the walk checks that the objects still
 * owed fit the bytes left (each takes one at least), that nothing is cut
 * short, that nesting stays within msgpack-c's stack, and that nothing
 * follows the root object. */
static int mp_scan(const unsigned char *p, size_t n) {
  enum { SCALAR, BLOB, ARRAY, MAP };
  size_t pos = 0;
  uint64_t owed = 1;          /* objects still to read, the root included */
  uint64_t left[MP_MAX_NEST]; /* items still to read in each open container */
  int top = 0;
  while (owed > 0) {
    while (top > 0 && left[top - 1] == 0)
      top--;
    if (pos == n)
      return bad("msgpack part cut short at byte %zu", pos);
    size_t at = pos;
    unsigned b = p[pos++];
    if (top > 0)
      left[top - 1]--;
    owed--;

    int kind = SCALAR;
    int lenw = 0;      /* width of a big-endian length or count that follows */
    uint64_t body = 0; /* bytes after the header (and length) */
    uint64_t count = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      /* fixints, nil, bools: the byte is the object */
    } else if (b <= 0x8f) {
      kind = MAP;
      count = b & 0x0f;
    } else if (b <= 0x9f) {
      kind = ARRAY;
      count = b & 0x0f;
    } else if (b <= 0xbf) {
      body = b & 0x1f; /* fixstr */
    } else if (b >= 0xc4 && b <= 0xc6) {
      kind = BLOB; /* bin 8/16/32 */
      lenw = 1 << (b - 0xc4);
    } else if (b >= 0xc7 && b <= 0xc9) {
      kind = BLOB; /* ext 8/16/32, then a type byte */
      lenw = 1 << (b - 0xc7);
      body = 1;
    } else if (b == 0xca || b == 0xcb) {
      body = b == 0xca ? 4 : 8; /* float32/64 */
    } else if (b >= 0xcc && b <= 0xcf) {
      body = 1u << (b - 0xcc); /* uint 8..64 */
    } else if (b >= 0xd0 && b <= 0xd3) {
      body = 1u << (b - 0xd0); /* int 8..64 */
    } else if (b >= 0xd4 && b <= 0xd8) {
      body = 1 + (1u << (b - 0xd4)); /* fixext: type byte + 1..16 */
    } else if (b >= 0xd9 && b <= 0xdb) {
      kind = BLOB; /* str 8/16/32 */
      lenw = 1 << (b - 0xd9);
    } else if (b == 0xdc || b == 0xdd) {
      kind = ARRAY;
      lenw = b == 0xdc ? 2 : 4;
    } else if (b == 0xde || b == 0xdf) {
      kind = MAP;
      lenw = b == 0xde ? 2 : 4;
    } else {
      return bad("byte 0x%02x at %zu is not msgpack", b, at);
    }

    if (lenw) {
      if (n - pos < (size_t)lenw)
        return bad("msgpack length at byte %zu cut short", at);
      uint64_t x = get_be(p + pos, lenw);
      pos += lenw;
      if (kind == BLOB)
        body += x;
      else
        count = x;
    }
    if (body > n - pos)
      return bad("msgpack object at byte %zu needs %llu bytes, %zu left", at,
                 (unsigned long long)body, n - pos);
    pos += body;
    if (kind == ARRAY || kind == MAP) {
      if (top == MP_MAX_NEST)
        return bad("msgpack nested deeper than %d levels", MP_MAX_NEST);
      if (kind == MAP)
        count *= 2;
      if (owed + count > n - pos)
        return bad("msgpack container at byte %zu claims %llu items, %zu "
                   "bytes left", at, (unsigned long long)count, n - pos);
      owed += count;
      if (count > 0)
        left[top++] = count;
    }
  }
  if (pos != n)
    return bad("%zu bytes after the msgpack value", n - pos);
  return 0;
}

/* A decoder's msgpack zone is kept for the thread's next one: making and
 * freeing a zone (an 8 KiB chunk) for every frame was a third of the
 * instructions of decoding a small call.  A nested decoder (a call made
 * while decoding another frame) makes its own. */
static pthread_key_t zone_key;
static pthread_once_t zone_once = PTHREAD_ONCE_INIT;

static void zone_free(void *z) { msgpack_zone_free(z); }
static void zone_key_make(void) {
  if (pthread_key_create(&zone_key, zone_free) != 0)
    zone_key = (pthread_key_t)-1;
}

static msgpack_zone *zone_take(void) {
  pthread_once(&zone_once, zone_key_make);
  msgpack_zone *z = NULL;
  if (zone_key != (pthread_key_t)-1 && (z = pthread_getspecific(zone_key)))
    pthread_setspecific(zone_key, NULL);
  return z ? z : msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
}

static void zone_give(msgpack_zone *z) {
  if (!z)
    return;
  if (zone_key == (pthread_key_t)-1 || pthread_getspecific(zone_key)) {
    msgpack_zone_free(z);
    return;
  }
  msgpack_zone_clear(z);
  if (pthread_setspecific(zone_key, z) != 0)
    msgpack_zone_free(z);
}

int distc__dec_open(distc__dec *d, const char *payload, size_t len) {
  const unsigned char *p = (const unsigned char *)payload;
  int rc;
  memset(d, 0, sizeof *d);
  msgpack_unpacked_init(&d->up);
  d->payload = payload;
  d->len = len;

  if (len < 8) {
    rc = bad("%zu bytes, shorter than the 8-byte header", len);
    goto fail;
  }
  uint32_t mplen = (uint32_t)get_le(p, 4);
  uint32_t nsegs = (uint32_t)get_le(p + 4, 4);
  if (nsegs > (len - 8) / 8) {
    rc = bad("header claims %u segments in %zu bytes", nsegs, len);
    goto fail;
  }
  size_t off = 8 + 8 * (size_t)nsegs;
  if (mplen > len - off) {
    rc = bad("msgpack part of %u bytes, only %zu follow the header", mplen,
             len - off);
    goto fail;
  }
  d->mp = payload + off;
  d->mplen = mplen;
  off += mplen;

  if (nsegs > 0) {
    d->seg = distc__alloc(nsegs * sizeof *d->seg);
    d->seglen = distc__alloc(nsegs * sizeof *d->seglen);
    if (!d->seg || !d->seglen) {
      rc = distc__seterr(DISTC_ENOMEM, "out of memory opening a payload");
      goto fail;
    }
  }
  d->nsegs = nsegs;
  for (uint32_t i = 0; i < nsegs; i++) {
    uint64_t n = get_le(p + 8 + 8 * (size_t)i, 8);
    if (n > len - off) {
      rc = bad("segment %u of %llu bytes runs past the end", i,
               (unsigned long long)n);
      goto fail;
    }
    d->seg[i] = payload + off;
    d->seglen[i] = n;
    off += n;
  }
  if (off != len) {
    rc = bad("%zu bytes after the last segment", len - off);
    goto fail;
  }

  if ((rc = mp_scan((const unsigned char *)d->mp, d->mplen)) < 0)
    goto fail;
  /* After the scan, only a real allocation failure should stop msgpack-c. */
  size_t used = 0;
  if (!(d->up.zone = zone_take())) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory unpacking msgpack");
    goto fail;
  }
  rc = msgpack_unpack(d->mp, d->mplen, &used, d->up.zone, &d->up.data);
  if (rc == MSGPACK_UNPACK_NOMEM_ERROR) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory unpacking msgpack");
    goto fail;
  }
  if (rc != MSGPACK_UNPACK_SUCCESS || used != d->mplen) {
    rc = bad("msgpack-c rejected the msgpack part (%d)", rc);
    goto fail;
  }
  return 0;

fail:
  distc__dec_close(d);
  return rc;
}

/* Harmless on a decoder whose open failed (open cleaned up already). */
void distc__dec_close(distc__dec *d) {
  distc__free(d->seg);
  distc__free(d->seglen);
  d->seg = NULL;
  d->seglen = NULL;
  d->nsegs = 0;
  zone_give(d->up.zone);
  d->up.zone = NULL;
}

const msgpack_object *distc__dec_root(const distc__dec *d) {
  return &d->up.data;
}

static int dec_array(const distc__dec *d, const msgpack_object_ext *x,
                     distc_value **out) {
  const unsigned char *p = (const unsigned char *)x->ptr;
  size_t n = x->size;
  if (n < 4)
    return bad("array header of %zu bytes", n);
  unsigned dtype = p[0], ndim = p[1], inl = p[2];
  size_t esize = distc_dtype_size((distc_dtype)dtype);
  if (esize == 0)
    return bad("unknown array dtype %u", dtype);
  if (ndim > DISTC_MAXDIM)
    return bad("array of %u dimensions, at most %d allowed", ndim,
               DISTC_MAXDIM);
  if (inl > 1 || p[3] != 0)
    return bad("array flags %u/%u invalid", inl, p[3]);
  size_t hdr = 4 + 8 * (size_t)ndim;
  if (n < hdr)
    return bad("array header cut short");

  size_t dims[DISTC_MAXDIM], count = 1, bytes;
  for (unsigned k = 0; k < ndim; k++) {
    uint64_t dk = get_le(p + 4 + 8 * k, 8);
    if (dk > SIZE_MAX || __builtin_mul_overflow(count, (size_t)dk, &count))
      return bad("array dims overflow");
    dims[k] = (size_t)dk;
  }
  if (__builtin_mul_overflow(count, esize, &bytes))
    return bad("array dims overflow");

  const void *src;
  if (inl) {
    if (n - hdr != bytes)
      return bad("array data is %zu bytes, its dims need %zu", n - hdr,
                 bytes);
    src = p + hdr;
  } else {
    if (n - hdr != 4)
      return bad("array segment reference of %zu bytes, not 4", n - hdr);
    uint32_t idx = (uint32_t)get_le(p + hdr, 4);
    if (idx >= d->nsegs)
      return bad("array refers to segment %u of %u", idx, d->nsegs);
    if (d->seglen[idx] != bytes)
      return bad("segment %u has %llu bytes, its array needs %zu", idx,
                 (unsigned long long)d->seglen[idx], bytes);
    src = d->seg[idx];
  }
  distc_value *v = distc__array_uninit((distc_dtype)dtype, (int)ndim, dims);
  if (!v)
    return distc__seterr(DISTC_ENOMEM, "out of memory decoding an array of "
                         "%zu bytes", bytes);
  if (bytes)
    memcpy(v->u.a.data, src, bytes);
  *out = v;
  return 0;
}

static int dec_handle(const msgpack_object_ext *x, distc_value **out) {
  const unsigned char *p = (const unsigned char *)x->ptr;
  if (x->size < 1)
    return bad("empty handle");
  const distc__handle_ops *ops = distc__handle_lookup(p[0]);
  if (!ops)
    return bad("handle of unknown kind %u", p[0]);
  distc_value *v = NULL;
  int rc = ops->decode(p + 1, x->size - 1, &v);
  if (rc < 0)
    return rc;
  *out = v;
  return 0;
}

/* One copy, straight from the lender's memory into the new array: the
 * same-host path that loopback TCP (two copies and the stack between) cannot
 * match for large results. */
static int dec_lent(const distc__dec *d, const msgpack_object_ext *x,
                    distc_value **out) {
  const unsigned char *p = (const unsigned char *)x->ptr;
  size_t n = x->size;
  if (n < 8)
    return bad("lent array header of %zu bytes", n);
  unsigned dtype = p[0], ndim = p[1];
  size_t esize = distc_dtype_size((distc_dtype)dtype);
  if (esize == 0 || ndim > DISTC_MAXDIM || n != 8 + 8 * (size_t)ndim + 16)
    return bad("lent array header invalid");
  size_t dims[DISTC_MAXDIM], count = 1, bytes;
  for (unsigned k = 0; k < ndim; k++) {
    uint64_t dk = get_le(p + 8 + 8 * k, 8);
    if (dk > SIZE_MAX || __builtin_mul_overflow(count, (size_t)dk, &count))
      return bad("array dims overflow");
    dims[k] = (size_t)dk;
  }
  if (__builtin_mul_overflow(count, esize, &bytes))
    return bad("array dims overflow");
  uint64_t addr = get_le(p + 8 + 8 * ndim, 8);
  if (get_le(p + 16 + 8 * ndim, 8) != bytes)
    return bad("lent array of %zu bytes claims another size", bytes);
  if (d->lender <= 0)
    return bad("a lent array from a process that may not lend");
  /* The frame limit holds for what the sender lends as for what it sends:
   * checked before anything is allocated or copied.  (d is const to the
   * decoding functions; its owner's object is not.) */
  size_t max = distc__max_frame();
  if (bytes > max || d->lent_bytes > max - bytes)
    return distc__seterr(DISTC_ETOOBIG,
                         "a result holding %zu bytes of arrays exceeds the "
                         "frame limit of %zu bytes (set DISTC_MAX_FRAME to "
                         "raise it)", d->lent_bytes + bytes, max);
  ((distc__dec *)d)->lent_bytes += bytes;
  distc_value *v = distc__array_uninit((distc_dtype)dtype, (int)ndim, dims);
  if (!v)
    return distc__seterr(DISTC_ENOMEM, "out of memory decoding an array of "
                         "%zu bytes", bytes);
  size_t done = 0;
  uint64_t t0 = distc__tracing() ? distc__trace_now() : 0;
  while (done < bytes) {
    struct iovec local = {(char *)v->u.a.data + done, bytes - done};
    struct iovec remote = {(void *)(uintptr_t)(addr + done), bytes - done};
    ssize_t r = process_vm_readv(d->lender, &local, 1, &remote, 1, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      int e = errno;
      distc_value_free(v);
      return distc__seterr(DISTC_EIO, "could not read a %zu-byte array from "
                           "process %d: %s", bytes, d->lender,
                           r < 0 ? strerror(e) : "nothing read");
    }
    done += (size_t)r;
  }
  if (d->copied)
    *d->copied += bytes;
  if (distc__tracing())
    distc__trace_span("transfer", "copy out of the worker", t0,
                      "\"bytes\":%zu,\"os_pid\":%d", bytes, d->lender);
  *out = v;
  return 0;
}

static int dec_rec(const distc__dec *d, const msgpack_object *o, int depth,
                   distc_value **out);

static int dec_list(const distc__dec *d, const msgpack_object_array *a,
                    int depth, distc_value **out) {
  if (depth >= DISTC__MAX_DEPTH)
    return bad("lists nested deeper than %d levels", DISTC__MAX_DEPTH);
  distc_value *l = distc_list(a->size);
  if (!l)
    return distc__seterr(DISTC_ENOMEM, "out of memory decoding a list");
  /* An item that fails stays nil, so freeing l frees exactly what exists. */
  for (uint32_t i = 0; i < a->size; i++) {
    int rc = dec_rec(d, &a->ptr[i], depth + 1, &l->u.l.items[i]);
    if (rc < 0) {
      distc_value_free(l);
      return rc;
    }
  }
  *out = l;
  return 0;
}

/* depth: lists enclosing o.  *out is written only on success. */
static int dec_rec(const distc__dec *d, const msgpack_object *o, int depth,
                   distc_value **out) {
  distc_value *v;
  switch (o->type) {
  case MSGPACK_OBJECT_NIL:
    v = distc_nil();
    break;
  case MSGPACK_OBJECT_BOOLEAN:
    v = distc_bool(o->via.boolean);
    break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    if (o->via.u64 > INT64_MAX)
      return bad("integer %llu does not fit int64",
                 (unsigned long long)o->via.u64);
    v = distc_int((int64_t)o->via.u64);
    break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER:
    v = distc_int(o->via.i64);
    break;
  case MSGPACK_OBJECT_FLOAT32: /* not ours, but harmless: msgpack-c widened */
  case MSGPACK_OBJECT_FLOAT64:
    v = distc_double(o->via.f64);
    break;
  case MSGPACK_OBJECT_STR:
    v = distc_stringn(o->via.str.ptr, o->via.str.size);
    break;
  case MSGPACK_OBJECT_BIN:
    v = distc_bytes(o->via.bin.ptr, o->via.bin.size);
    break;
  case MSGPACK_OBJECT_EXT:
    if (o->via.ext.type == EXT_HANDLE)
      return dec_handle(&o->via.ext, out);
    if (o->via.ext.type == EXT_LENT)
      return dec_lent(d, &o->via.ext, out);
    if (o->via.ext.type != EXT_ARRAY)
      return bad("msgpack ext type %d is not a distc value", o->via.ext.type);
    return dec_array(d, &o->via.ext, out);
  case MSGPACK_OBJECT_ARRAY:
    return dec_list(d, &o->via.array, depth, out);
  case MSGPACK_OBJECT_MAP:
    return bad("a msgpack map is not a distc value");
  default:
    return bad("msgpack object of type %d is not a distc value", o->type);
  }
  if (!v)
    return distc__seterr(DISTC_ENOMEM, "out of memory decoding a value");
  *out = v;
  return 0;
}

int distc__dec_value(const distc__dec *d, const msgpack_object *o,
                     distc_value **out) {
  *out = NULL;
  return dec_rec(d, o, 0, out);
}

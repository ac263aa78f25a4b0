/* test_codec.c — unit tests of distc values and the wire codec (value.h).
 *
 * A plain program: each group of checks prints one line, the last line is
 * "N passed, M failed", and the exit status is non-zero on any failure.
 * Every payload handed to the decoder sits in a heap block of exactly its
 * length, so ASan and valgrind catch a read past the end.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "value.h"

static int passed, failed;

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (cond) {                                                               \
      passed++;                                                               \
    } else {                                                                  \
      failed++;                                                               \
      fprintf(stderr, "%s:%d: CHECK(%s) failed (errmsg: %s)\n", __FILE__,     \
              __LINE__, #cond, distc_errmsg());                               \
    }                                                                         \
  } while (0)

/* ---- helpers ------------------------------------------------------------- */

/* Encodes v into one contiguous heap buffer (the iovecs concatenated).
 * Returns 0 or the encoder's error; *nsegs gets the segment count. */
static int encode(const distc_value *v, char **buf, size_t *len, int *nsegs) {
  distc__enc e;
  struct iovec iov[64];
  size_t total = 0;
  distc__enc_init(&e);
  int rc = distc__enc_value(&e, v);
  if (rc == 0)
    rc = distc__enc_finish(&e, iov, 64, &total);
  if (rc < 0) {
    distc__enc_destroy(&e);
    return rc;
  }
  char *p = malloc(total ? total : 1);
  size_t off = 0;
  for (int i = 0; i < rc; i++) {
    if (iov[i].iov_len)
      memcpy(p + off, iov[i].iov_base, iov[i].iov_len);
    off += iov[i].iov_len;
  }
  if (nsegs)
    *nsegs = rc - 2;
  distc__enc_destroy(&e);
  *buf = p;
  *len = total;
  return 0;
}

/* Decodes a private copy of exactly len bytes. */
static int decode(const void *buf, size_t len, distc_value **out) {
  char *copy = malloc(len ? len : 1);
  if (len)
    memcpy(copy, buf, len);
  distc__dec d;
  *out = NULL;
  int rc = distc__dec_open(&d, copy, len);
  if (rc == 0) {
    rc = distc__dec_value(&d, distc__dec_root(&d), out);
    distc__dec_close(&d);
  }
  free(copy);
  return rc;
}

/* Encodes and decodes v (taking over the reference); true when the result
 * equals v.  *nsegs (may be NULL) gets the segment count. */
static bool roundtrip(distc_value *v, int *nsegs) {
  char *buf = NULL;
  size_t len;
  distc_value *w = NULL;
  bool ok = v && encode(v, &buf, &len, nsegs) == 0 &&
            decode(buf, len, &w) == 0 && distc_value_equal(v, w);
  free(buf);
  distc_value_free(v);
  distc_value_free(w);
  return ok;
}

/* Builds a payload from its parts into out (room for cap bytes): header,
 * msgpack part, then the segments. */
typedef struct {
  const void *p;
  size_t n;
} part;

static size_t make_payload(char *out, size_t cap, const void *mp, size_t mplen,
                           const part *segs, uint32_t nsegs) {
  size_t off = 8 + 8 * (size_t)nsegs;
  unsigned char *h = (unsigned char *)out;
  for (int i = 0; i < 4; i++) {
    h[i] = (unsigned char)(mplen >> (8 * i));
    h[4 + i] = (unsigned char)(nsegs >> (8 * i));
  }
  for (uint32_t s = 0; s < nsegs; s++)
    for (int i = 0; i < 8; i++)
      h[8 + 8 * s + i] = (unsigned char)((uint64_t)segs[s].n >> (8 * i));
  if (off + mplen > cap)
    abort();
  if (mplen)
    memcpy(out + off, mp, mplen);
  off += mplen;
  for (uint32_t s = 0; s < nsegs; s++) {
    if (off + segs[s].n > cap)
      abort();
    memcpy(out + off, segs[s].p, segs[s].n);
    off += segs[s].n;
  }
  return off;
}

/* A msgpack scratch buffer for hand-built messages. */
static msgpack_sbuffer sb;
static msgpack_packer pk;

static void mp_reset(void) { msgpack_sbuffer_clear(&sb); }

/* Decodes sb's msgpack with the given segments; frees any result. */
static int decode_mp_segs(const part *segs, uint32_t nsegs) {
  static char buf[1 << 18];
  size_t len = make_payload(buf, sizeof buf, sb.data, sb.size, segs, nsegs);
  distc_value *v;
  int rc = decode(buf, len, &v);
  distc_value_free(v);
  return rc;
}

static int decode_mp(void) { return decode_mp_segs(NULL, 0); }

/* Packs an ext-1 array header with arbitrary fields, then body bytes. */
static void pack_ext_array(unsigned dtype, unsigned ndim, unsigned inl,
                           unsigned pad, const uint64_t *dims, unsigned ndims,
                           const void *body, size_t bodylen) {
  unsigned char h[4 + 8 * 16];
  h[0] = (unsigned char)dtype;
  h[1] = (unsigned char)ndim;
  h[2] = (unsigned char)inl;
  h[3] = (unsigned char)pad;
  for (unsigned k = 0; k < ndims; k++)
    for (int i = 0; i < 8; i++)
      h[4 + 8 * k + i] = (unsigned char)(dims[k] >> (8 * i));
  size_t hl = 4 + 8 * (size_t)ndims;
  msgpack_pack_ext(&pk, hl + bodylen, 1);
  msgpack_pack_ext_body(&pk, h, hl);
  if (bodylen)
    msgpack_pack_ext_body(&pk, body, bodylen);
}

static uint64_t get_le(const char *p, int n) {
  uint64_t x = 0;
  for (int i = n - 1; i >= 0; i--)
    x = x << 8 | (unsigned char)p[i];
  return x;
}

static distc_value *filled_array(distc_dtype t, int ndim, const size_t *dims) {
  distc_value *a = distc_array(t, ndim, dims);
  if (!a)
    return NULL;
  unsigned char *p = distc_array_data(a);
  size_t bytes = distc_array_len(a) * distc_dtype_size(t);
  for (size_t i = 0; i < bytes; i++)
    p[i] = (unsigned char)(i * 7 + 1);
  return a;
}

static distc_value *nested(int depth) {
  distc_value *v = distc_int(depth);
  for (int i = 0; i < depth; i++)
    v = distc_listv(1, v);
  return v;
}

/* xorshift64*: the same "random" flips on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* A value with one of everything (several segments, inline arrays, nesting);
 * NULL when any allocation failed. */
static distc_value *sample(void) {
  size_t small[2] = {3, 4}, big[2] = {64, 20}, empty[3] = {2, 0, 3};
  distc_value *l = distc_listv(
      9, distc_nil(), distc_bool(true), distc_int(-42), distc_double(2.5),
      distc_string("hello"), distc_bytes("a\0b", 3),
      filled_array(DISTC_F32, 2, small), filled_array(DISTC_F64, 2, big),
      distc_listv(3, distc_string(""), filled_array(DISTC_U8, 3, empty),
                  distc_listv(1, filled_array(DISTC_I64, 2, big))));
  for (int i = 0; l && i < 5; i++) /* grows the list past its capacity */
    if (distc_list_push(l, distc_int(i)) < 0) {
      distc_value_free(l);
      return NULL;
    }
  return l;
}

/* ---- groups -------------------------------------------------------------- */

static void test_scalars(void) {
  CHECK(roundtrip(distc_nil(), NULL));
  CHECK(roundtrip(distc_bool(true), NULL));
  CHECK(roundtrip(distc_bool(false), NULL));
  const int64_t ints[] = {0, 1, -1, 127, 128, 255, 256, -32, -33, -128, -129,
                          65535, 65536, INT32_MAX, (int64_t)INT32_MAX + 1,
                          INT32_MIN, (int64_t)INT32_MIN - 1, UINT32_MAX,
                          INT64_MAX, INT64_MIN, INT64_MIN + 1};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(ints); i++)
    CHECK(roundtrip(distc_int(ints[i]), NULL));
  const double dbls[] = {0.0, -0.0, 1.0, -1.5, 1e300, -1e-300, 5e-324,
                         INFINITY, -INFINITY, NAN, 0.1};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(dbls); i++)
    CHECK(roundtrip(distc_double(dbls[i]), NULL));

  /* Lengths at each msgpack str/bin size class. */
  const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
  char *s = malloc(70001);
  for (size_t i = 0; i < 70000; i++)
    s[i] = (char)('a' + i % 26);
  for (size_t i = 0; i < DISTC__ARRAY_LEN(lens); i++) {
    CHECK(roundtrip(distc_stringn(s, lens[i]), NULL));
    CHECK(roundtrip(distc_bytes(s, lens[i]), NULL));
  }
  free(s);
  CHECK(roundtrip(distc_string(""), NULL));
  CHECK(roundtrip(distc_stringn("a\0b\0", 4), NULL));
  CHECK(roundtrip(distc_bytes("\0\xff\0", 3), NULL));

  /* Not only equal: the exact bits and lengths survive. */
  char *buf;
  size_t len;
  distc_value *v = distc_stringn("x\0y", 3), *w = NULL;
  CHECK(encode(v, &buf, &len, NULL) == 0 && decode(buf, len, &w) == 0);
  size_t n = 0;
  const char *p = distc_value_str(w, &n);
  CHECK(distc_value_type(w) == DISTC_STRING && n == 3 && p &&
        memcmp(p, "x\0y", 4) == 0);
  distc_value_free(v);
  distc_value_free(w);
  free(buf);

  v = distc_double(-0.0);
  CHECK(encode(v, &buf, &len, NULL) == 0 && decode(buf, len, &w) == 0);
  CHECK(distc_value_type(w) == DISTC_DOUBLE && signbit(distc_value_double(w)));
  distc_value_free(v);
  distc_value_free(w);
  free(buf);
}

static void test_arrays(void) {
  static const size_t shapes[][4] = {
      /* ndim, dims... */
      {0},          {1, 0},       {1, 1},        {1, 5},       {1, 1000},
      {2, 3, 4},    {2, 0, 7},    {2, 7, 0},     {2, 64, 70},  {3, 2, 3, 4},
      {3, 2, 0, 3}, {3, 10, 10, 10}, {3, 30, 20, 10}};
  const distc_dtype dtypes[] = {DISTC_F64, DISTC_F32, DISTC_I64, DISTC_I32,
                                DISTC_U8};
  for (size_t t = 0; t < DISTC__ARRAY_LEN(dtypes); t++)
    for (size_t s = 0; s < DISTC__ARRAY_LEN(shapes); s++) {
      int ndim = (int)shapes[s][0];
      distc_value *a = filled_array(dtypes[t], ndim, shapes[s] + 1);
      size_t bytes = distc_array_len(a) * distc_dtype_size(dtypes[t]);
      int nsegs = -1;
      CHECK(roundtrip(a, &nsegs));
      CHECK(nsegs == (bytes >= DISTC__SEGMENT_MIN));
    }

  /* The inline/segment boundary. */
  int nsegs = -1;
  size_t d = DISTC__SEGMENT_MIN - 1;
  CHECK(roundtrip(filled_array(DISTC_U8, 1, &d), &nsegs) && nsegs == 0);
  d = DISTC__SEGMENT_MIN;
  CHECK(roundtrip(filled_array(DISTC_U8, 1, &d), &nsegs) && nsegs == 1);

  /* Segments borrow the array's memory; decoded data is aligned. */
  size_t dims[2] = {100, 100};
  distc_value *a = filled_array(DISTC_F64, 2, dims), *w = NULL;
  distc__enc e;
  struct iovec iov[4];
  size_t total;
  distc__enc_init(&e);
  CHECK(distc__enc_value(&e, a) == 0);
  CHECK(distc__enc_finish(&e, iov, 4, &total) == 3);
  CHECK(iov[2].iov_base == distc_array_data(a) && iov[2].iov_len == 80000);
  distc__enc_destroy(&e);
  char *buf;
  size_t len;
  CHECK(encode(a, &buf, &len, NULL) == 0 && decode(buf, len, &w) == 0);
  CHECK(w && ((uintptr_t)distc_array_data(w) & 63) == 0);
  CHECK(distc_array_ndim(w) == 2 && distc_array_dims(w)[0] == 100 &&
        distc_array_dims(w)[1] == 100 && distc_array_len(w) == 10000);
  CHECK(distc_array_dtype(w) == DISTC_F64);
  free(buf);
  distc_value_free(a);
  distc_value_free(w);
}

static void test_lists(void) {
  CHECK(roundtrip(distc_list(0), NULL));
  CHECK(roundtrip(distc_list(3), NULL));
  CHECK(roundtrip(distc_listv(2, distc_list(0), distc_listv(1, distc_nil())),
                  NULL));
  int nsegs = -1;
  CHECK(roundtrip(sample(), &nsegs) && nsegs == 2);

  /* Many segments, each found again by its index. */
  distc_value *l = distc_list(0);
  for (int i = 0; i < 20; i++) {
    size_t d = 600 + (size_t)i;
    distc_value *a = distc_array(DISTC_F64, 1, &d);
    ((double *)distc_array_data(a))[i] = i;
    distc_list_push(l, a);
    distc_list_push(l, distc_int(i));
  }
  CHECK(roundtrip(l, &nsegs) && nsegs == 20);

  /* Equality would mask a swap of equal-shaped segments; compare contents. */
  size_t d = 1000;
  distc_value *x = distc_array(DISTC_I64, 1, &d);
  distc_value *y = distc_array(DISTC_I64, 1, &d);
  ((int64_t *)distc_array_data(x))[0] = 1;
  ((int64_t *)distc_array_data(y))[0] = 2;
  l = distc_listv(2, x, y);
  char *buf;
  size_t len;
  distc_value *w = NULL;
  CHECK(encode(l, &buf, &len, NULL) == 0 && decode(buf, len, &w) == 0);
  CHECK(((int64_t *)distc_array_data(distc_list_at(w, 0)))[0] == 1);
  CHECK(((int64_t *)distc_array_data(distc_list_at(w, 1)))[0] == 2);
  free(buf);
  distc_value_free(l);
  distc_value_free(w);
}

/* Header layout and explicit little-endian integers. */
static void test_layout(void) {
  distc_value *v = distc_int(1);
  char *buf;
  size_t len;
  CHECK(encode(v, &buf, &len, NULL) == 0);
  CHECK(len == 9 && memcmp(buf, "\x01\0\0\0\0\0\0\0\x01", 9) == 0);
  distc_value_free(v);
  free(buf);

  size_t d = 0x1234;
  v = distc_array(DISTC_U8, 1, &d);
  CHECK(encode(v, &buf, &len, NULL) == 0);
  /* msgpack part: fixext16 (2) + 4 + 8 dims + 4 index = 18 bytes */
  CHECK(len == 16 + 18 + 0x1234);
  CHECK(memcmp(buf, "\x12\0\0\0\x01\0\0\0\x34\x12\0\0\0\0\0\0", 16) == 0);
  CHECK(memcmp(buf + 16, "\xd8\x01\x04\x01\x00\x00\x34\x12", 8) == 0);
  distc_value_free(v);
  free(buf);

  /* finish wants room for every entry. */
  distc__enc e;
  struct iovec iov[2];
  size_t total;
  v = distc_array(DISTC_U8, 1, &d);
  distc__enc_init(&e);
  CHECK(distc__enc_value(&e, v) == 0);
  CHECK(distc__enc_finish(&e, iov, 2, &total) == DISTC_ETOOBIG);
  CHECK(distc__enc_finish(&e, iov, 1, &total) == DISTC_ETOOBIG);
  distc__enc_destroy(&e);
  distc_value_free(v);

  /* The protocol packs its own fields around values through e.pk. */
  distc__enc_init(&e);
  msgpack_pack_array(&e.pk, 2);
  msgpack_pack_str_with_body(&e.pk, "call", 4);
  v = sample();
  CHECK(distc__enc_value(&e, v) == 0);
  struct iovec iov8[8];
  int n = distc__enc_finish(&e, iov8, 8, &total);
  CHECK(n == 4);
  char *p = malloc(total), *q = p;
  for (int i = 0; i < n; i++)
    q = (char *)memcpy(q, iov8[i].iov_base, iov8[i].iov_len) + iov8[i].iov_len;
  distc__dec dec;
  distc_value *w = NULL;
  CHECK(distc__dec_open(&dec, p, total) == 0);
  const msgpack_object *root = distc__dec_root(&dec);
  CHECK(root->type == MSGPACK_OBJECT_ARRAY && root->via.array.size == 2);
  if (root->type == MSGPACK_OBJECT_ARRAY && root->via.array.size == 2) {
    CHECK(distc__dec_value(&dec, &root->via.array.ptr[1], &w) == 0);
    CHECK(distc_value_equal(v, w));
  }
  distc__dec_close(&dec);
  distc__dec_close(&dec); /* harmless twice */
  distc__enc_destroy(&e);
  distc_value_free(v);
  distc_value_free(w);
  free(p);

  /* A failed conversion leaves *out NULL. */
  distc__enc_init(&e);
  msgpack_pack_map(&e.pk, 0);
  n = distc__enc_finish(&e, iov8, 8, &total);
  CHECK(n == 2 && total == 9);
  char two[9];
  memcpy(two, iov8[0].iov_base, 8);
  memcpy(two + 8, iov8[1].iov_base, 1);
  distc_value *stale = distc_int(0);
  w = stale;
  CHECK(distc__dec_open(&dec, two, 9) == 0);
  CHECK(distc__dec_value(&dec, distc__dec_root(&dec), &w) == DISTC_EPROTO);
  CHECK(w == NULL);
  distc__dec_close(&dec);
  distc__enc_destroy(&e);
  distc_value_free(stale);
}

/* Every prefix of a payload is malformed, and so is every prefix of its
 * msgpack part under an otherwise consistent header. */
static void test_truncation(void) {
  size_t big = 600;
  distc_value *vals[] = {
      distc_int(-5), distc_string("truncate me"),
      distc_listv(4, distc_double(1), distc_bytes("xy", 2),
                  filled_array(DISTC_I32, 1, (size_t[]){5}),
                  distc_listv(2, distc_nil(), distc_bool(false))),
      distc_listv(2, filled_array(DISTC_F64, 1, &big), distc_string("after")),
      sample()};
  for (size_t k = 0; k < DISTC__ARRAY_LEN(vals); k++) {
    char *buf;
    size_t len;
    int nsegs;
    CHECK(encode(vals[k], &buf, &len, &nsegs) == 0);
    int bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
      distc_value *w;
      int rc = decode(buf, cut, &w);
      bad += rc != DISTC_EPROTO || w != NULL || distc_errmsg()[0] == '\0';
      distc_value_free(w);
    }
    CHECK(bad == 0);

    /* Cut inside the msgpack part, header rewritten to match. */
    size_t mplen = (size_t)get_le(buf, 4);
    size_t headlen = 8 + 8 * (size_t)nsegs;
    part segs[4];
    size_t off = headlen + mplen;
    for (int s = 0; s < nsegs; s++) {
      segs[s].n = (size_t)get_le(buf + 8 + 8 * s, 8);
      segs[s].p = buf + off;
      off += segs[s].n;
    }
    CHECK(off == len);
    bad = 0;
    for (size_t cut = 0; cut < mplen; cut++) {
      mp_reset();
      if (cut) /* msgpack-c's write memcpy()s from NULL on an empty buffer */
        msgpack_sbuffer_write(&sb, buf + headlen, cut);
      bad += decode_mp_segs(segs, (uint32_t)nsegs) != DISTC_EPROTO;
    }
    CHECK(bad == 0);
    free(buf);
    distc_value_free(vals[k]);
  }
}

/* Flipped bytes never crash; what still decodes re-encodes to itself. */
static void test_flips(void) {
  static const uint64_t seg_dims[] = {4};
  static const double seg[4] = {1, 2, 3, 4};
  mp_reset();
  msgpack_pack_array(&pk, 3);
  pack_ext_array(DISTC_F64, 1, 0, 0, seg_dims, 1, "\0\0\0\0", 4);
  msgpack_pack_map(&pk, 0);
  msgpack_pack_int(&pk, 7);
  char handmade[256];
  size_t hlen = make_payload(handmade, sizeof handmade, sb.data, sb.size,
                             &(part){seg, sizeof seg}, 1);

  char *bases[3];
  size_t lens[3];
  distc_value *v = distc_listv(6, distc_int(300), distc_string("flip"),
                               distc_double(-2), distc_listv(1, distc_list(2)),
                               filled_array(DISTC_I32, 2, (size_t[]){2, 3}),
                               distc_bytes("\x01\x02", 2));
  CHECK(encode(v, &bases[0], &lens[0], NULL) == 0);
  distc_value_free(v);
  v = nested(DISTC__MAX_DEPTH);
  CHECK(encode(v, &bases[1], &lens[1], NULL) == 0);
  distc_value_free(v);
  bases[2] = handmade;
  lens[2] = hlen;

  int bad = 0, decoded = 0;
  char *copy = malloc(4096);
  for (int it = 0; it < 30000; it++) {
    int b = it % 3;
    size_t len = lens[b];
    memcpy(copy, bases[b], len);
    int nflips = 1 + (int)(rng() % 4);
    for (int f = 0; f < nflips; f++)
      copy[rng() % len] ^= (char)(1 + rng() % 255);
    if (it % 7 == 0)
      len = rng() % (len + 1);
    distc_value *w;
    int rc = decode(copy, len, &w);
    if (rc == 0) {
      decoded++;
      bad += !roundtrip(distc_value_ref(w), NULL);
    } else {
      bad += rc != DISTC_EPROTO;
    }
    distc_value_free(w);
  }
  CHECK(bad == 0);
  CHECK(decoded > 0); /* some flips only change data */
  free(copy);
  free(bases[0]);
  free(bases[1]);
}

static void test_malformed(void) {
  distc_value *w;
  /* Shorter than the header. */
  for (size_t n = 0; n < 8; n++)
    CHECK(decode("\0\0\0\0\0\0\0\0", n, &w) == DISTC_EPROTO);
  /* Header claims more than is there. */
  CHECK(decode("\0\0\0\0\xff\xff\xff\xff\xc0", 9, &w) == DISTC_EPROTO);
  CHECK(decode("\x02\0\0\0\0\0\0\0\xc0", 9, &w) == DISTC_EPROTO);
  CHECK(decode("\xff\xff\xff\xff\0\0\0\0\xc0", 9, &w) == DISTC_EPROTO);
  CHECK(decode("\x01\0\0\0\0\0\0\0\xc0\x00", 10, &w) == DISTC_EPROTO);
  CHECK(decode("\0\0\0\0\0\0\0\0", 8, &w) == DISTC_EPROTO); /* empty */
  CHECK(strstr(distc_errmsg(), "malformed payload") != NULL);

  /* Segment lengths against the rest of the payload. */
  mp_reset();
  msgpack_pack_nil(&pk);
  char raw[64] = {0};
  part one = {raw, 16};
  CHECK(decode_mp_segs(&one, 1) == 0); /* an unused segment is fine */
  static char buf[256];
  size_t len = make_payload(buf, sizeof buf, sb.data, sb.size, &one, 1);
  CHECK(decode(buf, len - 1, &w) == DISTC_EPROTO);
  buf[len] = 0;
  CHECK(decode(buf, len + 1, &w) == DISTC_EPROTO);
  buf[15] = (char)0x80; /* segment length 2^63 + 16 */
  CHECK(decode(buf, len, &w) == DISTC_EPROTO);

  /* Segment lengths that wrap around to the right total: 2^64 - 1 and 9
   * over 8 bytes, the first claimed by an array of 2^64 - 1 bytes. */
  mp_reset();
  pack_ext_array(DISTC_U8, 1, 0, 0, (const uint64_t[]){UINT64_MAX}, 1,
                 "\0\0\0\0", 4);
  part wrap[2] = {{raw, 0}, {raw, 8}};
  len = make_payload(buf, sizeof buf, sb.data, sb.size, wrap, 2);
  memset(buf + 8, 0xff, 8);
  buf[16] = 9;
  CHECK(decode(buf, len, &w) == DISTC_EPROTO);

  /* Not msgpack, or msgpack that is not a value. */
  const char *const junk[] = {
      "\xc1",                      /* never used */
      "\xc0\xc0",                  /* trailing object */
      "\x81\x01\x02",              /* map */
      "\xd4\x02\x00",              /* ext type 2 */
      "\xd6\xff\0\0\0\0",          /* timestamp ext -1 */
      "\xcf\x80\0\0\0\0\0\0\0",    /* uint64 beyond int64 */
      "\xdd\xff\xff\xff\xff",      /* array of 2^32-1 in 5 bytes */
      "\xdf\xff\xff\xff\xff",      /* map of 2^32-1 */
      "\xdb\xff\xff\xff\xff",      /* str of 4 GiB */
      "\xc6\xff\xff\xff\xff",      /* bin of 4 GiB */
      "\xc9\xff\xff\xff\xff\x01",  /* ext of 4 GiB */
      "\x92\xc0",                  /* array missing an item */
      "\x91\x81\xc0\xc0",          /* map inside a list */
  };
  const size_t junklen[] = {1, 2, 3, 3, 6, 9, 5, 5, 5, 5, 6, 2, 4};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(junk); i++) {
    mp_reset();
    msgpack_sbuffer_write(&sb, junk[i], junklen[i]);
    int rc = decode_mp();
    CHECK(rc == DISTC_EPROTO);
    if (rc != DISTC_EPROTO)
      fprintf(stderr, "  junk %zu\n", i);
  }

  /* float32 is not ours but reads as a double. */
  mp_reset();
  msgpack_sbuffer_write(&sb, "\xca\x3f\xc0\x00\x00", 5);
  len = make_payload(buf, sizeof buf, sb.data, sb.size, NULL, 0);
  CHECK(decode(buf, len, &w) == 0 && distc_value_type(w) == DISTC_DOUBLE &&
        distc_value_double(w) == 1.5);
  distc_value_free(w);

  /* Arrays: each header field out of range. */
  const uint64_t d2[2] = {2, 3}, huge[2] = {1ull << 40, 1ull << 40};
  const uint64_t big1[1] = {1ull << 62}, over[1] = {UINT64_MAX};
  char data[48] = {0};
  struct {
    unsigned dtype, ndim, inl, pad;
    const uint64_t *dims;
    unsigned ndims;
    size_t bodylen;
  } arr[] = {
      {5, 2, 1, 0, d2, 2, 6},      /* unknown dtype */
      {255, 2, 1, 0, d2, 2, 6},    /* unknown dtype */
      {4, 9, 1, 0, d2, 2, 6},      /* ndim > DISTC_MAXDIM */
      {4, 2, 2, 0, d2, 2, 6},      /* inline flag 2 */
      {4, 2, 1, 7, d2, 2, 6},      /* reserved byte set */
      {4, 3, 1, 0, d2, 2, 0},      /* dims cut short */
      {4, 2, 1, 0, d2, 2, 5},      /* data too short */
      {4, 2, 1, 0, d2, 2, 7},      /* data too long */
      {0, 2, 1, 0, d2, 2, 47},     /* f64 data wrong size */
      {4, 2, 1, 0, huge, 2, 0},    /* dims product overflows */
      {0, 1, 1, 0, big1, 1, 0},    /* bytes overflow */
      {4, 1, 1, 0, over, 1, 0},    /* huge dim */
      {4, 2, 0, 0, d2, 2, 3},      /* segment reference of 3 bytes */
      {4, 2, 0, 0, d2, 2, 4},      /* segment 0 of none */
  };
  for (size_t i = 0; i < DISTC__ARRAY_LEN(arr); i++) {
    mp_reset();
    pack_ext_array(arr[i].dtype, arr[i].ndim, arr[i].inl, arr[i].pad,
                   arr[i].dims, arr[i].ndims, data, arr[i].bodylen);
    int rc = decode_mp();
    CHECK(rc == DISTC_EPROTO);
    if (rc != DISTC_EPROTO)
      fprintf(stderr, "  array case %zu\n", i);
  }
  mp_reset();
  pack_ext_array(4, 1, 1, 0, NULL, 0, NULL, 0); /* header only, ndim 1 */
  CHECK(decode_mp() == DISTC_EPROTO);
  mp_reset();
  msgpack_pack_ext_with_body(&pk, "\x04\x00", 2, 1); /* header < 4 bytes */
  CHECK(decode_mp() == DISTC_EPROTO);

  /* Segment references: index out of range, length mismatch, and good. */
  unsigned char idx[4] = {1, 0, 0, 0};
  mp_reset();
  pack_ext_array(4, 2, 0, 0, d2, 2, idx, 4);
  part seg6 = {data, 6};
  CHECK(decode_mp_segs(&seg6, 1) == DISTC_EPROTO);
  idx[0] = 0;
  mp_reset();
  pack_ext_array(4, 2, 0, 0, d2, 2, idx, 4);
  part seg5 = {data, 5};
  CHECK(decode_mp_segs(&seg5, 1) == DISTC_EPROTO);
  CHECK(decode_mp_segs(&seg6, 1) == 0); /* small segments are accepted */
  mp_reset();
  pack_ext_array(4, 1, 1, 0, (uint64_t[]){4096}, 1, NULL, 0);
  CHECK(decode_mp() == DISTC_EPROTO);
}

static void test_depth(void) {
  CHECK(roundtrip(nested(DISTC__MAX_DEPTH), NULL));

  distc__enc e;
  distc_value *v = nested(DISTC__MAX_DEPTH + 1);
  distc__enc_init(&e);
  CHECK(distc__enc_value(&e, v) == DISTC_EINVAL);
  distc__enc_destroy(&e);
  distc_value_free(v);

  /* n nested msgpack arrays around a nil. */
  static char bomb[100001];
  memset(bomb, 0x91, sizeof bomb);
  int lens[] = {DISTC__MAX_DEPTH + 1, 32, 33, 100000};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(lens); i++) {
    mp_reset();
    bomb[lens[i]] = (char)0xc0;
    msgpack_sbuffer_write(&sb, bomb, (size_t)lens[i] + 1);
    bomb[lens[i]] = (char)0x91;
    CHECK(decode_mp() == DISTC_EPROTO);
    CHECK(strstr(distc_errmsg(), "deeper") != NULL);
  }
  mp_reset();
  bomb[DISTC__MAX_DEPTH] = (char)0xc0;
  msgpack_sbuffer_write(&sb, bomb, DISTC__MAX_DEPTH + 1);
  bomb[DISTC__MAX_DEPTH] = (char)0x91;
  CHECK(decode_mp() == 0);

  /* The scan's nesting limit is msgpack-c's, as built. */
  for (int n = 32; n <= 33; n++) {
    msgpack_unpacked up;
    size_t off = 0;
    msgpack_unpacked_init(&up);
    bomb[n] = (char)0xc0;
    int rc = msgpack_unpack_next(&up, bomb, (size_t)n + 1, &off);
    bomb[n] = (char)0x91;
    CHECK(n == 32 ? rc == MSGPACK_UNPACK_SUCCESS
                  : rc == MSGPACK_UNPACK_NOMEM_ERROR);
    msgpack_unpacked_destroy(&up);
  }

  /* A list cannot hold itself. */
  distc_value *l = distc_list(1);
  CHECK(distc_list_push(l, distc_value_ref(l)) == DISTC_EINVAL);
  CHECK(distc_list_set(l, 0, distc_value_ref(l)) == DISTC_EINVAL);
  CHECK(atomic_load(&l->refs) == 1);
  distc_value_free(l);
}

static void test_alloc_fail(void) {
  int rounds = 0, bad = 0;
  /* Construction: every failure surfaces as NULL. */
  for (int n = 1;; n++) {
    distc__alloc_fail_after = n;
    distc_value *v = sample();
    bool fired = distc__alloc_fail_after == 0;
    distc__alloc_fail_after = 0;
    bad += fired ? v != NULL : v == NULL;
    distc_value_free(v);
    if (!fired)
      break;
    rounds++;
  }
  CHECK(bad == 0 && rounds > 10);

  /* Encoding. */
  distc_value *v = distc_list(0);
  for (int i = 0; i < 40; i++) /* segments array grows */
    distc_list_push(v, sample());
  rounds = bad = 0;
  for (int n = 1;; n++) {
    distc__enc e;
    struct iovec iov[128];
    size_t total;
    distc__enc_init(&e);
    distc__alloc_fail_after = n;
    int rc = distc__enc_value(&e, v);
    if (rc == 0)
      rc = distc__enc_finish(&e, iov, 128, &total);
    bool fired = distc__alloc_fail_after == 0;
    distc__alloc_fail_after = 0;
    distc__enc_destroy(&e);
    bad += fired ? rc != DISTC_ENOMEM : rc != 82;
    if (!fired)
      break;
    rounds++;
  }
  CHECK(bad == 0 && rounds > 3);

  distc_value_free(v);

  /* Decoding. */
  char *buf;
  size_t len;
  v = sample();
  CHECK(encode(v, &buf, &len, NULL) == 0);
  rounds = bad = 0;
  for (int n = 1;; n++) {
    distc_value *w;
    distc__alloc_fail_after = n;
    int rc = decode(buf, len, &w);
    bool fired = distc__alloc_fail_after == 0;
    distc__alloc_fail_after = 0;
    bad += fired ? rc != DISTC_ENOMEM || w != NULL
                 : rc != 0 || !distc_value_equal(v, w);
    distc_value_free(w);
    if (!fired)
      break;
    rounds++;
  }
  CHECK(bad == 0 && rounds > 10);
  free(buf);
  distc_value_free(v);

  /* A push that cannot grow the list still takes over the value. */
  distc_value *l = distc_list(0), *x = distc_int(1);
  distc_value_ref(x);
  distc__alloc_fail_after = 1;
  CHECK(distc_list_push(l, x) == DISTC_ENOMEM);
  distc__alloc_fail_after = 0;
  CHECK(atomic_load(&x->refs) == 1 && distc_list_len(l) == 0);
  distc_value_free(x);
  distc_value_free(l);

  /* listv releases what it was given when the list itself fails. */
  x = distc_int(2);
  distc_value_ref(x);
  distc__alloc_fail_after = 2; /* 1: the list value, 2: its items */
  CHECK(distc_listv(2, x, distc_nil()) == NULL);
  distc__alloc_fail_after = 0;
  CHECK(atomic_load(&x->refs) == 1);
  distc_value_free(x);
}

static void test_equal(void) {
  distc_value *a, *b;
#define PAIR(x, y, eq)                                                        \
  do {                                                                        \
    a = (x);                                                                  \
    b = (y);                                                                  \
    CHECK(distc_value_equal(a, b) == (eq));                                   \
    CHECK(distc_value_equal(b, a) == (eq));                                   \
    distc_value_free(a);                                                      \
    distc_value_free(b);                                                      \
  } while (0)
  PAIR(distc_int(1), distc_double(1.0), false);
  PAIR(distc_int(1), distc_int(1), true);
  PAIR(distc_int(1), distc_int(2), false);
  PAIR(distc_bool(true), distc_int(1), false);
  PAIR(distc_bool(true), distc_bool(true), true);
  PAIR(distc_nil(), distc_bool(false), false);
  PAIR(distc_double(NAN), distc_double(NAN), true);
  PAIR(distc_double(0.0), distc_double(-0.0), false);
  PAIR(distc_double(1.5), distc_double(1.5), true);
  PAIR(distc_string("ab"), distc_bytes("ab", 2), false);
  PAIR(distc_string("ab"), distc_stringn("ab\0", 3), false);
  PAIR(distc_string("ab"), distc_string("ab"), true);
  PAIR(distc_string("ab"), distc_string("ac"), false);
  size_t d6[2] = {2, 3}, d6t[2] = {3, 2}, d6f[1] = {6};
  PAIR(distc_array(DISTC_I32, 2, d6), distc_array(DISTC_I32, 2, d6), true);
  PAIR(distc_array(DISTC_I32, 2, d6), distc_array(DISTC_F32, 2, d6), false);
  PAIR(distc_array(DISTC_I32, 2, d6), distc_array(DISTC_I32, 2, d6t), false);
  PAIR(distc_array(DISTC_I32, 2, d6), distc_array(DISTC_I32, 1, d6f), false);
  PAIR(filled_array(DISTC_U8, 2, d6), distc_array(DISTC_U8, 2, d6), false);
  PAIR(distc_listv(2, distc_int(1), distc_list(0)),
       distc_listv(2, distc_int(1), distc_list(0)), true);
  PAIR(distc_listv(2, distc_int(1), distc_list(0)),
       distc_listv(2, distc_int(1), distc_list(1)), false);
  PAIR(distc_listv(1, distc_int(1)), distc_listv(2, distc_int(1), distc_nil()),
       false);
  PAIR(sample(), sample(), true);
#undef PAIR
  a = distc_int(0);
  CHECK(distc_value_equal(NULL, NULL) && !distc_value_equal(a, NULL) &&
        !distc_value_equal(NULL, a) && distc_value_equal(a, a));
  distc_value_free(a);
}

static void test_refcount(void) {
  distc_value *v = distc_string("shared");
  CHECK(atomic_load(&v->refs) == 1);
  CHECK(distc_value_ref(v) == v && atomic_load(&v->refs) == 2);
  distc_value_free(v);
  CHECK(atomic_load(&v->refs) == 1);

  /* A list holds its own reference. */
  distc_value *l = distc_listv(1, distc_value_ref(v));
  CHECK(atomic_load(&v->refs) == 2);
  distc_value_free(l);
  CHECK(atomic_load(&v->refs) == 1 && strcmp(distc_value_str(v, NULL),
                                             "shared") == 0);

  /* set releases the item it replaces, and v on failure. */
  l = distc_list(2);
  CHECK(distc_list_set(l, 1, distc_value_ref(v)) == 0);
  CHECK(atomic_load(&v->refs) == 2);
  CHECK(distc_list_set(l, 1, distc_int(3)) == 0);
  CHECK(atomic_load(&v->refs) == 1);
  CHECK(distc_value_int(distc_list_at(l, 1)) == 3);
  CHECK(distc_list_set(l, 2, distc_value_ref(v)) == DISTC_EINVAL);
  CHECK(atomic_load(&v->refs) == 1);
  CHECK(distc_list_set(l, 0, NULL) == DISTC_EINVAL);
  CHECK(distc_list_push(v, distc_value_ref(v)) == DISTC_EINVAL); /* not list */
  CHECK(atomic_load(&v->refs) == 1);
  CHECK(distc_list_push(l, distc_value_ref(v)) == 0 && distc_list_len(l) == 3);
  distc_value_free(l);

  /* listv with a failed constructor fails and releases the rest. */
  CHECK(distc_listv(3, distc_value_ref(v), NULL, distc_value_ref(v)) == NULL);
  CHECK(atomic_load(&v->refs) == 1);
  distc_value_free(v);

  /* nil is shared and immortal. */
  for (int i = 0; i < 3; i++)
    distc_value_free(distc_nil());
  CHECK(distc_value_type(distc_value_ref(distc_nil())) == DISTC_NIL);
  distc_value_free(NULL);
  CHECK(distc_value_ref(NULL) == NULL);
}

static void test_accessors(void) {
  distc_value *i = distc_int(-7), *d = distc_double(-2.75);
  distc_value *s = distc_string("s");
  CHECK(distc_value_int(i) == -7 && distc_value_double(i) == -7.0);
  CHECK(distc_value_double(d) == -2.75 && distc_value_int(d) == -2);
  CHECK(!distc_value_bool(i) && distc_value_int(s) == 0);
  CHECK(distc_value_double(s) == 0.0 && distc_value_str(i, NULL) == NULL);
  size_t n = 99;
  CHECK(distc_value_str(d, &n) == NULL && n == 0);
  CHECK(distc_list_len(s) == 0 && distc_list_at(s, 0) == NULL);
  CHECK(distc_array_ndim(s) == 0 && distc_array_dims(s) == NULL &&
        distc_array_len(s) == 0 && distc_array_data(s) == NULL);
  CHECK(distc_value_type(NULL) == DISTC_NIL && distc_value_int(NULL) == 0);
  distc_value_free(i);
  distc_value_free(d);
  distc_value_free(s);

  const double conv[] = {NAN, 1e300, -1e300, 9.3e18, -9.3e18};
  const int64_t want[] = {0, INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN};
  for (size_t k = 0; k < DISTC__ARRAY_LEN(conv); k++) {
    d = distc_double(conv[k]);
    CHECK(distc_value_int(d) == want[k]);
    distc_value_free(d);
  }

  size_t dims[3] = {3, 5, 7};
  distc_value *a = distc_array(DISTC_I32, 3, dims);
  CHECK(a && distc_array_len(a) == 105 && distc_array_ndim(a) == 3);
  CHECK(((uintptr_t)distc_array_data(a) & 63) == 0);
  int zeros = 1;
  for (size_t k = 0; k < 105; k++)
    zeros &= ((int32_t *)distc_array_data(a))[k] == 0;
  CHECK(zeros);
  distc_value_free(a);
  a = distc_array(DISTC_U8, 0, NULL);
  CHECK(a && distc_array_len(a) == 1 && distc_array_data(a) != NULL);
  distc_value_free(a);

  size_t over[2] = {SIZE_MAX / 2, 3}, over8[1] = {SIZE_MAX / 4};
  CHECK(distc_array(DISTC_U8, 2, over) == NULL);
  CHECK(distc_array(DISTC_F64, 1, over8) == NULL);
  CHECK(distc_array(DISTC_U8, -1, dims) == NULL);
  CHECK(distc_array(DISTC_U8, DISTC_MAXDIM + 1, dims) == NULL);
  CHECK(distc_array((distc_dtype)9, 1, dims) == NULL);
  CHECK(distc_dtype_size(DISTC_F64) == 8 && distc_dtype_size(DISTC_F32) == 4);
  CHECK(distc_dtype_size(DISTC_I64) == 8 && distc_dtype_size(DISTC_I32) == 4);
  CHECK(distc_dtype_size(DISTC_U8) == 1);
  CHECK(distc_dtype_size((distc_dtype)9) == 0);
  CHECK(distc_string(NULL) == NULL && distc_bytes(NULL, 1) == NULL);

  distc_value *l = distc_list(2);
  CHECK(distc_list_len(l) == 2 && distc_value_type(distc_list_at(l, 1)) ==
                                      DISTC_NIL && distc_list_at(l, 2) == NULL);
  distc_value_free(l);
}

/* ---- handles ------------------------------------------------------------- */

/* A stand-in for a shared mapping: memory that several values point at,
 * named on the wire by an 8-byte id.  Kind 14 decodes to an array backed by
 * it (as a shared array does), kind 15 to a DISTC_HANDLE value. */
typedef struct test_obj {
  int refs;
  uint64_t id;
  double data[1024]; /* 8 KiB: large enough to travel as a segment */
} test_obj;

static test_obj the_obj = {.id = 0x1122334455667788ull};
static int releases;

static size_t tobj_encode(const void *obj, unsigned char *buf, size_t cap) {
  const test_obj *o = obj;
  if (buf && cap >= 8)
    for (int i = 0; i < 8; i++)
      buf[i] = (unsigned char)(o->id >> (8 * i));
  return 8;
}

static void tobj_release(void *obj) {
  test_obj *o = obj;
  o->refs--;
  releases++;
}

static int tobj_find(const unsigned char *p, size_t n) {
  if (n != 8)
    return distc__seterr(DISTC_EPROTO, "test handle of %zu bytes", n);
  if ((uint64_t)get_le((const char *)p, 8) != the_obj.id)
    return distc__seterr(DISTC_ENOENT, "no such test object");
  return 0;
}

static const distc__handle_ops backed_ops, handle_ops;

static int backed_decode(const unsigned char *p, size_t n, distc_value **out) {
  int rc = tobj_find(p, n);
  if (rc < 0)
    return rc;
  the_obj.refs++;
  *out = distc__array_backed(DISTC_F64, 2, (size_t[]){32, 32}, the_obj.data,
                             &backed_ops, &the_obj);
  return *out ? 0 : DISTC_ENOMEM;
}

static int handle_decode(const unsigned char *p, size_t n, distc_value **out) {
  int rc = tobj_find(p, n);
  if (rc < 0)
    return rc;
  the_obj.refs++;
  *out = distc__handle_value(&handle_ops, &the_obj);
  return *out ? 0 : DISTC_ENOMEM;
}

static const distc__handle_ops backed_ops = {
    .kind = 14, .name = "test array", .encode = tobj_encode,
    .decode = backed_decode, .release = tobj_release};
static const distc__handle_ops handle_ops = {
    .kind = 15, .name = "test handle", .encode = tobj_encode,
    .decode = handle_decode, .release = tobj_release};

static distc_value *new_backed(void) {
  the_obj.refs++;
  return distc__array_backed(DISTC_F64, 2, (size_t[]){32, 32}, the_obj.data,
                             &backed_ops, &the_obj);
}

static distc_value *new_handle(void) {
  the_obj.refs++;
  return distc__handle_value(&handle_ops, &the_obj);
}

static void test_handles(void) {
  /* Registration checks its ops; re-registering the same ops is fine. */
  CHECK(distc__handle_register(&backed_ops) == 0);
  CHECK(distc__handle_register(&handle_ops) == 0);
  CHECK(distc__handle_register(&handle_ops) == 0);
  distc__handle_ops other = handle_ops, zero = handle_ops, big = handle_ops,
                    partial = handle_ops;
  zero.kind = 0;
  big.kind = DISTC__HK_MAX;
  partial.kind = 13;
  partial.decode = NULL;
  CHECK(distc__handle_register(&other) == DISTC_EINVAL);
  CHECK(distc__handle_register(&zero) == DISTC_EINVAL);
  CHECK(distc__handle_register(&big) == DISTC_EINVAL);
  CHECK(distc__handle_register(&partial) == DISTC_EINVAL);
  CHECK(distc__handle_lookup(13) == NULL && distc__handle_lookup(14) ==
        &backed_ops && distc__handle_lookup(1000) == NULL);

  /* A backed array sends its handle, not its 8 KiB: no segment, a payload
   * of a few bytes, and the decoded array is the same memory. */
  for (int i = 0; i < 1024; i++)
    the_obj.data[i] = i;
  distc_value *a = new_backed();
  CHECK(distc_value_type(a) == DISTC_ARRAY && distc_array_len(a) == 1024 &&
        distc_array_data(a) == the_obj.data);
  CHECK(distc__handle_obj(a, 14) == &the_obj && !distc__handle_obj(a, 15));
  char *buf = NULL;
  size_t len = 0;
  int nsegs = -1;
  CHECK(encode(a, &buf, &len, &nsegs) == 0);
  CHECK(nsegs == 0 && len < 64);
  /* ext 2 (fixext 8 would need 9 bytes: ext8 of 9) | kind 14 | id */
  CHECK(len > 9 && (unsigned char)buf[len - 9] == 14 &&
        (uint64_t)get_le(buf + len - 8, 8) == the_obj.id);
  distc_value *w = NULL;
  CHECK(decode(buf, len, &w) == 0);
  CHECK(w && distc_array_data(w) == the_obj.data && distc_value_equal(a, w));
  CHECK(the_obj.refs == 2);
  ((double *)distc_array_data(w))[5] = -1;
  CHECK(((double *)distc_array_data(a))[5] == -1);
  distc_value_free(w);
  free(buf);

  /* A handle value, alone and inside a list, round trips as itself. */
  distc_value *h = new_handle();
  CHECK(distc_value_type(h) == DISTC_HANDLE &&
        distc__handle_obj(h, 15) == &the_obj && !distc__handle_obj(h, 14));
  CHECK(roundtrip(distc_value_ref(h), NULL));
  CHECK(roundtrip(distc_listv(3, distc_int(1), distc_value_ref(h),
                              distc_listv(1, distc_value_ref(a))), NULL));
  CHECK(distc_value_equal(h, h) && !distc_value_equal(h, a));
  distc_value *h2 = new_handle();
  CHECK(distc_value_equal(h, h2));
  distc_value_free(h2);

  /* Malformed or unknown handles are rejected, nothing leaks. */
  unsigned char bodies[][10] = {
      {13, 1, 2, 3, 4, 5, 6, 7, 8},           /* unregistered kind */
      {15, 1, 2, 3},                          /* short body */
      {14, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x10}, /* unknown id */
  };
  size_t blen[] = {9, 4, 9};
  int want[] = {DISTC_EPROTO, DISTC_EPROTO, DISTC_ENOENT};
  for (int i = 0; i < 3; i++) {
    mp_reset();
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_ext(&pk, blen[i], 2);
    msgpack_pack_ext_body(&pk, bodies[i], blen[i]);
    CHECK(decode_mp() == want[i]);
  }
  mp_reset();
  msgpack_pack_ext(&pk, 0, 2);
  CHECK(decode_mp() == DISTC_EPROTO);

  /* Out of memory while encoding a handle: an error, no leak. */
  distc__enc e;
  distc__enc_init(&e);
  distc__alloc_fail_after = 1;
  CHECK(distc__enc_value(&e, h) == DISTC_ENOMEM);
  distc__alloc_fail_after = 0;
  distc__enc_destroy(&e);

  /* Every value gave its reference back, once. */
  int before = releases;
  distc_value_free(h);
  distc_value_free(a);
  CHECK(the_obj.refs == 0 && releases == before + 2);
  /* A failed construction releases the object it was given. */
  the_obj.refs++;
  distc__alloc_fail_after = 1;
  CHECK(distc__handle_value(&handle_ops, &the_obj) == NULL);
  distc__alloc_fail_after = 0;
  CHECK(the_obj.refs == 0);
}

/* ---- runner -------------------------------------------------------------- */

static void run(const char *name, void (*fn)(void)) {
  int p = passed, f = failed;
  fn();
  printf("%-12s %4d checks, %d failed\n", name, passed - p + failed - f,
         failed - f);
  fflush(stdout);
}

/* Lent arrays (ext 3): read back from this very process's memory when the
 * decoder may (lender = our pid), refused when it may not, and a lie about
 * the size or a bad address is an error, never a crash.  corrupt: 1 zeroes
 * the address; 2 makes a 2-d array claim 2 GiB, over the frame limit. */
static int lend_roundtrip(const distc_value *v, int lender, int corrupt,
                          distc_value **out) {
  distc__enc e;
  struct iovec iov[8];
  size_t total;
  distc__enc_init(&e);
  e.lend = true;
  int rc = distc__enc_value(&e, v);
  CHECK(rc == 0 && e.lent);
  int n = distc__enc_finish(&e, iov, 8, &total);
  CHECK(n == 2); /* head and msgpack: no segment */
  char *p = malloc(total);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    memcpy(p + off, iov[i].iov_base, iov[i].iov_len);
    off += iov[i].iov_len;
  }
  distc__enc_destroy(&e);
  if (corrupt == 1) /* the address is the 16 bytes before the trailing size */
    memset(p + total - 16, 0, 8);
  if (corrupt == 2) { /* dims[0] is 16 bytes before the address */
    uint64_t rows = (uint64_t)1 << 31 >> 12, bytes = (uint64_t)1 << 31;
    for (int i = 0; i < 8; i++) {
      p[total - 32 + i] = (char)(rows >> (8 * i));
      p[total - 8 + i] = (char)(bytes >> (8 * i));
    }
  }
  distc__dec d;
  *out = NULL;
  rc = distc__dec_open(&d, p, total);
  if (rc == 0) {
    d.lender = lender;
    rc = distc__dec_value(&d, distc__dec_root(&d), out);
    distc__dec_close(&d);
  }
  free(p);
  return rc;
}

static void test_lent(void) {
  size_t dims[2] = {512, 512}; /* 2 MiB of doubles */
  distc_value *v = distc_array(DISTC_F64, 2, dims), *back;
  double *d = distc_array_data(v);
  for (size_t i = 0; i < 512 * 512; i++)
    d[i] = (double)i * 0.5;
  CHECK(lend_roundtrip(v, (int)getpid(), 0, &back) == 0 && back &&
        distc_value_equal(v, back));
  distc_value_free(back);
  CHECK(lend_roundtrip(v, 0, 0, &back) == DISTC_EPROTO && !back);
  CHECK(lend_roundtrip(v, (int)getpid(), 1, &back) == DISTC_EIO && !back);
  /* The frame limit holds for lent arrays: refused before any copy. */
  CHECK(lend_roundtrip(v, (int)getpid(), 2, &back) == DISTC_ETOOBIG && !back);
  /* Small arrays are never lent. */
  distc_value *small = distc_array(DISTC_U8, 1, (size_t[]){100});
  distc__enc e;
  distc__enc_init(&e);
  e.lend = true;
  CHECK(distc__enc_value(&e, small) == 0 && !e.lent);
  distc__enc_destroy(&e);
  distc_value_free(small);
  distc_value_free(v);
}

int main(void) {
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  run("scalars", test_scalars);
  run("arrays", test_arrays);
  run("lists", test_lists);
  run("layout", test_layout);
  run("truncation", test_truncation);
  run("flips", test_flips);
  run("malformed", test_malformed);
  run("depth", test_depth);
  run("alloc_fail", test_alloc_fail);
  run("equal", test_equal);
  run("refcount", test_refcount);
  run("accessors", test_accessors);
  run("handles", test_handles);
  run("lent", test_lent);
  msgpack_sbuffer_destroy(&sb);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

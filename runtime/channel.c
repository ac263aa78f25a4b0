/* channel.c — remote channels: a bounded FIFO of values kept by its owner
 * process, used from any process through a handle (owner, id).
 *
 * Every operation is one call of distc__chan_op on the owner, local or not,
 * so there is one code path.  An operation that cannot finish now (a take
 * from an empty channel, a put into a full one) parks its deferred reply in
 * the channel and returns at once: the owner's thread that runs calls is
 * never held, so the put or take that will unblock it can still arrive.
 * Whatever changes the channel answers the parked replies it satisfies.
 *
 * A worker's operation on a channel owned by another worker goes straight
 * to the owner over their link (peers.c), or, under --topology
 * master_worker, through the master (distc__remotecall_routed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { OP_PUT, OP_TAKE, OP_FETCH, OP_ISREADY, OP_CLOSE, OP_FREE };

/* ---- the handle: u32 owner | u64 id ---- */

typedef struct chandle {
  int owner;
  uint64_t id;
} chandle;

static const distc__handle_ops channel_ops;

static size_t channel_encode(const void *obj, unsigned char *buf, size_t cap) {
  const chandle *h = obj;
  if (buf && cap >= 12) {
    for (int i = 0; i < 4; i++)
      buf[i] = (unsigned char)((uint32_t)h->owner >> (8 * i));
    for (int i = 0; i < 8; i++)
      buf[4 + i] = (unsigned char)(h->id >> (8 * i));
  }
  return 12;
}

static distc_value *handle_new(int owner, uint64_t id) {
  chandle *h = malloc(sizeof *h);
  if (!h) {
    distc__seterr(DISTC_ENOMEM, "out of memory");
    return NULL;
  }
  h->owner = owner;
  h->id = id;
  return distc__handle_value(&channel_ops, h);
}

static int channel_decode(const unsigned char *p, size_t n, distc_value **out) {
  if (n != 12)
    return distc__seterr(DISTC_EPROTO, "channel handle of %zu bytes", n);
  uint32_t owner = 0;
  uint64_t id = 0;
  for (int i = 3; i >= 0; i--)
    owner = owner << 8 | p[i];
  for (int i = 7; i >= 0; i--)
    id = id << 8 | p[4 + i];
  if (owner < 1 || owner > INT32_MAX)
    return distc__seterr(DISTC_EPROTO, "channel handle names process %u",
                         owner);
  *out = handle_new((int)owner, id);
  return *out ? 0 : DISTC_ENOMEM;
}

static const distc__handle_ops channel_ops = {
    .kind = DISTC__HK_CHANNEL,
    .name = "channel",
    .encode = channel_encode,
    .decode = channel_decode,
    .release = free,
};

__attribute__((constructor)) static void channel_register(void) {
  distc__handle_register(&channel_ops);
}

static chandle *as_channel(const distc_value *v) {
  return distc__handle_obj(v, DISTC__HK_CHANNEL);
}

bool distc_is_channel(const distc_value *v) { return as_channel(v) != NULL; }

/* ---- the owner's side ---- */

typedef struct waiter {
  struct waiter *next;
  distc__reply *reply;
  distc_value *value; /* a parked put's value */
} waiter;

typedef struct queue {
  waiter *head, *tail;
} queue;

typedef struct chan {
  struct chan *next;
  uint64_t id;
  size_t cap, head, n;
  distc_value **buf;
  bool closed;
  queue putters, takers, fetchers;
} chan;

/* Answers decided under the lock, sent after it: a send may block on a
 * full socket and must not hold up every other channel meanwhile. */
typedef struct answer {
  struct answer *next;
  distc__reply *reply;
  int err;
  distc_value *value;
  char msg[96];
} answer;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static chan *channels;
static uint64_t next_id = 1;

static void q_push(queue *q, waiter *w) {
  w->next = NULL;
  if (q->tail)
    q->tail->next = w;
  else
    q->head = w;
  q->tail = w;
}

static waiter *q_pop(queue *q) {
  waiter *w = q->head;
  if (w && !(q->head = w->next))
    q->tail = NULL;
  return w;
}

/* Queues an answer; out of memory, it is sent at once, under the lock
 * (correct, only slower for others). */
static void answer_add(answer **list, distc__reply *r, int err,
                       distc_value *v, const chan *c) {
  answer *a = calloc(1, sizeof *a);
  char msg[96] = "";
  if (err == DISTC_ECLOSED)
    snprintf(msg, sizeof msg, "channel %llu is closed",
             (unsigned long long)c->id);
  if (!a) {
    distc__reply_send(r, err, v, err ? msg : NULL);
    return;
  }
  a->reply = r;
  a->err = err;
  a->value = v;
  memcpy(a->msg, msg, sizeof msg);
  a->next = *list;
  *list = a;
}

static void answers_send(answer *list) {
  /* The list is newest first; answer in the order decided. */
  answer *rev = NULL;
  while (list) {
    answer *a = list;
    list = a->next;
    a->next = rev;
    rev = a;
  }
  while (rev) {
    answer *a = rev;
    rev = a->next;
    distc__reply_send(a->reply, a->err, a->value, a->err ? a->msg : NULL);
    free(a);
  }
}

static chan *find(uint64_t id) {
  for (chan *c = channels; c; c = c->next)
    if (c->id == id)
      return c;
  return NULL;
}

static void push_value(chan *c, distc_value *v) {
  c->buf[(c->head + c->n++) % c->cap] = v;
}

static distc_value *pop_value(chan *c) {
  distc_value *v = c->buf[c->head];
  c->buf[c->head] = NULL;
  c->head = (c->head + 1) % c->cap;
  c->n--;
  return v;
}

/* Every parked caller of c fails with DISTC_ECLOSED. */
static void wake_all_closed(chan *c, answer **out) {
  waiter *w;
  queue *qs[] = {&c->takers, &c->fetchers, &c->putters};
  for (size_t i = 0; i < DISTC__ARRAY_LEN(qs); i++)
    while ((w = q_pop(qs[i]))) {
      distc_value_free(w->value);
      answer_add(out, w->reply, DISTC_ECLOSED, NULL, c);
      free(w);
    }
}

/* Runs op on c for the caller r; every answer goes to out.  Returns 0 when
 * r is answered, 1 when it waits (parked in c, holding a reference to v),
 * DISTC_ENOMEM when it could not be parked (r is then still unanswered). */
static int do_op(chan *c, int op, distc_value *v, distc__reply *r,
                 answer **out) {
  waiter *w;
  switch (op) {
  case OP_PUT:
    if (c->closed) {
      answer_add(out, r, DISTC_ECLOSED, NULL, c);
      break;
    }
    /* Those waiting to peek see it, whoever gets it. */
    while ((w = q_pop(&c->fetchers))) {
      answer_add(out, w->reply, 0, distc_value_ref(v), c);
      free(w);
    }
    if ((w = q_pop(&c->takers))) {
      answer_add(out, w->reply, 0, distc_value_ref(v), c);
      free(w);
    } else if (c->n < c->cap) {
      push_value(c, distc_value_ref(v));
    } else {
      if (!(w = calloc(1, sizeof *w)))
        return DISTC_ENOMEM;
      w->reply = r;
      w->value = distc_value_ref(v);
      q_push(&c->putters, w);
      return 1;
    }
    answer_add(out, r, 0, distc_nil(), c);
    break;
  case OP_TAKE:
  case OP_FETCH:
    if (c->n > 0) {
      distc_value *x = op == OP_FETCH ? distc_value_ref(c->buf[c->head])
                                      : pop_value(c);
      /* A slot came free: the oldest parked put fills it. */
      if (op == OP_TAKE && (w = q_pop(&c->putters))) {
        push_value(c, w->value);
        answer_add(out, w->reply, 0, distc_nil(), c);
        free(w);
      }
      answer_add(out, r, 0, x, c);
    } else if (c->closed) {
      answer_add(out, r, DISTC_ECLOSED, NULL, c);
    } else {
      if (!(w = calloc(1, sizeof *w)))
        return DISTC_ENOMEM;
      w->reply = r;
      q_push(op == OP_FETCH ? &c->fetchers : &c->takers, w);
      return 1;
    }
    break;
  case OP_ISREADY:
    answer_add(out, r, 0, distc_bool(c->n > 0), c);
    break;
  case OP_CLOSE:
  case OP_FREE:
    c->closed = true;
    wake_all_closed(c, out);
    answer_add(out, r, 0, distc_nil(), c);
    break;
  }
  return 0;
}

static void chan_free(chan *c) {
  while (c->n > 0)
    distc_value_free(pop_value(c));
  free(c->buf);
  free(c);
}

/* [capacity]: a new channel here; answers its handle. */
DISTC_FUNCTION(distc__chan_new) {
  int64_t cap = distc_value_int(distc_list_at(args, 0));
  if (cap < 1 || (uint64_t)cap > SIZE_MAX / sizeof(distc_value *))
    return distc_fail(ctx, "a channel's capacity must be at least 1, got "
                      "%lld", (long long)cap);
  chan *c = calloc(1, sizeof *c);
  distc_value **buf = malloc(sizeof *buf * (size_t)cap);
  if (!c || !buf) {
    free(c);
    free(buf);
    return distc_fail(ctx, "out of memory for a channel of %lld",
                      (long long)cap);
  }
  c->cap = (size_t)cap;
  c->buf = buf;
  pthread_mutex_lock(&lock);
  c->id = next_id++;
  c->next = channels;
  channels = c;
  pthread_mutex_unlock(&lock);
  return handle_new(distc__C.myid, c->id);
}

/* [id, op, value]: the operation; answered now or once it can finish. */
DISTC_FUNCTION(distc__chan_op) {
  uint64_t id = (uint64_t)distc_value_int(distc_list_at(args, 0));
  int op = (int)distc_value_int(distc_list_at(args, 1));
  distc_value *v = distc_list_at(args, 2);
  if (op < OP_PUT || op > OP_FREE || !v)
    return distc_fail(ctx, "malformed channel operation");
  distc__reply *r = distc__call_defer(ctx);
  if (!r)
    return distc_fail(ctx, "out of memory");
  answer *out = NULL;
  int rc = 0;
  pthread_mutex_lock(&lock);
  chan *c = find(id);
  if (c) {
    rc = do_op(c, op, v, r, &out);
    if (op == OP_FREE) {
      for (chan **p = &channels; *p; p = &(*p)->next)
        if (*p == c) {
          *p = c->next;
          break;
        }
      chan_free(c);
    }
  }
  pthread_mutex_unlock(&lock);
  answers_send(out);
  if (!c) {
    char msg[128];
    snprintf(msg, sizeof msg, "there is no channel %llu on process %d (it "
             "was freed)", (unsigned long long)id, distc__C.myid);
    distc__reply_send(r, DISTC_ENOENT, NULL, msg);
  } else if (rc < 0) {
    distc__reply_send(r, rc, NULL, "out of memory parking a channel call");
  }
  return distc_nil();
}

/* ---- the callers' side ---- */

static int chan_call(const distc_value *ch, int op, const distc_value *v,
                     distc_value **out) {
  chandle *h = as_channel(ch);
  if (out)
    *out = NULL;
  if (!h)
    return distc__seterr(DISTC_ETYPE, "not a channel");
  if (!distc__C.initialised || distc__C.finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  distc_value *a = distc_listv(3, distc_int((int64_t)h->id), distc_int(op),
                               v ? distc_value_ref((distc_value *)v)
                                 : distc_nil());
  if (!a)
    return DISTC_ENOMEM;
  distc_future *f;
  int rc = distc__remotecall_routed(h->owner, "distc__chan_op", a, &f);
  distc_value_free(a);
  if (rc < 0)
    return rc;
  rc = distc_fetch(f, out);
  distc_future_free(f);
  return rc;
}

int distc_channel_new(int owner, size_t capacity, distc_value **out) {
  if (out)
    *out = NULL;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_channel_new: NULL out");
  *out = NULL;
  if (!distc__C.initialised || distc__C.finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (capacity < 1 || capacity > INT64_MAX)
    return distc__seterr(DISTC_EINVAL, "a channel's capacity must be at "
                         "least 1");
  distc_value *a = distc_listv(1, distc_int((int64_t)capacity));
  if (!a)
    return DISTC_ENOMEM;
  distc_future *f;
  int rc = distc__remotecall_routed(owner, "distc__chan_new", a, &f);
  distc_value_free(a);
  if (rc < 0)
    return rc;
  rc = distc_fetch(f, out);
  distc_future_free(f);
  if (rc == 0 && !as_channel(*out)) {
    distc_value_free(*out);
    *out = NULL;
    rc = distc__seterr(DISTC_EPROTO, "process %d answered a channel request "
                       "with something else", owner);
  }
  return rc;
}

int distc_channel_put(const distc_value *ch, const distc_value *v) {
  if (!v)
    return distc__seterr(DISTC_EINVAL, "distc_channel_put: NULL value (did "
                         "its constructor fail?)");
  return chan_call(ch, OP_PUT, v, NULL);
}

int distc_channel_take(const distc_value *ch, distc_value **out) {
  if (out)
    *out = NULL;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_channel_take: NULL out");
  return chan_call(ch, OP_TAKE, NULL, out);
}

int distc_channel_fetch(const distc_value *ch, distc_value **out) {
  if (out)
    *out = NULL;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_channel_fetch: NULL out");
  return chan_call(ch, OP_FETCH, NULL, out);
}

int distc_channel_isready(const distc_value *ch, bool *ready) {
  distc_value *v = NULL;
  int rc = chan_call(ch, OP_ISREADY, NULL, &v);
  if (ready)
    *ready = rc == 0 && distc_value_bool(v);
  distc_value_free(v);
  return rc;
}

int distc_channel_close(const distc_value *ch) {
  return chan_call(ch, OP_CLOSE, NULL, NULL);
}

int distc_channel_free(distc_value *ch) {
  if (!ch)
    return 0;
  int rc = chan_call(ch, OP_FREE, NULL, NULL);
  distc_value_free(ch);
  return rc;
}

/* registry.c — the table of functions callable by name.
 *
 * DISTC_FUNCTION registers at load time (an ELF constructor), so every
 * process of one binary builds the same table before main; shared objects
 * loaded later add theirs from their own constructors.  Lookups vastly
 * outnumber registrations, hence an open-addressing hash under a rwlock. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct entry {
  const char *name;
  distc_fn fn;
  uint64_t hash;
} entry;

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static entry *table;
static size_t table_cap, table_n;

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h | 1;
}

static void insert(entry *t, size_t cap, entry e) {
  size_t i = e.hash & (cap - 1);
  while (t[i].name && strcmp(t[i].name, e.name) != 0)
    i = (i + 1) & (cap - 1);
  t[i] = e;
}

int distc_register(const char *name, distc_fn fn) {
  if (!name || !*name || !fn)
    return distc__seterr(DISTC_EINVAL, "distc_register: empty name or NULL "
                                       "function");
  int rc = 0;
  pthread_rwlock_wrlock(&table_lock);
  if ((table_n + 1) * 2 > table_cap) {
    size_t cap = table_cap ? table_cap * 2 : 64;
    /* calloc, not distc__alloc: this runs in constructors before main,
     * where failure injection makes no sense. */
    entry *t = calloc(cap, sizeof *t);
    if (!t) {
      rc = DISTC_ENOMEM;
      goto unlock;
    }
    for (size_t i = 0; i < table_cap; i++)
      if (table[i].name)
        insert(t, cap, table[i]);
    free(table);
    table = t;
    table_cap = cap;
  }
  entry e = {name, fn, hash_name(name)};
  size_t i = e.hash & (table_cap - 1);
  while (table[i].name && strcmp(table[i].name, name) != 0)
    i = (i + 1) & (table_cap - 1);
  if (!table[i].name)
    table_n++;
  table[i] = e;
unlock:
  pthread_rwlock_unlock(&table_lock);
  return rc;
}

distc_fn distc__lookup(const char *name) {
  distc_fn fn = NULL;
  uint64_t h = hash_name(name);
  pthread_rwlock_rdlock(&table_lock);
  if (table_cap) {
    for (size_t i = h & (table_cap - 1); table[i].name;
         i = (i + 1) & (table_cap - 1)) {
      if (table[i].hash == h && strcmp(table[i].name, name) == 0) {
        fn = table[i].fn;
        break;
      }
    }
  }
  pthread_rwlock_unlock(&table_lock);
  return fn;
}

/* The worker side of distc_load_everywhere. */
DISTC_FUNCTION(distc__load) {
  const char *path = distc_value_str(distc_list_at(args, 0), NULL);
  if (!path)
    return distc_fail(ctx, "distc__load wants a path");
  if (!dlopen(path, RTLD_NOW | RTLD_GLOBAL))
    return distc_fail(ctx, "cannot load %s: %s", path, dlerror());
  return distc_nil();
}

distc_value *distc_fail(distc_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  if (ctx) {
    free(ctx->errmsg);
    ctx->errmsg = msg;
  } else {
    free(msg);
  }
  return NULL;
}

/* shared.c — shared arrays: one anonymous memory file (memfd) or one named
 * file, mapped by the master and every participant, all on the master's
 * host.
 *
 * The memory has no name that could outlive a crash: the master creates a
 * memfd and each participant opens it through /proc/<master>/fd/<n> while
 * the master holds that descriptor (the same-user access the single-copy
 * path's process_vm_readv already needs).  Once every participant has
 * mapped it the master closes the descriptor; the memory goes when the last
 * mapping does, however the processes end — SIGKILL of the launcher
 * included.  Only where memfd_create is missing does it fall back to a POSIX
 * segment whose name exists while it is being handed out; that name carries
 * a tag derived from the cluster secret, and a worker that loses its master
 * unlinks every name of its run before it exits.
 *
 * The memory itself is reference counted per process: one map object per
 * array per process, one reference per value pointing into it.  A worker's
 * registry holds a reference until the master says detach; the master's
 * registry holds none, so the master's last value going away releases the
 * array on every participant. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define NAME_PREFIX "distc-"

typedef struct shmap {
  atomic_int refs;
  uint64_t id;
  bool creator;       /* the master's map: releasing it releases everywhere */
  void *base;         /* what mmap returned */
  size_t maplen;
  void *data;         /* base + the offset's distance from a page boundary */
  distc_dtype dtype;
  int ndim;
  size_t dims[DISTC_MAXDIM];
  size_t len;         /* elements */
  int *pids;          /* participants, in split order */
  int npids;
  struct shmap *next; /* in the registry */
} shmap;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static shmap *registry;
static uint64_t next_id = 1; /* master, under reg_lock */

/* "-<8 hex>-": this run's names contain it; set before any name is made. */
static char run_tag[16];

static const distc__handle_ops shared_ops;

/* ---- names ---- */

static void tag_from_secret(const unsigned char *secret) {
  unsigned char zero[DISTC__NONCE_LEN] = {0}, mac[DISTC__MAC_LEN];
  distc__mac(secret, "shared-array-names", zero, zero, mac);
  snprintf(run_tag, sizeof run_tag, "-%02x%02x%02x%02x-", mac[0], mac[1],
           mac[2], mac[3]);
}

void distc__shared_set_secret(const unsigned char *secret) {
  tag_from_secret(secret);
}

/* The master's pid in the name lets a person (or a test) tell runs apart. */
static void segment_name(char *buf, size_t n, uint64_t id) {
  if (!run_tag[0])
    tag_from_secret(distc__C.secret);
  snprintf(buf, n, "/" NAME_PREFIX "%d%s%llu", (int)getpid(), run_tag,
           (unsigned long long)id);
}

void distc__shared_orphaned(void) {
  if (!run_tag[0])
    return;
  DIR *d = opendir("/dev/shm");
  if (!d)
    return;
  struct dirent *e;
  char name[NAME_MAX + 2];
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, NAME_PREFIX, strlen(NAME_PREFIX)) != 0 ||
        !strstr(e->d_name, run_tag))
      continue;
    snprintf(name, sizeof name, "/%s", e->d_name);
    shm_unlink(name);
  }
  closedir(d);
}

/* ---- maps and the registry ---- */

static void map_free(shmap *m) {
  if (m->base)
    munmap(m->base, m->maplen);
  free(m->pids);
  free(m);
}

static void registry_add(shmap *m) {
  pthread_mutex_lock(&reg_lock);
  m->next = registry;
  registry = m;
  pthread_mutex_unlock(&reg_lock);
}

/* Unlinks m from the registry if it is there; true if it was. */
static bool registry_remove(shmap *m) {
  bool found = false;
  pthread_mutex_lock(&reg_lock);
  for (shmap **p = &registry; *p; p = &(*p)->next) {
    if (*p == m) {
      *p = m->next;
      found = true;
      break;
    }
  }
  pthread_mutex_unlock(&reg_lock);
  return found;
}

/* A new reference to the map of id, or NULL.  The master's entries hold no
 * reference: one whose count already reached zero is being released and
 * must not come back to life. */
static shmap *registry_ref(uint64_t id) {
  shmap *found = NULL;
  pthread_mutex_lock(&reg_lock);
  for (shmap *m = registry; m; m = m->next) {
    if (m->id != id)
      continue;
    int r = atomic_load(&m->refs);
    while (r > 0 && !atomic_compare_exchange_weak(&m->refs, &r, r + 1))
      ;
    if (r > 0)
      found = m;
    break;
  }
  pthread_mutex_unlock(&reg_lock);
  return found;
}

static void map_unref(void *obj) {
  shmap *m = obj;
  if (atomic_fetch_sub(&m->refs, 1) != 1)
    return;
  registry_remove(m);
  if (m->creator && distc__C.initialised && !distc__C.finalised) {
    distc_value *a = distc_listv(1, distc_int((int64_t)m->id));
    for (int i = 0; a && i < m->npids; i++)
      if (m->pids[i] != distc__C.myid)
        distc_remote_do(m->pids[i], "distc__shared_detach", a);
    distc_value_free(a);
  }
  map_free(m);
}

static distc_value *map_value(shmap *m) {
  return distc__array_backed(m->dtype, m->ndim, m->dims, m->data, &shared_ops,
                             m);
}

/* ---- the handle: u64 id ---- */

static size_t shared_encode(const void *obj, unsigned char *buf, size_t cap) {
  const shmap *m = obj;
  if (buf && cap >= 8)
    for (int i = 0; i < 8; i++)
      buf[i] = (unsigned char)(m->id >> (8 * i));
  return 8;
}

static int shared_decode(const unsigned char *p, size_t n, distc_value **out) {
  if (n != 8)
    return distc__seterr(DISTC_EPROTO, "shared array handle of %zu bytes", n);
  uint64_t id = 0;
  for (int i = 7; i >= 0; i--)
    id = id << 8 | p[i];
  shmap *m = registry_ref(id);
  if (!m)
    return distc__seterr(DISTC_ENOENT,
                         "shared array %llu is not mapped on process %d: only "
                         "its participants and the master can receive it "
                         "(choose them with distc_shared_opts.pids), and only "
                         "while the master holds it",
                         (unsigned long long)id, distc__C.myid);
  *out = map_value(m);
  return *out ? 0 : DISTC_ENOMEM;
}

static const distc__handle_ops shared_ops = {
    .kind = DISTC__HK_SHARED,
    .name = "shared array",
    .encode = shared_encode,
    .decode = shared_decode,
    .release = map_unref,
};

__attribute__((constructor)) static void shared_register(void) {
  distc__handle_register(&shared_ops);
}

/* ---- mapping ---- */

/* Opens the segment or file behind a shared array (creating it when
 * creating) and maps it into m.  The descriptor is closed before returning,
 * unless keep_fd: then it goes to *keep_fd (the master's memfd, which the
 * participants open through /proc until they all have it mapped).
 * bytes: the data's size; offset: where it starts in a file. */
static int map_open(shmap *m, const char *name, const char *path,
                    uint64_t offset, bool create, size_t bytes, int *keep_fd) {
  long page = sysconf(_SC_PAGESIZE);
  uint64_t aligned = path ? offset - offset % (uint64_t)page : 0;
  size_t skip = (size_t)(offset - aligned);
  /* mmap refuses a length of 0; an empty array still gets its page. */
  size_t need = bytes + skip ? bytes + skip : 1;
  int fd = -1, rc = 0;
  bool memfd = false;
  if (keep_fd) {
    *keep_fd = -1;
    /* The name is only what /proc/<pid>/maps shows. */
    fd = memfd_create(name + 1, MFD_CLOEXEC);
    memfd = fd >= 0;
  }
  /* A file of the user's is theirs to share wider; one we create holds
   * this run's data, so only its owner reads it. */
  if (!memfd && path)
    fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  else if (!memfd)
    fd = shm_open(name, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0),
                  0600);
  if (fd < 0)
    return distc__seterr(DISTC_EIO, "cannot open %s %s: %s",
                         path ? "file" : "shared memory segment",
                         path ? path : name, strerror(errno));
  if (path) {
    struct stat st;
    if (fstat(fd, &st) < 0) {
      rc = distc__seterr(DISTC_EIO, "cannot stat %s: %s", path,
                         strerror(errno));
      goto close_fd;
    }
    if ((uint64_t)st.st_size < offset + bytes) {
      if (!create) {
        rc = distc__seterr(DISTC_EINVAL,
                           "file %s has %lld bytes, the array needs %llu "
                           "(offset %llu + %zu); set create to grow it",
                           path, (long long)st.st_size,
                           (unsigned long long)(offset + bytes),
                           (unsigned long long)offset, bytes);
        goto close_fd;
      }
      if (ftruncate(fd, (off_t)(offset + bytes)) < 0) {
        rc = distc__seterr(DISTC_EIO, "cannot grow %s to %llu bytes: %s", path,
                           (unsigned long long)(offset + bytes),
                           strerror(errno));
        goto close_fd;
      }
    }
  } else if (create || memfd) {
    /* Reserve the pages now: on a full /dev/shm ftruncate would succeed and
     * the first touch of a missing page would be SIGBUS in some worker. */
    int e = posix_fallocate(fd, 0, (off_t)need);
    if (e == EOPNOTSUPP || e == ENOSYS || e == EINVAL)
      e = ftruncate(fd, (off_t)need) < 0 ? errno : 0;
    if (e) {
      rc = distc__seterr(DISTC_EIO,
                         "cannot reserve %zu bytes of shared memory in "
                         "/dev/shm: %s", need, strerror(e));
      goto close_fd;
    }
  }
  void *base = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                    (off_t)aligned);
  if (base == MAP_FAILED) {
    rc = distc__seterr(DISTC_EIO, "cannot map %zu bytes of %s: %s", need,
                       path ? path : name, strerror(errno));
    goto close_fd;
  }
  m->base = base;
  m->maplen = need;
  m->data = (char *)base + skip;
  if (memfd) {
    *keep_fd = fd;
    return 0;
  }
close_fd:
  close(fd);
  return rc;
}

static shmap *map_new(uint64_t id, distc_dtype t, int ndim, const size_t *dims,
                      const int *pids, int npids) {
  shmap *m = calloc(1, sizeof *m);
  int *p = malloc(sizeof *p * (size_t)(npids ? npids : 1));
  if (!m || !p) {
    free(m);
    free(p);
    distc__seterr(DISTC_ENOMEM, "out of memory");
    return NULL;
  }
  atomic_init(&m->refs, 1);
  m->id = id;
  m->dtype = t;
  m->ndim = ndim;
  m->len = 1;
  for (int k = 0; k < ndim; k++) {
    m->dims[k] = dims[k];
    m->len *= dims[k];
  }
  memcpy(p, pids, sizeof *p * (size_t)npids);
  m->pids = p;
  m->npids = npids;
  return m;
}

/* ---- participants' side ---- */

static int dims_from(const distc_value *l, int *ndim, size_t *dims) {
  size_t n = distc_list_len(l);
  if (distc_value_type(l) != DISTC_LIST || n > DISTC_MAXDIM)
    return DISTC_EPROTO;
  *ndim = (int)n;
  for (size_t k = 0; k < n; k++)
    dims[k] = (size_t)distc_value_int(distc_list_at(l, k));
  return 0;
}

/* [id, name or path, is_file, offset, dtype, [dims], [pids]] */
DISTC_FUNCTION(distc__shared_attach) {
  uint64_t id = (uint64_t)distc_value_int(distc_list_at(args, 0));
  const char *where = distc_value_str(distc_list_at(args, 1), NULL);
  bool file = distc_value_bool(distc_list_at(args, 2));
  uint64_t offset = (uint64_t)distc_value_int(distc_list_at(args, 3));
  distc_dtype t = (distc_dtype)distc_value_int(distc_list_at(args, 4));
  const distc_value *pl = distc_list_at(args, 6);
  int ndim, npids = (int)distc_list_len(pl);
  size_t dims[DISTC_MAXDIM];
  if (!where || distc_dtype_size(t) == 0 ||
      dims_from(distc_list_at(args, 5), &ndim, dims) < 0 || npids < 1)
    return distc_fail(ctx, "malformed shared array attach");
  shmap *m = registry_ref(id);
  if (m) {
    map_unref(m);
    return distc_fail(ctx, "shared array %llu is already mapped here",
                      (unsigned long long)id);
  }
  int *pids = malloc(sizeof *pids * (size_t)npids);
  for (int i = 0; pids && i < npids; i++)
    pids[i] = (int)distc_value_int(distc_list_at(pl, (size_t)i));
  m = pids ? map_new(id, t, ndim, dims, pids, npids) : NULL;
  free(pids);
  if (!m)
    return distc_fail(ctx, "out of memory");
  if (map_open(m, file ? NULL : where, file ? where : NULL, offset, false,
               m->len * distc_dtype_size(t), NULL) < 0) {
    map_free(m);
    return distc_fail(ctx, "%s", distc_errmsg());
  }
  registry_add(m); /* the registry keeps the reference map_new made */
  return distc_nil();
}

/* [id]: the master freed the array; values still held here keep it mapped
 * until they are freed. */
DISTC_FUNCTION(distc__shared_detach) {
  (void)ctx;
  uint64_t id = (uint64_t)distc_value_int(distc_list_at(args, 0));
  shmap *m = registry_ref(id);
  if (m && registry_remove(m))
    map_unref(m); /* the registry's reference */
  if (m)
    map_unref(m);
  return distc_nil();
}

/* ---- creating ---- */

/* Fills pids (room for every process) with the participants: the ones
 * asked for, checked, or the default.  Returns the count or an error. */
static int choose_pids(const distc_shared_opts *o, int *pids, int room) {
  char myhost[64];
  distc__hostname(myhost, sizeof myhost);
  if (o && o->npids > 0) {
    if (!o->pids || o->npids > room)
      return distc__seterr(DISTC_EINVAL, "distc_shared_opts: %d pids but the "
                           "list is %s", o->npids,
                           o->pids ? "longer than the cluster" : "NULL");
    for (int i = 0; i < o->npids; i++) {
      int p = o->pids[i];
      for (int j = 0; j < i; j++)
        if (o->pids[j] == p)
          return distc__seterr(DISTC_EINVAL, "process %d is listed twice "
                               "among the shared array's pids", p);
      if (p == DISTC_MASTER) {
        pids[i] = p;
        continue;
      }
      distc__conn *c = distc__conn_get(p);
      if (!c)
        return distc__seterr(DISTC_ENOENT, "there is no process %d to share "
                             "an array with (see distc_workers())", p);
      bool same = strcmp(c->host, myhost) == 0;
      char host[64];
      memcpy(host, c->host, sizeof host);
      distc__conn_unref(c);
      if (!same)
        return distc__seterr(DISTC_EINVAL,
                             "a shared array needs all its processes on one "
                             "machine, the master's (%s), but worker %d is on "
                             "%s; use a distributed array (distc_darray_*) "
                             "across hosts",
                             myhost, p, host);
      pids[i] = p;
    }
    return o->npids;
  }
  int ids[room], n = distc_workers(ids, room), k = 0;
  for (int i = 0; i < n && i < room; i++) {
    distc__conn *c = distc__conn_get(ids[i]);
    if (c && strcmp(c->host, myhost) == 0)
      pids[k++] = ids[i];
    distc__conn_unref(c);
  }
  if (k == 0)
    pids[k++] = DISTC_MASTER;
  return k;
}

static distc_value *int_list(const int *xs, int n) {
  distc_value *l = distc_list((size_t)n);
  for (int i = 0; l && i < n; i++)
    if (distc_list_set(l, (size_t)i, distc_int(xs[i])) < 0) {
      distc_value_free(l);
      return NULL;
    }
  return l;
}

static distc_value *size_list(const size_t *xs, int n) {
  distc_value *l = distc_list((size_t)n);
  for (int i = 0; l && i < n; i++)
    if (distc_list_set(l, (size_t)i, distc_int((int64_t)xs[i])) < 0) {
      distc_value_free(l);
      return NULL;
    }
  return l;
}

/* Calls fn([first, rest...]) on every pid at once and waits for them all;
 * the errors are gathered. */
static int call_all(const int *pids, int n, const char *fn,
                    distc_value *first, const distc_value *rest) {
  size_t nrest = distc_list_len(rest);
  distc_value *a = distc_list(1 + nrest);
  distc_future **fs = malloc(sizeof *fs * (size_t)(n ? n : 1));
  int nf = 0, rc = 0;
  if (!a || !fs || distc_list_set(a, 0, distc_value_ref(first)) < 0)
    goto nomem;
  for (size_t i = 0; i < nrest; i++)
    if (distc_list_set(a, i + 1, distc_value_ref(distc_list_at(rest, i))) < 0)
      goto nomem;
  /* Remote ones first, so they run while a local one runs here. */
  for (int pass = 0; pass < 2 && rc == 0; pass++)
    for (int i = 0; i < n && rc == 0; i++)
      if ((pids[i] == distc__C.myid) == (pass == 1))
        if ((rc = distc_remotecall(pids[i], fn, a, &fs[nf])) == 0)
          nf++;
  if (rc < 0) {
    char *msg = strdup(distc_errmsg());
    distc__gather(fs, (size_t)nf);
    distc__seterr(rc, "%s", msg ? msg : distc_strerror(rc));
    free(msg);
  } else {
    rc = distc__gather(fs, (size_t)nf);
  }
  for (int i = 0; i < nf; i++)
    distc_future_free(fs[i]);
  free(fs);
  distc_value_free(a);
  return rc;
nomem:
  free(fs);
  distc_value_free(a);
  return distc__seterr(DISTC_ENOMEM, "out of memory");
}

int distc_shared_new(distc_dtype t, int ndim, const size_t *dims,
                     const distc_shared_opts *o, distc_value **out) {
  if (out)
    *out = NULL;
  distc__cluster *C = &distc__C;
  int rc;
  if (!out)
    return distc__seterr(DISTC_EINVAL, "distc_shared_new: NULL out");
  *out = NULL;
  if (!C->initialised || C->finalised)
    return distc__seterr(DISTC_ESTATE, "call distc_init() first");
  if (!C->is_master)
    return distc__seterr(DISTC_ENOTMASTER, "only the master creates shared "
                         "arrays (pass one to a worker in a call instead)");
  size_t esize = distc_dtype_size(t), len = 1, bytes;
  if (esize == 0 || ndim < 0 || ndim > DISTC_MAXDIM || (ndim && !dims))
    return distc__seterr(DISTC_EINVAL, "shared array: bad dtype %d or ndim %d "
                         "(0..%d, with dims)", (int)t, ndim, DISTC_MAXDIM);
  for (int k = 0; k < ndim; k++)
    if (__builtin_mul_overflow(len, dims[k], &len))
      return distc__seterr(DISTC_EINVAL, "shared array dims overflow");
  if (__builtin_mul_overflow(len, esize, &bytes) || bytes > SIZE_MAX / 2)
    return distc__seterr(DISTC_EINVAL, "shared array of %zu elements is too "
                         "large", len);
  if (o && o->init_args && distc_value_type(o->init_args) != DISTC_LIST)
    return distc__seterr(DISTC_EINVAL, "init_args must be a list");
  const char *path = o && o->path ? o->path : NULL;
  if (path && o->offset % esize != 0)
    return distc__seterr(DISTC_EINVAL, "offset %llu into %s is not a multiple "
                         "of the element size (%zu)",
                         (unsigned long long)o->offset, path, esize);

  /* Room for the participants, then (from the end) those other than us. */
  int room = 2 * (distc_nprocs() + (o && o->npids > 0 ? o->npids : 0) + 1);
  int *pids = malloc(sizeof *pids * (size_t)room);
  if (!pids)
    return distc__seterr(DISTC_ENOMEM, "out of memory");
  int npids = choose_pids(o, pids, room / 2);
  if (npids < 0) {
    rc = npids;
    goto free_pids;
  }

  pthread_mutex_lock(&reg_lock);
  uint64_t id = next_id++;
  pthread_mutex_unlock(&reg_lock);
  char name[96];
  segment_name(name, sizeof name, id);
  shmap *m = map_new(id, t, ndim, dims, pids, npids);
  if (!m) {
    rc = DISTC_ENOMEM;
    goto free_pids;
  }
  m->creator = true;
  int memfd = -1;
  if ((rc = map_open(m, name, path, o ? o->offset : 0, path ? o->create : true,
                     bytes, path ? NULL : &memfd)) < 0) {
    map_free(m);
    goto free_pids;
  }
  /* Participants open the memfd as a file through our /proc entry. */
  char fdpath[64];
  if (memfd >= 0) {
    snprintf(fdpath, sizeof fdpath, "/proc/%d/fd/%d", (int)getpid(), memfd);
    path = fdpath;
  }

  /* Every other participant maps it while the name exists. */
  int nothers = 0;
  for (int i = 0; i < npids; i++)
    if (pids[i] != C->myid)
      pids[room - 1 - nothers++] = pids[i];
  const int *others = pids + room - nothers;
  if (nothers > 0) {
    distc_value *rest = distc_listv(
        6, distc_string(path ? path : name), distc_bool(path != NULL),
        distc_int((int64_t)(o && memfd < 0 ? o->offset : 0)), distc_int(t),
        size_list(dims, ndim), int_list(pids, npids));
    distc_value *idv = distc_int((int64_t)id);
    rc = rest && idv ? call_all(others, nothers, "distc__shared_attach", idv,
                                rest)
                     : distc__seterr(DISTC_ENOMEM, "out of memory");
    distc_value_free(rest);
    distc_value_free(idv);
  }
  if (memfd >= 0)
    close(memfd);
  else if (!path)
    shm_unlink(name);
  registry_add(m);
  if (rc < 0) {
    /* Those that did map it let go when m goes (map_unref sends detach;
     * one that failed has nothing to detach). */
    char *msg = strdup(distc_errmsg());
    map_unref(m);
    distc__seterr(rc, "creating a shared array: %s", msg ? msg : "");
    free(msg);
    goto free_pids;
  }

  distc_value *s = map_value(m);
  if (!s) {
    rc = DISTC_ENOMEM;
    goto free_pids;
  }
  if (o && o->init) {
    rc = call_all(pids, npids, o->init, s, o->init_args);
    if (rc < 0) {
      char *msg = strdup(distc_errmsg());
      distc_value_free(s);
      distc__seterr(rc, "initialising a shared array: %s", msg ? msg : "");
      free(msg);
      goto free_pids;
    }
  }
  *out = s;
  rc = 0;
free_pids:
  free(pids);
  return rc;
}

/* ---- queries ---- */

static shmap *as_shared(const distc_value *v) {
  return distc__handle_obj(v, DISTC__HK_SHARED);
}

bool distc_is_shared(const distc_value *v) { return as_shared(v) != NULL; }

int distc_shared_procs(const distc_value *s, int *ids, int max) {
  shmap *m = as_shared(s);
  if (!m)
    return distc__seterr(DISTC_ETYPE, "not a shared array");
  for (int i = 0; ids && i < m->npids && i < max; i++)
    ids[i] = m->pids[i];
  return m->npids;
}

int distc_shared_indices(const distc_value *s, int pid, size_t *lo,
                         size_t *hi) {
  shmap *m = as_shared(s);
  if (!m)
    return distc__seterr(DISTC_ETYPE, "not a shared array");
  size_t a = 0, b = 0;
  for (int i = 0; i < m->npids; i++) {
    if (m->pids[i] != pid)
      continue;
    /* Even split: part i is [len*i/n, len*(i+1)/n). */
    a = (size_t)((unsigned __int128)m->len * (unsigned)i / (unsigned)m->npids);
    b = (size_t)((unsigned __int128)m->len * (unsigned)(i + 1) /
                 (unsigned)m->npids);
    break;
  }
  if (lo)
    *lo = a;
  if (hi)
    *hi = b;
  return 0;
}

int distc_shared_localindices(const distc_value *s, size_t *lo, size_t *hi) {
  return distc_shared_indices(s, distc__C.myid, lo, hi);
}

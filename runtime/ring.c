/* ring.c — single-producer single-consumer byte rings in a memfd shared by
 * a worker and its master (see ring.h and conn.c).
 *
 * Positions are free-running 64-bit byte counts: used = tail - head.  The
 * producer publishes bytes with a release store of tail, the consumer frees
 * room with a release store of head.  Who rings a doorbell, and when, is
 * conn.c's business; a consumer that sleeps on the ring itself (rather
 * than on the socket beside it) sleeps on a futex here.  The sleeper counts
 * itself in (rd_sleep) before its last look, the producer publishes before
 * it looks at rd_sleep, both with a full fence between: either the sleeper
 * sees the bytes, or the producer sees the sleeper and moves the bell. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

int distc__shm_create(void **map) {
  int fd = memfd_create("distc-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -1;
  if (ftruncate(fd, (off_t)DISTC__SHM_BYTES) < 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
    close(fd);
    return -1;
  }
  void *m = mmap(NULL, DISTC__SHM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
  if (m == MAP_FAILED) {
    close(fd);
    return -1;
  }
  *map = m;
  return fd;
}

void *distc__shm_map(int fd) {
  struct stat st;
  /* The size is sealed by its creator: it cannot shrink under us. */
  int seals = fcntl(fd, F_GET_SEALS);
  if (fstat(fd, &st) < 0 || (size_t)st.st_size != DISTC__SHM_BYTES ||
      seals < 0 || !(seals & F_SEAL_SHRINK))
    return NULL;
  void *m = mmap(NULL, DISTC__SHM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
  return m == MAP_FAILED ? NULL : m;
}

void distc__shm_unmap(void *map) {
  if (map)
    munmap(map, DISTC__SHM_BYTES);
}

distc__ring *distc__shm_ring(void *map, int master_to_worker) {
  return (distc__ring *)((char *)map +
                         (master_to_worker ? DISTC__RING_BYTES : 0));
}

size_t distc__ring_used(distc__ring *r) {
  return (size_t)(atomic_load_explicit(&r->tail, memory_order_acquire) -
                  atomic_load_explicit(&r->head, memory_order_acquire));
}

size_t distc__ring_writev(distc__ring *r, uint64_t *head_cache,
                          const struct iovec *v, int n) {
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  size_t want = 0;
  for (int i = 0; i < n; i++)
    want += v[i].iov_len;
  uint64_t head = *head_cache;
  if (DISTC__RING_CAP - (size_t)(tail - head) < want)
    head = *head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
  size_t room = DISTC__RING_CAP - (size_t)(tail - head), done = 0;
  for (int i = 0; i < n && room > 0; i++) {
    const unsigned char *p = v[i].iov_base;
    size_t len = v[i].iov_len < room ? v[i].iov_len : room;
    size_t at = (size_t)(tail % DISTC__RING_CAP);
    size_t first = DISTC__RING_CAP - at < len ? DISTC__RING_CAP - at : len;
    memcpy(r->data + at, p, first);
    memcpy(r->data, p + first, len - first);
    tail += len;
    room -= len;
    done += len;
    if (len < v[i].iov_len)
      break;
  }
  if (done)
    atomic_store_explicit(&r->tail, tail, memory_order_release);
  return done;
}

size_t distc__ring_read(distc__ring *r, void *dst, size_t cap) {
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  size_t len = (size_t)(tail - head);
  if (len > DISTC__RING_CAP)
    len = 0; /* a corrupt peer: read nothing rather than past the map */
  if (len > cap)
    len = cap;
  if (len == 0)
    return 0;
  size_t at = (size_t)(head % DISTC__RING_CAP);
  size_t first = DISTC__RING_CAP - at < len ? DISTC__RING_CAP - at : len;
  memcpy(dst, r->data + at, first);
  memcpy((char *)dst + first, r->data, len - first);
  atomic_store_explicit(&r->head, head + len, memory_order_release);
  return len;
}

static long futex(_Atomic uint32_t *w, int op, uint32_t val,
                  const struct timespec *ts) {
  return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, 0);
}

void distc__ring_wait_room(distc__ring *r, int ms) {
  uint32_t seq = atomic_load(&r->room_seq);
  atomic_store(&r->wr_wait, 1);
  atomic_thread_fence(memory_order_seq_cst);
  if (distc__ring_used(r) < DISTC__RING_CAP)
    return;
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  futex(&r->room_seq, FUTEX_WAIT, seq, &ts);
}

int distc__ring_room_made(distc__ring *r) {
  atomic_thread_fence(memory_order_seq_cst);
  if (!atomic_load_explicit(&r->wr_wait, memory_order_relaxed))
    return 0;
  atomic_store(&r->wr_wait, 0);
  atomic_fetch_add(&r->room_seq, 1);
  futex(&r->room_seq, FUTEX_WAKE, INT_MAX, NULL);
  return 1;
}

uint32_t distc__ring_sleep_begin(distc__ring *r) {
  atomic_fetch_add(&r->rd_sleep, 1);
  uint32_t seq = atomic_load(&r->bell_seq);
  atomic_thread_fence(memory_order_seq_cst);
  return seq;
}

void distc__ring_sleep_wait(distc__ring *r, uint32_t seq, int ms) {
  if (distc__ring_used(r) > 0)
    return;
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  futex(&r->bell_seq, FUTEX_WAIT, seq, ms < 0 ? NULL : &ts);
}

void distc__ring_sleep_end(distc__ring *r) { atomic_fetch_sub(&r->rd_sleep, 1); }

void distc__ring_wake(distc__ring *r) {
  atomic_fetch_add(&r->bell_seq, 1);
  futex(&r->bell_seq, FUTEX_WAKE, INT_MAX, NULL);
}

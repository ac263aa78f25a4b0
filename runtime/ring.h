/* ring.h — the shared-memory transport's byte rings (ring.c).  Internal.
 *
 * One memfd holds two single-producer single-consumer byte rings, one per
 * direction.  The worker creates it and passes it to its master over the
 * same-host Unix socket (SCM_RIGHTS), so nothing appears in /dev/shm and the
 * memory goes with the last mapping.  The socket stays: it is the doorbell
 * every existing poll/epoll path already watches, and its end is how a
 * peer's exit shows. */
#ifndef DISTC_RING_H
#define DISTC_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define DISTC__RING_CAP ((size_t)1 << 20) /* bytes per direction */

typedef struct distc__ring {
  _Alignas(64) _Atomic uint64_t tail; /* bytes written (producer) */
  _Alignas(64) _Atomic uint64_t head; /* bytes read (consumer) */
  /* The consumer reads the ring without sleeping: the producer rings no
   * doorbell. */
  _Alignas(64) _Atomic uint32_t rd_spin;
  /* The producer waits for room: the consumer wakes room_seq and rings. */
  _Atomic uint32_t wr_wait;
  _Atomic uint32_t room_seq;
  _Atomic uint64_t bells; /* doorbell bytes sent to this ring's consumer */
  /* Consumer threads asleep on bell_seq (a futex): the producer moves it
   * and wakes them instead of writing a doorbell byte to the socket. */
  _Atomic uint32_t rd_sleep;
  _Atomic uint32_t bell_seq;
  _Alignas(64) unsigned char data[];
} distc__ring;

#define DISTC__RING_BYTES (sizeof(distc__ring) + DISTC__RING_CAP)
#define DISTC__SHM_BYTES (2 * DISTC__RING_BYTES)

/* Creates the memfd (sealed size, close-on-exec) and maps it; < 0 on
 * failure.  *map gets the mapping of DISTC__SHM_BYTES. */
int distc__shm_create(void **map);
/* Maps a received memfd after checking its size; NULL on failure. */
void *distc__shm_map(int fd);
void distc__shm_unmap(void *map);
/* The ring of direction `master_to_worker` in a mapping. */
distc__ring *distc__shm_ring(void *map, int master_to_worker);

/* Producer: copies as much of v[0..n) as fits; returns bytes copied.
 * *head is the producer's private copy of the consumer's position (start
 * at 0): the shared one is read only when the copy shows too little room,
 * which spares a cache line crossing between cores on most frames. */
size_t distc__ring_writev(distc__ring *r, uint64_t *head, const struct iovec *v,
                          int n);
/* Consumer: copies up to cap bytes out; returns bytes copied. */
size_t distc__ring_read(distc__ring *r, void *dst, size_t cap);
size_t distc__ring_used(distc__ring *r);
/* Producer: waits up to ms for room (futex on room_seq). */
void distc__ring_wait_room(distc__ring *r, int ms);
/* Consumer sleeping on the ring: _begin counts the thread in and returns
 * the bell's value, which the caller takes before its last look for work
 * (bytes, a completed future); _wait sleeps on the futex unless the bell
 * moved or bytes are there, at most ms (< 0: no limit); _end counts it
 * out. */
uint32_t distc__ring_sleep_begin(distc__ring *r);
void distc__ring_sleep_wait(distc__ring *r, uint32_t seq, int ms);
void distc__ring_sleep_end(distc__ring *r);
/* Moves the bell and wakes every thread asleep on it (the producer, after
 * publishing bytes to a sleeping consumer; or anyone whose news a sleeper
 * waits for). */
void distc__ring_wake(distc__ring *r);
/* Consumer, after reading: wakes a producer waiting for room; true when
 * it was waiting (the caller rings it over the socket too). */
int distc__ring_room_made(distc__ring *r);

#endif

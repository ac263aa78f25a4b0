/* ssh_io.c — the ssh launch half's I/O thread: from launch on it owns
 * every session.  It writes what the links queued for the proxies, feeds
 * their reports and stderr to the links (proxy_link.c), carries --tunnel
 * connections (ssh_tunnel.c), and notices a proxy's end.  One poll over
 * every session socket, the tunnels and a wake-up pipe; the state lock is
 * held except while it polls. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "ssh.h"

#define IO_TICK_MS 1000
#define IO_BUSY_MS 20

void distc__ssh_poke(int fd) {
  char c = 1;
  ssize_t n = write(fd, &c, 1);
  (void)n; /* a full pipe already holds a wake-up */
}

void distc__ssh_drain(int fd) {
  char buf[256];
  while (read(fd, buf, sizeof buf) > 0)
    ;
}

/* The links' on_exit: queued for reap, which runs in the caller's thread;
 * lock held. */
void distc__ssh_record_exit(void *arg, int index, long pid, int status) {
  ssh_state *s = arg;
  if (s->nexits == s->capexits) {
    size_t cap = s->capexits ? s->capexits * 2 : 64;
    exit_rec *grown = realloc(s->exits, cap * sizeof *grown);
    if (grown == NULL)
      return; /* the worker still counts as gone; only its status is lost */
    s->exits = grown;
    s->capexits = cap;
  }
  s->exits[s->nexits++] = (exit_rec){index, pid, status};
  distc__ssh_poke(s->event[1]);
}

/* The proxy ended (or the session did). */
static void proxy_gone(ssh_state *s, ssh_host *h) {
  if (h->ctl != NULL) {
    int st = ssh_channel_get_exit_status(h->ctl);
    if (h->p.phase == DISTC__P_STARTING && h->p.error == NULL) {
      const char *exe = h->spec.exename ? h->spec.exename : s->exe;
      if (st >= 0)
        distc__plink_fail(&h->p,
                          "%s: %s exited with status %d before it answered; "
                          "is it linked with libdistc, does it call "
                          "distc_init() first, and is it the same build as "
                          "here?",
                          h->p.label, exe, st);
      else
        distc__plink_fail(&h->p,
                          "%s: the connection ended before %s answered",
                          h->p.label, exe);
    }
    ssh_channel_close(h->ctl);
    ssh_channel_free(h->ctl);
    h->ctl = NULL;
  }
  distc__ssh_tunnels_close(h);
  distc__plink_gone(&h->p);
  pthread_cond_broadcast(&s->changed);
}

static void flush_out(ssh_host *h) {
  while (h->p.out_len > 0) {
    uint32_t win = ssh_channel_window_size(h->ctl);
    if (win == 0)
      return;
    uint32_t n = h->p.out_len < win ? (uint32_t)h->p.out_len : win;
    int w = ssh_channel_write(h->ctl, h->p.out, n);
    if (w <= 0)
      return;
    memmove(h->p.out, h->p.out + w, h->p.out_len - (size_t)w);
    h->p.out_len -= (size_t)w;
  }
  if (h->p.closing && !h->p.eof_sent) {
    ssh_channel_send_eof(h->ctl);
    h->p.eof_sent = true;
  }
}

/* Everything the I/O thread does for one host; lock held.  Returns true
 * when it still has work that no descriptor will announce. */
static bool service_host(ssh_state *s, ssh_host *h) {
  if (h->s == NULL || h->ctl == NULL)
    return false;
  bool busy = false;
  flush_out(h);
  busy |= h->p.out_len > 0;
  char buf[8192];
  for (int stream = 0; stream < 2; stream++) {
    int r;
    while ((r = ssh_channel_read_nonblocking(h->ctl, buf, sizeof buf,
                                             stream)) > 0) {
      if (stream == 1)
        distc__plink_stderr(&h->p, buf, (size_t)r, false);
      else
        distc__plink_input(&h->p, buf, (size_t)r);
    }
  }
  pthread_cond_broadcast(&s->changed);
  if (s->tunnel && h->fwd_port > 0)
    busy |= distc__ssh_tunnels_service(s, h);
  if (h->kill_deadline > 0 && distc__ssh_now() > h->kill_deadline) {
    /* SIGKILL was sent and the host is silent: stop waiting for it.  The
     * session's end makes its proxy stop whatever is left. */
    distc__plink_lose_workers(&h->p);
    h->kill_deadline = 0;
  }
  /* The exit status follows the end of output: wait for it, or the close. */
  if (ssh_channel_is_closed(h->ctl) ||
      (ssh_get_status(h->s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) ||
      (ssh_channel_is_eof(h->ctl) &&
       ssh_channel_get_exit_status(h->ctl) != -1))
    proxy_gone(s, h);
  return busy;
}

void *distc__ssh_io_main(void *arg) {
  ssh_state *s = arg;
  struct pollfd *fds = NULL;
  size_t cap = 0;
  pthread_mutex_lock(&s->lock);
  while (!s->io_stop) {
    bool busy = false;
    for (int i = 0; i < s->nh; i++)
      busy |= service_host(s, &s->h[i]);
    size_t need = 1;
    for (int i = 0; i < s->nh; i++)
      need += (s->h[i].ctl != NULL) + distc__ssh_tunnels_count(&s->h[i]);
    if (need > cap) {
      struct pollfd *grown = realloc(fds, need * sizeof *fds);
      if (grown == NULL) {
        busy = true;
        need = 0;
      } else {
        fds = grown;
        cap = need;
      }
    }
    size_t n = 0;
    if (need > 0) {
      fds[n++] = (struct pollfd){s->wake[0], POLLIN, 0};
      for (int i = 0; i < s->nh; i++) {
        ssh_host *h = &s->h[i];
        /* A session whose proxy is gone has nothing more to say, and its
         * socket may poll readable forever (the peer's end). */
        if (h->ctl == NULL)
          continue;
        short ev = POLLIN;
        if (ssh_get_poll_flags(h->s) & SSH_WRITE_PENDING)
          ev |= POLLOUT;
        fds[n++] = (struct pollfd){ssh_get_fd(h->s), ev, 0};
        n += distc__ssh_tunnels_poll(h, fds + n);
      }
    }
    bool kill_pending = false;
    for (int i = 0; i < s->nh; i++)
      kill_pending |= s->h[i].kill_deadline > 0;
    pthread_mutex_unlock(&s->lock);
    poll(fds, n, busy || kill_pending ? IO_BUSY_MS : IO_TICK_MS);
    distc__ssh_drain(s->wake[0]);
    pthread_mutex_lock(&s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  free(fds);
  return NULL;
}


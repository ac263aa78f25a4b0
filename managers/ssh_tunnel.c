/* ssh_tunnel.c — --tunnel: the workers on a host dial 127.0.0.1 at a port
 * its sshd listens on for us (a reverse forward asked for when connecting,
 * ssh_session.c); each connection arrives as a channel, and this file
 * carries it to the master's listener and back.  For hosts whose workers
 * cannot reach this host's addresses (NAT, a firewall). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "ssh.h"

struct distc__tunnel {
  distc__tunnel *next;
  ssh_channel ch;
  int fd; /* our connection to the master's listener */
  char to_fd[DISTC__SSH_TUNNEL_BUF];
  size_t n_to_fd;
  char to_ch[DISTC__SSH_TUNNEL_BUF];
  size_t n_to_ch;
  bool ch_eof, fd_eof, eof_sent, fd_shut;
};

typedef distc__tunnel tunnel_conn;

static void close_tunnel(tunnel_conn *t) {
  if (t->ch != NULL) {
    ssh_channel_close(t->ch);
    ssh_channel_free(t->ch);
  }
  if (t->fd >= 0)
    close(t->fd);
  free(t);
}

/* Moves bytes both ways between a forwarded channel and the master; reads
 * only as much as the other side can take (flow control).  Returns false
 * when the connection is finished. */
static bool pump_tunnel(tunnel_conn *t) {
  bool progress = true;
  while (progress) {
    progress = false;
    if (!t->ch_eof && t->n_to_fd < sizeof t->to_fd) {
      int r = ssh_channel_read_nonblocking(t->ch, t->to_fd + t->n_to_fd,
                                           (uint32_t)(sizeof t->to_fd -
                                                      t->n_to_fd),
                                           0);
      if (r > 0) {
        t->n_to_fd += (size_t)r;
        progress = true;
      } else if (r < 0 || ssh_channel_is_eof(t->ch)) {
        t->ch_eof = true;
      }
    }
    if (t->n_to_fd > 0) {
      ssize_t w = send(t->fd, t->to_fd, t->n_to_fd, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        memmove(t->to_fd, t->to_fd + w, t->n_to_fd - (size_t)w);
        t->n_to_fd -= (size_t)w;
        progress = true;
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
      }
    }
    if (t->ch_eof && t->n_to_fd == 0 && !t->fd_shut) {
      shutdown(t->fd, SHUT_WR);
      t->fd_shut = true;
    }
    if (!t->fd_eof && t->n_to_ch < sizeof t->to_ch) {
      ssize_t r = recv(t->fd, t->to_ch + t->n_to_ch,
                       sizeof t->to_ch - t->n_to_ch, MSG_DONTWAIT);
      if (r > 0) {
        t->n_to_ch += (size_t)r;
        progress = true;
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        t->fd_eof = true;
      }
    }
    if (t->n_to_ch > 0) {
      uint32_t win = ssh_channel_window_size(t->ch);
      if (win > 0) {
        uint32_t n = t->n_to_ch < win ? (uint32_t)t->n_to_ch : win;
        int w = ssh_channel_write(t->ch, t->to_ch, n);
        if (w < 0)
          return false;
        if (w > 0) {
          memmove(t->to_ch, t->to_ch + w, t->n_to_ch - (size_t)w);
          t->n_to_ch -= (size_t)w;
          progress = true;
        }
      }
    }
    if (t->fd_eof && t->n_to_ch == 0 && !t->eof_sent) {
      ssh_channel_send_eof(t->ch);
      t->eof_sent = true;
    }
  }
  if (ssh_channel_is_closed(t->ch))
    return false;
  return !(t->ch_eof && t->fd_eof && t->n_to_fd == 0 && t->n_to_ch == 0);
}

/* A new connection to the master for a forwarded channel. */
static int dial_master(const ssh_state *s) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                  *res;
  if (getaddrinfo(s->master_host, s->master_port, &hints, &res) != 0)
    return -1;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
}

bool distc__ssh_tunnels_service(const ssh_state *s, ssh_host *h) {
  bool busy = false;
  ssh_channel ch;
  int dport;
  while ((ch = ssh_channel_open_forward_port(h->s, 0, &dport, NULL, NULL)) !=
         NULL) {
    tunnel_conn *t = calloc(1, sizeof *t);
    int fd = t ? dial_master(s) : -1;
    if (fd < 0) {
      free(t);
      ssh_channel_close(ch);
      ssh_channel_free(ch);
      continue;
    }
    t->ch = ch;
    t->fd = fd;
    t->next = h->tunnels;
    h->tunnels = t;
  }
  for (tunnel_conn **pt = &h->tunnels; *pt;) {
    tunnel_conn *t = *pt;
    if (!pump_tunnel(t)) {
      *pt = t->next;
      close_tunnel(t);
      continue;
    }
    busy |= t->n_to_ch > 0;
    pt = &t->next;
  }
  return busy;
}

size_t distc__ssh_tunnels_count(const ssh_host *h) {
  size_t n = 0;
  for (const tunnel_conn *t = h->tunnels; t; t = t->next)
    n++;
  return n;
}

size_t distc__ssh_tunnels_poll(const ssh_host *h, struct pollfd *fds) {
  size_t n = 0;
  for (const tunnel_conn *t = h->tunnels; t; t = t->next) {
    short ev = 0;
    if (!t->fd_eof && t->n_to_ch < sizeof t->to_ch)
      ev |= POLLIN;
    if (t->n_to_fd > 0)
      ev |= POLLOUT;
    fds[n++] = (struct pollfd){t->fd, ev, 0};
  }
  return n;
}

void distc__ssh_tunnels_close(ssh_host *h) {
  while (h->tunnels) {
    tunnel_conn *t = h->tunnels;
    h->tunnels = t->next;
    close_tunnel(t);
  }
}

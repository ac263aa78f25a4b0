/* slurm_api.c — fills the libslurm table of slurm_api.h on first use. */
#define DISTC_SLURM_API_IMPL
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "slurm_api.h"

/* The file name of the library slurm.h belongs to, found by meson (its
 * SONAME); "libslurm.so" is the development link of the same package. */
#ifndef DISTC_LIBSLURM_SONAME
#define DISTC_LIBSLURM_SONAME "libslurm.so"
#endif

/* Where libslurm looks when SLURM_CONF is unset (Debian's and SLURM's
 * default build). */
#define DEFAULT_SLURM_CONF "/etc/slurm/slurm.conf"

distc__slurm_api distc__slurm;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc;
static char load_msg[512]; /* the first failure's detail, said again */

static void load(void) {
  const char *names[] = {DISTC_LIBSLURM_SONAME, "libslurm.so"};
  void *h = NULL;
  /* RTLD_GLOBAL: the plugins libslurm dlopens itself (auth_munge,
   * hash_k12) resolve slurm_conf and friends against it, and a lookup that
   * fails later ends the process. */
  for (size_t i = 0; i < DISTC__ARRAY_LEN(names) && !h; i++)
    h = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    load_rc = distc__seterr(DISTC_ENOTSUP,
                            "the slurm manager needs libslurm (%s): install "
                            "the SLURM client libraries (Debian: libslurm38 "
                            "or libslurm-dev) (%s)",
                            DISTC_LIBSLURM_SONAME, dlerror());
    return;
  }
#define DISTC__SLURM_LOAD(name)                                               \
  if (!(distc__slurm.name = (__typeof__(name) *)dlsym(h, #name))) {           \
    load_rc = distc__seterr(DISTC_ENOTSUP, "%s lacks %s: install the "        \
                            "libslurm of SLURM %d.%02d", DISTC_LIBSLURM_SONAME, \
                            #name, SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER),   \
                            SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER));         \
    return;                                                                   \
  }
  DISTC_SLURM_FUNCS(DISTC__SLURM_LOAD)
#undef DISTC__SLURM_LOAD
  /* Structures such as job_desc_msg_t change between releases, and so does
   * the API number libslurm reports (its SONAME's: 38 for 22.05).  A library
   * other than the one slurm.h came with, found through the plain
   * "libslurm.so" name, would be misread. */
  const char *num = strrchr(DISTC_LIBSLURM_SONAME, '.');
  long want = num ? strtol(num + 1, NULL, 10) : 0;
  long v = distc__slurm.slurm_api_version();
  if (want > 0 && SLURM_VERSION_MAJOR(v) != want)
    load_rc = distc__seterr(DISTC_ENOTSUP,
                            "the libslurm found has API %ld, but distc was "
                            "built against SLURM %d.%02d's (%s): rebuild "
                            "distc on this machine",
                            (long)SLURM_VERSION_MAJOR(v),
                            SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER),
                            SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER),
                            DISTC_LIBSLURM_SONAME);
}

static void load_once(void) {
  load();
  if (load_rc)
    snprintf(load_msg, sizeof load_msg, "%s", distc_errmsg());
}

int distc__slurm_load(void) {
  pthread_once(&once, load_once);
  /* The message was set in whichever thread loaded first; say it again. */
  if (load_rc)
    return distc__seterr(load_rc, "%s", load_msg);
  return 0;
}

int distc__slurm_conf_check(void) {
  const char *conf = getenv("SLURM_CONF");
  if (conf && *conf) {
    if (access(conf, R_OK) != 0)
      return distc__seterr(DISTC_ENOTSUP,
                           "SLURM_CONF names '%s', which cannot be read: set "
                           "SLURM_CONF to this cluster's slurm.conf",
                           conf);
    return 0;
  }
  if (access(DEFAULT_SLURM_CONF, R_OK) != 0)
    return distc__seterr(DISTC_ENOTSUP,
                         "no SLURM configuration: neither SLURM_CONF nor %s "
                         "(run on a node of the cluster, or set SLURM_CONF "
                         "to its slurm.conf)",
                         DEFAULT_SLURM_CONF);
  return 0;
}

bool distc__slurm_hostname_ok(const char *name) {
  if (!name || !*name)
    return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
      return false;
  return true;
}

/* SlurmctldHost's address ("ctl(10.0.0.2)" gives 10.0.0.2, "ctl" ctl) and
 * SlurmctldPort of the configuration file; false if it names none. */
static bool ctl_address(char *host, size_t hcap, char *port, size_t pcap) {
  const char *conf = getenv("SLURM_CONF");
  FILE *f = fopen(conf && *conf ? conf : DEFAULT_SLURM_CONF, "r");
  if (f == NULL)
    return false;
  char line[1024];
  host[0] = '\0';
  snprintf(port, pcap, "6817");
  while (fgets(line, sizeof line, f)) {
    char *v;
    line[strcspn(line, "#\r\n")] = '\0';
    if (!host[0] && ((v = strstr(line, "SlurmctldHost=")) == line ||
                     (v = strstr(line, "ControlMachine=")) == line)) {
      v = strchr(v, '=') + 1;
      char *open = strchr(v, '(');
      if (open) {
        v = open + 1;
        v[strcspn(v, ")")] = '\0';
      }
      v[strcspn(v, " \t,")] = '\0';
      snprintf(host, hcap, "%s", v);
    } else if ((v = strstr(line, "SlurmctldPort=")) == line) {
      v += strlen("SlurmctldPort=");
      v[strcspn(v, "- \t")] = '\0';
      snprintf(port, pcap, "%.16s", v);
    }
  }
  fclose(f);
  return host[0] != '\0';
}

int distc__slurm_ctl_check(double timeout_s) {
  char host[256], port[32];
  if (!ctl_address(host, sizeof host, port, sizeof port))
    return 0; /* configless or unusual: let libslurm find it */
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  if (getaddrinfo(host, port, &hints, &res) != 0)
    return distc__seterr(DISTC_ETIMEDOUT,
                         "the SLURM controller's name %s does not resolve "
                         "here: check SlurmctldHost in the configuration",
                         host);
  bool ok = false;
  char why[128] = "no address";
  for (struct addrinfo *a = res; a && !ok; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    if (fd < 0)
      continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      struct pollfd pf = {fd, POLLOUT, 0};
      int err = 0;
      socklen_t el = sizeof err;
      if (poll(&pf, 1, (int)(timeout_s * 1000)) == 1 &&
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
        ok = true;
      else
        snprintf(why, sizeof why, "%s", err ? strerror(err) : "no answer");
    } else {
      snprintf(why, sizeof why, "%s", strerror(errno));
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (!ok)
    return distc__seterr(DISTC_ETIMEDOUT,
                         "the SLURM controller at %s port %s does not answer "
                         "(%s) within %g s: is slurmctld running? (scontrol "
                         "ping)",
                         host, port, why, timeout_s);
  return 0;
}

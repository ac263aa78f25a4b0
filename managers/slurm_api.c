/* slurm_api.c — fills the libslurm table of slurm_api.h on first use. */
#define DISTC_SLURM_API_IMPL
#include <dlfcn.h>
#include <pthread.h>
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

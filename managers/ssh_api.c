/* ssh_api.c — fills the libssh table of ssh_api.h on first use. */
#define DISTC_SSH_API_IMPL
#include <dlfcn.h>
#include <pthread.h>

#include "common.h"
#include "ssh_api.h"

distc__ssh_api distc__ssh;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc;

static void load(void) {
  void *h = dlopen("libssh.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    load_rc = distc__seterr(DISTC_ENOTSUP,
                            "the ssh manager needs libssh (libssh.so.4): "
                            "install libssh-4 (%s)", dlerror());
    return;
  }
#define DISTC__SSH_LOAD(name)                                                 \
  if (!(distc__ssh.name = (__typeof__(name) *)dlsym(h, #name))) {             \
    load_rc = distc__seterr(DISTC_ENOTSUP, "libssh.so.4 lacks %s: install "   \
                            "libssh 0.9 or newer", #name);                    \
    return;                                                                   \
  }
  DISTC_SSH_FUNCS(DISTC__SSH_LOAD)
#undef DISTC__SSH_LOAD
}

int distc__ssh_load(void) {
  pthread_once(&once, load);
  /* The message was set in whichever thread loaded first; say it again. */
  if (load_rc)
    return distc__seterr(load_rc, "the ssh manager cannot load libssh.so.4: "
                                  "install libssh-4 (0.9 or newer)");
  return 0;
}

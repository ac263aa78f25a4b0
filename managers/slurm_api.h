/* slurm_api.h — libslurm, loaded only when the slurm manager needs it.
 *
 * libdistc is linked into every worker; linking libslurm there would map it
 * (and its munge, plugin and hash dependencies) into each one for a manager
 * only the launcher, or an addprocs inside an allocation, ever runs.  So
 * slurm*.c call libslurm through this table, filled by dlopen on first use;
 * the names below redirect their calls.
 *
 * libslurm has pitfalls a library user must keep away from the user's
 * program (seen on 22.05, tests/slurm/testbed.sh's cluster):
 *  - slurm_init() exit(1)s when it finds no configuration (at once without
 *    SLURM_CONF and /etc/slurm/slurm.conf; after 59 s of retries when
 *    SLURM_CONF names a missing file): call distc__slurm_conf_check first.
 *  - calls that reach the controller block 18-39 s when it is down: bound
 *    them (distc__slurm_ctl_reachable) before making them.
 *  - slurm_hostlist_create("b[") is not an error (it gives the host "b]"):
 *    check every name it gives back (distc__slurm_hostname_ok).
 *  - it logs to stderr on its own, prefixed with the program's name.
 * The hostlist calls need no slurm_init and no configuration. */
#ifndef DISTC_SLURM_API_H
#define DISTC_SLURM_API_H

#include <slurm/slurm.h>
#include <stdbool.h>

/* Exported by libslurm but not declared in slurm.h (22.05). */
extern char *slurm_job_reason_string(enum job_state_reason inx);

#define DISTC_SLURM_FUNCS(X)                                                  \
  X(slurm_api_version) X(slurm_hostlist_create) X(slurm_hostlist_shift)       \
  X(slurm_hostlist_count) X(slurm_hostlist_destroy) X(slurm_init)             \
  X(slurm_fini) X(slurm_load_job) X(slurm_free_job_info_msg)                  \
  X(slurm_init_job_desc_msg) X(slurm_allocate_resources_blocking)             \
  X(slurm_free_resource_allocation_response_msg) X(slurm_complete_job)        \
  X(slurm_kill_job) X(slurm_get_errno) X(slurm_strerror)                      \
  X(slurm_load_node_single) X(slurm_free_node_info_msg)                       \
  X(slurm_allocate_resources) X(slurm_job_reason_string)

typedef struct distc__slurm_api {
#define DISTC__SLURM_SLOT(name) __typeof__(name) *name;
  DISTC_SLURM_FUNCS(DISTC__SLURM_SLOT)
#undef DISTC__SLURM_SLOT
} distc__slurm_api;

extern distc__slurm_api distc__slurm;

/* Loads libslurm once and checks that it is the release whose slurm.h this
 * was built against (its structures change between releases); 0, or
 * DISTC_ENOTSUP with a message saying what to install. */
int distc__slurm_load(void);

/* 0 when libslurm will find a configuration file (SLURM_CONF, else
 * /etc/slurm/slurm.conf) it can read, so that slurm_init cannot exit the
 * process; else DISTC_ENOTSUP naming the file and what to do. */
int distc__slurm_conf_check(void);

/* 0 when the controller of the configuration (SlurmctldHost, SlurmctldPort
 * of slurm.conf) accepts a TCP connection within timeout_s; else
 * DISTC_ETIMEDOUT saying which address did not answer.  libslurm itself
 * would block 18-39 s on each call before saying so. */
int distc__slurm_ctl_check(double timeout_s);

/* Whether a host name libslurm's hostlist gave back is one (letters,
 * digits, '-', '_', '.'; no brackets, commas or blanks; not empty). */
bool distc__slurm_hostname_ok(const char *name);

#ifndef DISTC_SLURM_API_IMPL
#define slurm_api_version distc__slurm.slurm_api_version
#define slurm_hostlist_create distc__slurm.slurm_hostlist_create
#define slurm_hostlist_shift distc__slurm.slurm_hostlist_shift
#define slurm_hostlist_count distc__slurm.slurm_hostlist_count
#define slurm_hostlist_destroy distc__slurm.slurm_hostlist_destroy
#define slurm_init distc__slurm.slurm_init
#define slurm_fini distc__slurm.slurm_fini
#define slurm_load_job distc__slurm.slurm_load_job
#define slurm_free_job_info_msg distc__slurm.slurm_free_job_info_msg
#define slurm_init_job_desc_msg distc__slurm.slurm_init_job_desc_msg
#define slurm_allocate_resources_blocking                                     \
  distc__slurm.slurm_allocate_resources_blocking
#define slurm_free_resource_allocation_response_msg                          \
  distc__slurm.slurm_free_resource_allocation_response_msg
#define slurm_complete_job distc__slurm.slurm_complete_job
#define slurm_kill_job distc__slurm.slurm_kill_job
#define slurm_get_errno distc__slurm.slurm_get_errno
#define slurm_strerror distc__slurm.slurm_strerror
#define slurm_load_node_single distc__slurm.slurm_load_node_single
#define slurm_free_node_info_msg distc__slurm.slurm_free_node_info_msg
#define slurm_allocate_resources distc__slurm.slurm_allocate_resources
#define slurm_job_reason_string distc__slurm.slurm_job_reason_string
#endif

#endif

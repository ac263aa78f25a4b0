/* ssh_api.h — libssh, loaded only when the ssh manager is used.
 *
 * libdistc is linked into every worker.  Linking libssh there would map
 * libssh, libcrypto and Kerberos into each one (an idle worker's resident
 * memory went from 2.3 to 4.9 MiB), for a manager only the launcher or an
 * addprocs over SSH ever runs.  So ssh.c calls libssh through this table,
 * filled by dlopen on first use; the names below redirect its calls. */
#ifndef DISTC_SSH_API_H
#define DISTC_SSH_API_H

#include <libssh/libssh.h>

#define DISTC_SSH_FUNCS(X)                                                    \
  X(ssh_channel_close) X(ssh_channel_free) X(ssh_channel_get_exit_status)    \
  X(ssh_channel_is_closed) X(ssh_channel_is_eof)                              \
  X(ssh_channel_listen_forward) X(ssh_channel_new)                            \
  X(ssh_channel_open_forward_port) X(ssh_channel_open_session)                \
  X(ssh_channel_read_nonblocking) X(ssh_channel_read_timeout)                 \
  X(ssh_channel_request_exec) X(ssh_channel_send_eof)                         \
  X(ssh_channel_window_size) X(ssh_channel_write) X(ssh_clean_pubkey_hash)    \
  X(ssh_connect) X(ssh_disconnect) X(ssh_free) X(ssh_get_error)               \
  X(ssh_get_fd) X(ssh_get_fingerprint_hash) X(ssh_get_poll_flags)             \
  X(ssh_get_publickey_hash) X(ssh_get_server_publickey) X(ssh_get_status)     \
  X(ssh_key_free) X(ssh_new) X(ssh_options_get) X(ssh_options_get_port)       \
  X(ssh_options_parse_config) X(ssh_options_set)                              \
  X(ssh_pki_import_privkey_file) X(ssh_session_is_known_server)               \
  X(ssh_session_update_known_hosts) X(ssh_set_blocking)                       \
  X(ssh_string_free_char) X(ssh_userauth_publickey)                           \
  X(ssh_userauth_publickey_auto)

typedef struct distc__ssh_api {
#define DISTC__SSH_SLOT(name) __typeof__(name) *name;
  DISTC_SSH_FUNCS(DISTC__SSH_SLOT)
#undef DISTC__SSH_SLOT
} distc__ssh_api;

extern distc__ssh_api distc__ssh;

/* Loads libssh once; 0, or DISTC_ENOTSUP with a message saying what to
 * install. */
int distc__ssh_load(void);

#ifndef DISTC_SSH_API_IMPL
#define ssh_channel_close distc__ssh.ssh_channel_close
#define ssh_channel_free distc__ssh.ssh_channel_free
#define ssh_channel_get_exit_status distc__ssh.ssh_channel_get_exit_status
#define ssh_channel_is_closed distc__ssh.ssh_channel_is_closed
#define ssh_channel_is_eof distc__ssh.ssh_channel_is_eof
#define ssh_channel_listen_forward distc__ssh.ssh_channel_listen_forward
#define ssh_channel_new distc__ssh.ssh_channel_new
#define ssh_channel_open_forward_port distc__ssh.ssh_channel_open_forward_port
#define ssh_channel_open_session distc__ssh.ssh_channel_open_session
#define ssh_channel_read_nonblocking distc__ssh.ssh_channel_read_nonblocking
#define ssh_channel_read_timeout distc__ssh.ssh_channel_read_timeout
#define ssh_channel_request_exec distc__ssh.ssh_channel_request_exec
#define ssh_channel_send_eof distc__ssh.ssh_channel_send_eof
#define ssh_channel_window_size distc__ssh.ssh_channel_window_size
#define ssh_channel_write distc__ssh.ssh_channel_write
#define ssh_clean_pubkey_hash distc__ssh.ssh_clean_pubkey_hash
#define ssh_connect distc__ssh.ssh_connect
#define ssh_disconnect distc__ssh.ssh_disconnect
#define ssh_free distc__ssh.ssh_free
#define ssh_get_error distc__ssh.ssh_get_error
#define ssh_get_fd distc__ssh.ssh_get_fd
#define ssh_get_fingerprint_hash distc__ssh.ssh_get_fingerprint_hash
#define ssh_get_poll_flags distc__ssh.ssh_get_poll_flags
#define ssh_get_publickey_hash distc__ssh.ssh_get_publickey_hash
#define ssh_get_server_publickey distc__ssh.ssh_get_server_publickey
#define ssh_get_status distc__ssh.ssh_get_status
#define ssh_key_free distc__ssh.ssh_key_free
#define ssh_new distc__ssh.ssh_new
#define ssh_options_get distc__ssh.ssh_options_get
#define ssh_options_get_port distc__ssh.ssh_options_get_port
#define ssh_options_parse_config distc__ssh.ssh_options_parse_config
#define ssh_options_set distc__ssh.ssh_options_set
#define ssh_pki_import_privkey_file distc__ssh.ssh_pki_import_privkey_file
#define ssh_session_is_known_server distc__ssh.ssh_session_is_known_server
#define ssh_session_update_known_hosts distc__ssh.ssh_session_update_known_hosts
#define ssh_set_blocking distc__ssh.ssh_set_blocking
#define ssh_string_free_char distc__ssh.ssh_string_free_char
#define ssh_userauth_publickey distc__ssh.ssh_userauth_publickey
#define ssh_userauth_publickey_auto distc__ssh.ssh_userauth_publickey_auto
#endif

#endif

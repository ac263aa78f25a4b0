/* hostspec.c — parsing --hosts lists and host files (grammar in hostspec.h).
 *
 * Strict on purpose: a typo in a host list must not quietly start the wrong
 * number of workers somewhere, so anything outside the grammar is an error
 * that quotes the entry and shows what is allowed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "hostspec.h"

#define MAX_NAME 253 /* a DNS name */
#define MAX_USER 64
#define FORMS "write host, host:N, host:auto, user@host:N or user@host:PORT:N"

static bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9');
}

static bool valid_name(const char *s, size_t n) {
  if (n == 0 || n > MAX_NAME || !is_alnum(s[0]))
    return false;
  for (size_t i = 0; i < n; i++)
    if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
      return false;
  return true;
}

static bool valid_ipv6(const char *s, size_t n) {
  if (n < 2 || n > 45)
    return false;
  bool colon = false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == ':')
      colon = true;
    else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
               (c >= 'A' && c <= 'F') || c == '.'))
      return false;
  }
  return colon;
}

/* POSIX portable user names: letters, digits, '.', '_', '-', not starting
 * with '-'. */
static bool valid_user(const char *s, size_t n) {
  if (n == 0 || n > MAX_USER || s[0] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
      return false;
  return true;
}

/* A decimal in [lo, hi], digits only (no sign, no spaces); -1 if not. */
static long parse_dec(const char *s, size_t n, long lo, long hi) {
  if (n == 0 || n > 9)
    return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v >= lo && v <= hi ? v : -1;
}

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static void host_clear(distc_host *h) {
  free(h->name);
  free(h->user);
  free(h->dir);
  free(h->exename);
  memset(h, 0, sizeof *h);
}

static int bad(const char *where, const char *entry, const char *why) {
  return distc__seterr(DISTC_EINVAL, "%s '%s' is not a valid host: %s; %s",
                       where, entry, why, FORMS);
}

/* One entry of either form.  julia: `N*` was already taken off, and a
 * colon gives the port (Julia's meaning). */
static int parse_entry(const char *where, const char *shown, const char *s,
                       bool julia, distc_host *h, bool *count_given) {
  const char *start = s;
  memset(h, 0, sizeof *h);
  h->slots = 1;
  *count_given = false;
  if (s[0] == '\0')
    return bad(where, shown, "it is empty");

  const char *at = strchr(s, '@');
  if (at != NULL) {
    if (strchr(at + 1, '@') != NULL)
      return bad(where, shown, "it has more than one '@'");
    if (!valid_user(s, (size_t)(at - s)))
      return bad(where, shown,
                 "the user name before '@' is empty or has characters other "
                 "than letters, digits, '.', '_' and '-'");
    s = at + 1;
  }

  const char *host = s, *rest;
  size_t hlen;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL)
      return bad(where, shown, "'[' without ']' around an IPv6 address");
    host = s + 1;
    hlen = (size_t)(close - host);
    if (!valid_ipv6(host, hlen))
      return bad(where, shown, "the text in [ ] is not an IPv6 address");
    rest = close + 1;
    if (*rest != '\0' && *rest != ':')
      return bad(where, shown, "only ':' may follow ']'");
  } else {
    rest = strchrnul(s, ':');
    hlen = (size_t)(rest - s);
    if (hlen == 0)
      return bad(where, shown, "the host name is empty");
    if (!valid_name(host, hlen))
      return bad(where, shown,
                 "a host name has only letters, digits, '-', '.' and '_' "
                 "and starts with a letter or digit (IPv6: [addr])");
  }

  /* Up to two ":"-separated fields after the host. */
  const char *f[2] = {NULL, NULL};
  size_t flen[2] = {0, 0};
  int nf = 0;
  while (*rest == ':') {
    if (nf == 2)
      return bad(where, shown, "it has more than two ':' fields after the host");
    const char *start = rest + 1;
    const char *end = strchrnul(start, ':');
    f[nf] = start;
    flen[nf] = (size_t)(end - start);
    nf++;
    rest = end;
  }

  const char *count = NULL, *port = NULL;
  size_t clen = 0, plen = 0;
  if (julia) {
    if (nf == 2)
      return bad(where, shown,
                 "in the N*host form a colon gives the SSH port, once");
    if (nf == 1) {
      port = f[0];
      plen = flen[0];
    }
  } else if (nf == 1) {
    count = f[0];
    clen = flen[0];
  } else if (nf == 2) {
    port = f[0];
    plen = flen[0];
    count = f[1];
    clen = flen[1];
  }

  if (port != NULL) {
    long p = parse_dec(port, plen, 1, 65535);
    if (p < 0)
      return bad(where, shown, "the SSH port must be a number 1..65535");
    h->port = (int)p;
  }
  if (count != NULL) {
    if (clen == 4 && strncmp(count, "auto", 4) == 0) {
      h->slots = DISTC_SLOTS_AUTO;
    } else {
      long c = parse_dec(count, clen, 1, DISTC_HOST_MAX_SLOTS);
      if (c < 0) {
        char why[128];
        snprintf(why, sizeof why,
                 "the worker count must be a number 1..%d or 'auto'",
                 DISTC_HOST_MAX_SLOTS);
        return bad(where, shown, why);
      }
      h->slots = (int)c;
    }
    *count_given = true;
  }

  h->name = dup_n(host, hlen);
  if (at != NULL)
    h->user = dup_n(start, (size_t)(at - start));
  if (h->name == NULL || (at != NULL && h->user == NULL))
    goto nomem;
  return 0;

nomem:
  host_clear(h);
  return distc__seterr(DISTC_ENOMEM, "out of memory reading the hosts");
}

int distc__host_parse(const char *entry, distc_host *h) {
  bool count_given;
  return parse_entry("--hosts entry", entry, entry, false, h, &count_given);
}

const char *distc__host_label(const distc_host *h, char *buf, size_t len) {
  bool v6 = strchr(h->name, ':') != NULL;
  int n = snprintf(buf, len, "%s%s%s%s%s", h->user ? h->user : "",
                   h->user ? "@" : "", v6 ? "[" : "", h->name, v6 ? "]" : "");
  if (h->port > 0 && n >= 0 && (size_t)n < len)
    snprintf(buf + n, len - (size_t)n, ":%d", h->port);
  return buf;
}

static bool same_str(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

/* Appends h (taking over its fields) to the array, or adds its workers to
 * the same user@host:port already there. */
static int add_host(const char *where, distc_host *h, distc_host **hosts,
                    int *n) {
  char label[512];
  for (int i = 0; i < *n; i++) {
    distc_host *o = &(*hosts)[i];
    if (!same_str(o->name, h->name) || !same_str(o->user, h->user) ||
        o->port != h->port)
      continue;
    distc__host_label(h, label, sizeof label);
    int rc = 0;
    if (o->slots == DISTC_SLOTS_AUTO || h->slots == DISTC_SLOTS_AUTO)
      rc = distc__seterr(DISTC_EINVAL,
                         "%s: %s is listed twice and one of them is 'auto'; "
                         "list it once, with auto or with a number",
                         where, label);
    else if (!same_str(o->dir, h->dir) || !same_str(o->exename, h->exename))
      rc = distc__seterr(DISTC_EINVAL,
                         "%s: %s is listed twice with different dir= or "
                         "exename=; list it once",
                         where, label);
    else if (o->slots + h->slots > DISTC_HOST_MAX_SLOTS)
      rc = distc__seterr(DISTC_EINVAL,
                         "%s: %s is listed with more than %d workers in all",
                         where, label, DISTC_HOST_MAX_SLOTS);
    if (rc == 0)
      o->slots += h->slots;
    host_clear(h);
    return rc;
  }
  distc_host *grown = realloc(*hosts, (size_t)(*n + 1) * sizeof *grown);
  if (grown == NULL) {
    host_clear(h);
    return distc__seterr(DISTC_ENOMEM, "out of memory reading the hosts");
  }
  *hosts = grown;
  grown[(*n)++] = *h;
  memset(h, 0, sizeof *h);
  return 0;
}

int distc__hosts_parse_list(const char *list, distc_host **hosts, int *n) {
  int rc = 0;
  const char *p = list;
  if (list[0] == '\0')
    return distc__seterr(DISTC_EINVAL,
                         "--hosts is empty; give hosts like node1:2,node2:4");
  for (;;) {
    const char *end = strchrnul(p, ',');
    char *entry = dup_n(p, (size_t)(end - p));
    if (entry == NULL)
      return distc__seterr(DISTC_ENOMEM, "out of memory reading the hosts");
    distc_host h;
    bool count_given;
    if (entry[0] == '\0')
      rc = distc__seterr(DISTC_EINVAL,
                         "--hosts '%s' has an empty entry (two commas, or a "
                         "comma at an end); separate hosts by single commas",
                         list);
    else
      rc = parse_entry("--hosts entry", entry, entry, false, &h,
                       &count_given);
    free(entry);
    if (rc == 0)
      rc = add_host("--hosts", &h, hosts, n);
    if (rc != 0 || *end == '\0')
      return rc;
    p = end + 1;
  }
}

/* ---- host files ---- */

/* Splits line into words at blanks; a word may hold "double quoted" text
 * (the quotes are removed, nothing is escaped).  '#' outside quotes ends
 * the line.  Returns the number of words (at most max) or -1 on an
 * unclosed quote or too many words.  Words point into line. */
static int split_words(char *line, char **words, int max) {
  int n = 0;
  char *r = line, *w = line;
  for (;;) {
    while (*r == ' ' || *r == '\t' || *r == '\r' || *r == '\n')
      r++;
    if (*r == '\0' || *r == '#')
      return n;
    if (n == max)
      return -1;
    words[n++] = w;
    while (*r != '\0' && *r != ' ' && *r != '\t' && *r != '\r' &&
           *r != '\n' && *r != '#') {
      if (*r == '"') {
        r++;
        while (*r != '\0' && *r != '"')
          *w++ = *r++;
        if (*r != '"')
          return -1;
        r++;
        continue;
      }
      *w++ = *r++;
    }
    bool end = *r == '\0' || *r == '#';
    if (!end)
      r++;
    *w++ = '\0';
    if (end) {
      if (*r == '#')
        *r = '\0';
      return n;
    }
  }
}

static int parse_line(const char *where, char *line, distc_host **hosts,
                      int *n) {
  char *w[8];
  char shown[1024];
  snprintf(shown, sizeof shown, "%s", line);
  size_t sl = strlen(shown);
  while (sl > 0 && (shown[sl - 1] == '\n' || shown[sl - 1] == '\r'))
    shown[--sl] = '\0';

  int nw = split_words(line, w, (int)DISTC__ARRAY_LEN(w));
  if (nw < 0)
    return distc__seterr(DISTC_EINVAL,
                         "%s: '%s' has an unclosed '\"' or too many words; "
                         "write HOST [slots=N] [dir=PATH] [exename=PATH]",
                         where, shown);
  if (nw == 0)
    return 0;

  /* Julia's N*host. */
  const char *entry = w[0];
  bool julia = false;
  long jcount = 0;
  const char *star = strchr(entry, '*');
  if (star != NULL) {
    jcount = parse_dec(entry, (size_t)(star - entry), 1, DISTC_HOST_MAX_SLOTS);
    if (jcount < 0)
      return distc__seterr(DISTC_EINVAL,
                           "%s: '%s': the N in N*host must be a number "
                           "1..%d",
                           where, shown, DISTC_HOST_MAX_SLOTS);
    entry = star + 1;
    julia = true;
  }

  distc_host h;
  bool count_given;
  char ewhere[600];
  snprintf(ewhere, sizeof ewhere, "%s:", where);
  int rc = parse_entry(ewhere, shown, entry, julia, &h, &count_given);
  if (rc != 0)
    return rc;
  if (julia) {
    h.slots = (int)jcount;
    count_given = true;
  }

  for (int i = 1; i < nw; i++) {
    char *eq = strchr(w[i], '=');
    if (eq == NULL) {
      rc = distc__seterr(DISTC_EINVAL,
                         "%s: '%s': unexpected '%s' (a second address, as "
                         "Julia's bind address, is not supported); write "
                         "HOST [slots=N] [dir=PATH] [exename=PATH]",
                         where, shown, w[i]);
      goto fail;
    }
    *eq = '\0';
    const char *key = w[i], *val = eq + 1;
    char **field = NULL;
    if (strcmp(key, "slots") == 0) {
      long s = parse_dec(val, strlen(val), 1, DISTC_HOST_MAX_SLOTS);
      if (s < 0 && strcmp(val, "auto") != 0) {
        rc = distc__seterr(DISTC_EINVAL,
                           "%s: '%s': slots must be a number 1..%d or auto",
                           where, shown, DISTC_HOST_MAX_SLOTS);
        goto fail;
      }
      if (count_given) {
        rc = distc__seterr(DISTC_EINVAL,
                           "%s: '%s' gives the worker count twice; use "
                           "either slots=N or the count in the entry",
                           where, shown);
        goto fail;
      }
      h.slots = s < 0 ? DISTC_SLOTS_AUTO : (int)s;
      count_given = true;
      continue;
    }
    if (strcmp(key, "dir") == 0)
      field = &h.dir;
    else if (strcmp(key, "exename") == 0)
      field = &h.exename;
    if (field == NULL) {
      rc = distc__seterr(DISTC_EINVAL,
                         "%s: '%s': unknown setting '%s'; the settings are "
                         "slots=N, dir=PATH and exename=PATH",
                         where, shown, key);
      goto fail;
    }
    if (val[0] == '\0' || *field != NULL) {
      rc = distc__seterr(DISTC_EINVAL, "%s: '%s': %s= is %s", where, shown,
                         key, val[0] ? "given twice" : "empty");
      goto fail;
    }
    if (strchr(val, '\n') != NULL || strchr(val, '\'') != NULL) {
      rc = distc__seterr(DISTC_EINVAL,
                         "%s: '%s': %s= may not contain a quote (')", where,
                         shown, key);
      goto fail;
    }
    *field = strdup(val);
    if (*field == NULL) {
      rc = distc__seterr(DISTC_ENOMEM, "out of memory reading the hosts");
      goto fail;
    }
  }
  return add_host(where, &h, hosts, n);

fail:
  host_clear(&h);
  return rc;
}

/* A host file is a short list; anything bigger is not one. */
#define HOSTFILE_MAX ((size_t)1 << 20)

/* Reads a whole host file into *buf (NUL-terminated).  Only a regular file
 * is read, and at most HOSTFILE_MAX bytes of it: /dev/zero or a FIFO nobody
 * writes to must not hang the launcher.  Every failure is DISTC_EINVAL, the
 * usage error a missing file gives too. */
static int read_hostfile(const char *path, char **buf, size_t *len) {
  int rc = 0;
  /* O_NONBLOCK: opening a FIFO would otherwise wait for a writer. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    return distc__seterr(DISTC_EINVAL, "--hostfile %s: %s; give a readable "
                                       "file with one host per line",
                         path, strerror(errno));
  struct stat st = {0};
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    rc = distc__seterr(DISTC_EINVAL,
                       "--hostfile %s: %s; give a regular file with one host "
                       "per line",
                       path,
                       S_ISDIR(st.st_mode)    ? "is a directory"
                       : S_ISFIFO(st.st_mode) ? "is a FIFO, not a regular file"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)
                           ? "is a device, not a regular file"
                           : "is not a regular file");
    goto close_fd;
  }
  /* Room for what fstat says and one byte more, to see it has not grown;
   * if it has, room up to the limit. */
  size_t cap = (uint64_t)st.st_size < HOSTFILE_MAX ? (size_t)st.st_size + 2
                                                   : HOSTFILE_MAX + 2;
  *buf = malloc(cap);
  if (!*buf) {
    rc = distc__seterr(DISTC_ENOMEM, "out of memory reading the hosts");
    goto close_fd;
  }
  size_t have = 0;
  for (;;) {
    if (have == cap - 1 && cap < HOSTFILE_MAX + 2) {
      char *more = realloc(*buf, HOSTFILE_MAX + 2);
      if (!more) {
        rc = distc__seterr(DISTC_ENOMEM, "out of memory reading the hosts");
        break;
      }
      *buf = more;
      cap = HOSTFILE_MAX + 2;
    }
    ssize_t r = read(fd, *buf + have, cap - 1 - have);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = distc__seterr(DISTC_EIO, "--hostfile %s: read error: %s", path,
                         strerror(errno));
      break;
    }
    if (r == 0)
      break;
    have += (size_t)r;
    if (have > HOSTFILE_MAX) {
      rc = distc__seterr(DISTC_EINVAL,
                         "--hostfile %s: larger than %zu bytes, too large for "
                         "a host list; give a file with one host per line",
                         path, HOSTFILE_MAX);
      break;
    }
  }
  if (rc < 0) {
    free(*buf);
    *buf = NULL;
  } else {
    (*buf)[have] = '\0';
    *len = have;
  }
close_fd:
  close(fd);
  return rc;
}

int distc__hosts_parse_file(const char *path, distc_host **hosts, int *n) {
  char *text = NULL;
  size_t len = 0;
  int rc = read_hostfile(path, &text, &len);
  if (rc < 0)
    return rc;
  int lineno = 0, before = *n;
  for (size_t off = 0; rc == 0 && off < len;) {
    char *line = text + off, *nl = memchr(line, '\n', len - off);
    size_t k = nl ? (size_t)(nl - line) : len - off;
    line[k] = '\0'; /* the newline, or the buffer's terminator */
    off += k + 1;
    char where[512];
    snprintf(where, sizeof where, "%s:%d", path, ++lineno);
    rc = parse_line(where, line, hosts, n);
  }
  if (rc == 0 && *n == before)
    rc = distc__seterr(DISTC_EINVAL,
                       "--hostfile %s: lists no host; write one host per "
                       "line, e.g. node1 slots=4",
                       path);
  free(text);
  return rc;
}

/* gate.c — the master's door under pressure: how many connections may be
 * in the handshake at once, which to drop when more arrive, and one
 * summary line for dropped connections instead of a line each.
 *
 * Anyone who can reach the listening sockets can open connections; before
 * the handshake proves the secret each costs us a descriptor and a timer.
 * So unauthenticated connections are capped (a quarter of the descriptor
 * limit, at most DISTC__GATE_MAX): at the cap the oldest is dropped for a
 * new one, but only once it has had DISTC__GATE_MIN_AGE_MS to answer, so a
 * real worker in a flood still gets its turn; until then accepting pauses
 * and the rest wait in the kernel's backlog. */
#include <stdlib.h>
#include <sys/resource.h>

#include "internal.h"

#define DISTC__GATE_MAX 128
#define REPORT_EVERY_NS 10e9

static distc__gate_entry *head, *tail; /* oldest first */
static int count, cap;
static unsigned long drops[DISTC__DROP_KINDS];
static double last_report;

static const char *const kind_text[DISTC__DROP_KINDS] = {
    [DISTC__DROP_AUTH] = "failed authentication (wrong secret or not a "
                         "distc worker)",
    [DISTC__DROP_SLOW] = "too slow to authenticate",
    [DISTC__DROP_EVICTED] = "dropped for newer ones (more than %d waited "
                            "at once)",
    [DISTC__DROP_MALFORMED] = "malformed",
};

int distc__gate_cap(void) {
  if (!cap) {
    struct rlimit rl;
    long n = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                 ? (long)rl.rlim_cur / 4
                 : DISTC__GATE_MAX;
    cap = n < 4 ? 4 : n > DISTC__GATE_MAX ? DISTC__GATE_MAX : (int)n;
  }
  return cap;
}

void distc__gate_add(distc__gate_entry *e, double now) {
  e->born = now;
  e->prev = tail;
  e->next = NULL;
  if (tail)
    tail->next = e;
  else
    head = e;
  tail = e;
  e->listed = true;
  count++;
}

void distc__gate_remove(distc__gate_entry *e) {
  if (!e->listed)
    return;
  if (e->prev)
    e->prev->next = e->next;
  else
    head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    tail = e->prev;
  e->listed = false;
  count--;
}

int distc__gate_room(double now, distc__gate_entry **evict) {
  *evict = NULL;
  if (count < distc__gate_cap())
    return 0;
  double age = now - head->born;
  if (age < DISTC__GATE_MIN_AGE_MS * 1e6)
    return (int)((DISTC__GATE_MIN_AGE_MS * 1e6 - age) / 1e6) + 1;
  *evict = head;
  return 0;
}

distc__gate_entry *distc__gate_oldest(void) { return head; }

static void report(double now) {
  char line[1024];
  int n = 0;
  unsigned long total = 0;
  for (int k = 0; k < DISTC__DROP_KINDS; k++) {
    if (!drops[k])
      continue;
    char what[128];
    snprintf(what, sizeof what, kind_text[k], cap);
    n += snprintf(line + n, sizeof line - (size_t)n, "%s%lu %s",
                  total ? "; " : "", drops[k], what);
    if (n >= (int)sizeof line)
      n = (int)sizeof line - 1;
    total += drops[k];
    drops[k] = 0;
  }
  last_report = now;
  if (total)
    distc__log(DISTC__LOG_WARN, "dropped %lu unauthenticated connection%s "
               "to the master: %s (at most one such line per 10 s)", total,
               total == 1 ? "" : "s", line);
}

void distc__gate_drop(int kind, double now) {
  drops[kind]++;
  if (last_report == 0 || now - last_report >= REPORT_EVERY_NS)
    report(now);
}

void distc__gate_flush(void) { report(distc__now()); }

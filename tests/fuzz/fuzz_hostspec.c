/* fuzz_hostspec.c — libFuzzer harness for the host-list grammar of --hosts
 * and --hostfile.  The first byte chooses the entry point: one entry, a
 * comma-separated list, or a host file (the rest written to a memfd and
 * read through its /proc path, as the launcher reads a file). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "hostspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  int mode = data[0] % 3;
  char *text = malloc(size);
  if (!text)
    return 0;
  memcpy(text, data + 1, size - 1);
  text[size - 1] = '\0';
  distc_host *hosts = NULL;
  int n = 0;
  if (mode == 0) {
    distc_host *h = calloc(1, sizeof *h);
    if (h && distc__host_parse(text, h) == 0) {
      char label[256];
      distc__host_label(h, label, sizeof label);
    }
    distc__host_free(h, 1);
  } else if (mode == 1) {
    distc__hosts_parse_list(text, &hosts, &n);
  } else {
    int fd = memfd_create("hostfile", MFD_CLOEXEC);
    if (fd >= 0) {
      /* The raw bytes, NULs and all, as a file holds them. */
      if (write(fd, data + 1, size - 1) == (ssize_t)(size - 1)) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        distc__hosts_parse_file(path, &hosts, &n);
      }
      close(fd);
    }
  }
  distc__host_free(hosts, n);
  free(text);
  return 0;
}

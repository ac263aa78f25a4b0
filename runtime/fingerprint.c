/* fingerprint.c — what identifies "the same binary" at the handshake.
 *
 * The GNU build-id of the main executable (the linker hashes the code and
 * data into it), mixed with the library version.  A worker running another
 * build of the program would have a different function table, so the master
 * refuses it instead of calling the wrong code.  Without a build-id the
 * executable's bytes are hashed instead. */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static unsigned char fingerprint[DISTC__FP_LEN];
static pthread_once_t fingerprint_once = PTHREAD_ONCE_INIT;

struct build_id {
  const unsigned char *p;
  size_t n;
};

static int find_build_id(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  struct build_id *id = arg;
  /* The first object dl_iterate_phdr reports is the main program. */
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE)
      continue;
    const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
    const char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      const char *name = p + sizeof *nh;
      const char *desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
          memcmp(name, "GNU", 4) == 0 && desc + nh->n_descsz <= end) {
        id->p = (const unsigned char *)desc;
        id->n = nh->n_descsz;
        return 1;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return 1;
}

static void hash_file(struct sha256_ctx *ctx, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    sha256_update(ctx, (size_t)n, (const uint8_t *)buf);
  close(fd);
}

static void compute(void) {
  struct sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, sizeof DISTC_VERSION, (const uint8_t *)DISTC_VERSION);
  struct build_id id = {0};
  dl_iterate_phdr(find_build_id, &id);
  if (id.p)
    sha256_update(&ctx, id.n, id.p);
  else
    hash_file(&ctx, "/proc/self/exe");
  sha256_digest(&ctx, DISTC__FP_LEN, fingerprint);
}

const unsigned char *distc__fingerprint(void) {
  pthread_once(&fingerprint_once, compute);
  return fingerprint;
}

void distc__fingerprint_hex(const unsigned char *fp, char *out) {
  for (int i = 0; i < 8; i++)
    sprintf(out + 2 * i, "%02x", fp[i]);
}

/* fuzz_options.c — libFuzzer harness for distc-launch's command line: the
 * input, split at NUL bytes, is argv[1..].  Whatever it is, the parser
 * returns (an error, a help or version request, or options) and
 * distc__options_free releases it all.  Its stdout (--help) goes nowhere. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "launcher.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (!freopen("/dev/null", "w", stdout))
    return 0;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0;
  char *text = malloc(size + 1);
  char **argv = calloc(size + 3, sizeof *argv);
  if (!text || !argv) {
    free(text);
    free(argv);
    return 0;
  }
  memcpy(text, data, size);
  text[size] = '\0';
  int argc = 0;
  argv[argc++] = "distc-launch";
  for (size_t i = 0; i <= size;) {
    argv[argc++] = text + i;
    i += strlen(text + i) + 1;
  }
  argv[argc] = NULL;
  distc__launch_opts o;
  memset(&o, 0, sizeof o);
  distc__options_parse(argc, argv, &o);
  distc__options_free(&o);
  free(argv);
  free(text);
  return 0;
}

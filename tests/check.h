/* check.h — the tests' one assertion: count, and on failure say where and
 * why, then go on, so a run reports every failure and ends with
 * `N passed, M failed`. */
#ifndef DISTC_TEST_CHECK_H
#define DISTC_TEST_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (cond) {                                                               \
      passed++;                                                               \
    } else {                                                                  \
      failed++;                                                               \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                  \
      printf(__VA_ARGS__);                                                    \
      printf("\n");                                                           \
    }                                                                         \
  } while (0)

#endif

#!/usr/bin/env bash
# test_not_started.sh DISTC_LAUNCH TEST_LIB SRCDIR LIBDIR [SANITIZE] — a
# program linked
# against the build tree without an rpath: the dynamic loader cannot start
# it (status 127).  distc-launch and distc_addprocs say which library is
# missing and what to do, and the loader's own line reaches the user.
set -u
launch=${1:?usage: test_not_started.sh DISTC_LAUNCH TEST_LIB SRCDIR LIBDIR}
test_lib=$2 src=$3 libdir=$4 sanitize=${5:-none}
. "$src/tests/lib.sh"
# meson test points LD_LIBRARY_PATH at the build tree; a user has no such
# thing, and without it the program below cannot start.
unset LD_LIBRARY_PATH
cd "$tmp" || exit 1
"${CC:-cc}" "$src/contrib/hello.c" -o hello -I"$src/runtime/include" \
  -L"$libdir" -ldistc || { bad "building hello without an rpath"; finish; exit; }

timeout 60 "$launch" -p 2 ./hello >out 2>err
rc=$?
check "distc-launch fails (status $rc)" '[ $rc -ne 0 ] && [ $rc -ne 124 ]'
check "the loader's line reaches the user" \
  'grep -q "error while loading shared libraries: libdistc.so.0" err'
check "distc-launch names the missing library" \
  'grep -q "^distc-launch: .*status 127.*cannot find libdistc.so.0" err'
check "and says what to do (rpath or LD_LIBRARY_PATH)" \
  'grep "^distc-launch:" err | grep -q "rpath.*LD_LIBRARY_PATH"'
check "and does not ask whether it is linked with libdistc" \
  '! grep -q "linked with libdistc" err'
[ "$fail" -eq 0 ] || sed 's/^/    /' err

# (A sanitizer build's libdistc needs its runtime loaded first, which this
# plain program does not do.)
if [ "$sanitize" = none ]; then
  LD_LIBRARY_PATH=$libdir timeout 60 "$launch" -p 2 ./hello >out 2>err
  check "with LD_LIBRARY_PATH it runs" 'grep -q "^Done!" out'
fi

# The same from distc_addprocs: a master with no workers (built with an
# rpath) adds one running the program without.
timeout 60 "$test_lib" addprocs-not-started "$tmp/hello" >out 2>&1
check "distc_addprocs names the missing library" 'grep -q " 0 failed" out'
grep -q " 0 failed" out || sed 's/^/    /' out
finish

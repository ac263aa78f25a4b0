#!/usr/bin/env bash
# test_install.sh BUILDDIR SRCDIR — installs the build into a DESTDIR under a
# temp dir and uses the installed copy as a user would, with pkg-config only
# (nothing from the build tree): contrib/hello.c built against libdistc.so
# and against libdistc.a, run with 2 workers by the installed distc-launch;
# a meson project with dependency('distc'); the header, the man pages and
# the bash completion in place.
set -u
build=${1:?usage: test_install.sh BUILDDIR SRCDIR} src=${2:?}
. "$src/tests/lib.sh"
# meson test points LD_LIBRARY_PATH at the build tree; a user has no such
# thing, and the test must not pick the build's libdistc by accident.
unset LD_LIBRARY_PATH
dest=$tmp/dest

if ! meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$tmp/log" 2>&1; then
  bad "meson install into a DESTDIR"; tail -20 "$tmp/log"; finish; exit
fi
ok "meson install into a DESTDIR"
pc=$(find "$dest" -name distc.pc | head -1)
check "distc.pc is installed" '[ -n "$pc" ]'
[ -n "$pc" ] || { finish; exit; }
export PKG_CONFIG_PATH=${pc%/*} PKG_CONFIG_SYSROOT_DIR=$dest
# pkgconf puts the sysroot in front of variables too; pkg-config does not.
in_dest() { case $1 in "$dest"/*) echo "$1" ;; *) echo "$dest$1" ;; esac; }
prefix=$(in_dest "$(pkg-config --variable=prefix distc)")
libdir=$(in_dest "$(pkg-config --variable=libdir distc)")
launch=$prefix/bin/distc-launch
check "the header is installed" '[ -f "$prefix/include/distc.h" ]'
check "libdistc.so and libdistc.a are installed" \
  '[ -e "$libdir/libdistc.so" ] && [ -f "$libdir/libdistc.a" ]'
check "distc-launch is installed" '[ -x "$launch" ]'
check "the man pages are installed" \
  '[ -f "$prefix/share/man/man1/distc-launch.1" ] && [ -f "$prefix/share/man/man3/libdistc.3" ] && [ -f "$prefix/share/man/man7/distc.7" ]'
check "man distc_fetch opens distc_remotecall(3)" \
  '[ "$(readlink "$prefix/share/man/man3/distc_fetch.3")" = distc_remotecall.3 ]'
check "the bash completion is installed" \
  '[ -f "$prefix/share/bash-completion/completions/distc-launch" ]'

# The README's command, plus an rpath since the prefix is not the loader's.
cd "$tmp" || exit 1
cc=${CC:-cc}
if "$cc" "$src/contrib/hello.c" -o hello $(pkg-config --cflags --libs distc) \
     -Wl,-rpath,"$libdir" 2>"$tmp/err"; then
  ok "hello.c builds with \$(pkg-config --cflags --libs distc)"
else
  bad "hello.c builds with \$(pkg-config --cflags --libs distc)"; cat "$tmp/err"
fi
check "hello uses the installed libdistc.so" \
  'ldd ./hello | grep -q "libdistc.so.0 => $libdir/libdistc.so.0"'
hello_ok() { # $1: program; prints what went wrong
  local out
  out=$(timeout 60 "$launch" -p 2 "$1" 2>&1)
  if echo "$out" | grep -q "nworkers() = 2" && echo "$out" | grep -q "^Done!"; then
    return 0
  fi
  echo "$out" | head -20 >&2
  return 1
}
check "the installed distc-launch runs hello with 2 workers" 'hello_ok ./hello'

# Static: libdistc.a, its dependencies from Requires.private/Libs.private.
libs=$(pkg-config --static --libs distc)
if "$cc" "$src/contrib/hello.c" -o hello_static $(pkg-config --cflags distc) \
     ${libs/-ldistc/-Wl,-Bstatic -ldistc -Wl,-Bdynamic} 2>"$tmp/err"; then
  ok "hello.c links libdistc.a with pkg-config --static"
else
  bad "hello.c links libdistc.a with pkg-config --static"; cat "$tmp/err"
fi
check "hello_static needs no libdistc.so" \
  '[ -x hello_static ] && ! readelf -d hello_static | grep -q libdistc'
check "the installed distc-launch runs hello_static with 2 workers" \
  'hello_ok ./hello_static'

# meson: dependency('distc'), as README shows.
mkdir -p proj
cp "$src/contrib/hello.c" proj/
cat >proj/meson.build <<'MESON'
project('uses_distc', 'c')
executable('hello', 'hello.c', dependencies : dependency('distc'),
  build_rpath : 'LIBDIR')
MESON
sed -i "s|LIBDIR|$libdir|" proj/meson.build
if meson setup proj/build proj >"$tmp/log" 2>&1 && ninja -C proj/build >>"$tmp/log" 2>&1; then
  ok "a meson project builds with dependency('distc')"
else
  bad "a meson project builds with dependency('distc')"; tail -20 "$tmp/log"
fi
check "the meson-built hello runs with 2 workers" 'hello_ok proj/build/hello'
finish

#!/usr/bin/env bash
# test_examples.sh SRCDIR LIBDIR DISTC_LAUNCH [SANITIZE] — every complete C
# program printed in README.md and in the man pages builds exactly as printed
# (-Wall -Wextra -Werror, against the header and the built library, with
# the build's sanitizers if any), and the README's first example prints
# what it says it does.
set -u
src=${1:?usage: test_examples.sh SRCDIR LIBDIR DISTC_LAUNCH}
libdir=$2 launch=$3 sanitize=${4:-none}
. "$src/tests/lib.sh"
cc=${CC:-cc}
san=()
[ "$sanitize" = none ] || san=(-fsanitize="$sanitize")

python3 "$src/tests/docs/extract_examples.py" "$src" "$tmp" >"$tmp/list" ||
  { bad "extracting the examples"; finish; exit; }
check "README.md has a C example" 'grep -q "^readme_1\.c$" "$tmp/list"'
check "the man pages have C examples" '[ "$(grep -c "^man_" "$tmp/list")" -ge 5 ]'
while read -r f; do
  if "$cc" -std=gnu11 -Wall -Wextra -Werror "${san[@]}" -I"$src/runtime/include" \
       "$tmp/$f" -o "$tmp/${f%.c}" -L"$libdir" -ldistc -Wl,-rpath,"$libdir" \
       -lm -lpthread 2>"$tmp/err"; then
    ok "$f builds as printed"
  else
    bad "$f builds as printed"; head -20 "$tmp/err"
  fi
done <"$tmp/list"

# README: "square" of 7 on worker 2.
out=$(cd "$tmp" && timeout 60 "$launch" -p 2 ./readme_1 2>&1)
check "README's example prints 49 with 2 workers" '[ "$out" = 49 ]'
[ "$out" = 49 ] || echo "$out" | head
# Without workers the call fails, the program says why and frees a NULL.
out=$(cd "$tmp" && timeout 60 ./readme_1 2>&1)
check "README's example without workers reports the failure" \
  'echo "$out" | grep -q "no process 2"'
echo "$out" | grep -q "no process 2" || echo "$out" | head
finish

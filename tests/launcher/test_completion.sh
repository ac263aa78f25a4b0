#!/usr/bin/env bash
# test_completion.sh DISTC_LAUNCH SRCDIR — the bash completion of
# distc-launch (contrib/distc-launch.bash): registered for the command, and
# what it offers for COMP_WORDS/COMP_CWORD as bash would set them: options
# and manager names (from the launcher), host names from --hostfile, files
# for the program, nothing of ours after it.
set -u
launch=${1:?usage: test_completion.sh DISTC_LAUNCH SRCDIR} src=${2:?}
. "$src/tests/lib.sh"
. "$src/contrib/distc-launch.bash"

check "complete -p names the function" \
  '[ "$(complete -p distc-launch)" = "complete -o default -F _distc_launch distc-launch" ]'

# Completes the words given ("" for an empty last word) and prints the
# candidates sorted, space-separated.  COMP_WORDS[0] is the launcher itself,
# as if it were on PATH.
comp() {
  COMP_WORDS=("$launch" "$@")
  COMP_CWORD=$(($# ))
  COMP_LINE="${COMP_WORDS[*]}"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _distc_launch
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

check "--ma offers --manager, --master-addr, --max-connecting" '[ "$(comp --ma)" = "--manager --master-addr --max-connecting" ]'
all=$(comp --)
check "-- offers every long option the launcher lists" \
  '[ "$(echo "$all" | wc -w)" -eq "$("$launch" --list-options | grep -c "^--")" ]'
check "-- offers --hostfile and --procs" \
  'case " $all " in *" --hostfile "*" --procs "*) true ;; *) false ;; esac'
check "--manager offers the managers the launcher knows" \
  '[ "$(comp --manager "")" = "$("$launch" --list-managers | sort | tr "\n" " " | sed "s/ $//")" ]'
check "--manager s offers slurm and ssh" '[ "$(comp --manager s)" = "slurm ssh" ]'
check "--manager=l offers local" '[ "$(comp --manager=l)" = local ]'
check "-p offers auto" '[ "$(comp -p "")" = auto ]'

cat >"$tmp/hosts" <<'HF'
# the cluster
node1:4
alice@node2:2222:8
3*gpu7
node3 slots=2 dir=/scratch
HF
check "--hosts offers the hostfile's hosts" \
  '[ "$(comp --hostfile "$tmp/hosts" --hosts "")" = "gpu7 node1 node2 node3" ]'
check "--hosts n offers the node* hosts" \
  '[ "$(comp --hostfile "$tmp/hosts" --hosts n)" = "node1 node2 node3" ]'
check "--hosts after a comma completes the next entry" \
  '[ "$(comp --hostfile="$tmp/hosts" -p 2 --hosts node1:2,g)" = "node1:2,gpu7" ]'
check "--hosts without a hostfile offers nothing" '[ -z "$(comp --hosts n)" ]'

mkdir -p "$tmp/d/sub"
touch "$tmp/d/prog"
check "--dir offers directories" '[ "$(comp --dir "$tmp/d/")" = "$tmp/d/sub" ]'
check "the program is completed as a file" \
  '[ "$(comp -p 2 "$tmp/d/pr")" = "$tmp/d/prog" ]'
check "the program's own options are not ours" \
  '[ -z "$(comp -p 2 ./prog --ma)" ]'
check "nothing of ours after --" '[ -z "$(comp -- ./prog --ma)" ]'
finish

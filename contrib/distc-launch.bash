# bash completion for distc-launch                        -*- shell-script -*-
#
# Options and manager names come from the launcher itself
# (`distc-launch --list-options`, `--list-managers`), so they never drift
# from what it parses.  --hosts completes host names from a --hostfile given
# earlier on the line.  After the program, the shell's default completion
# takes over (the program's own arguments).

# Host names in a hostfile: `host`, `user@host:port:slots`, `N*host`,
# `host slots=N dir=... exename=...`, `# comments`.
_distc_launch_hostfile_hosts() {
  local line h
  [ -r "$1" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    read -r h _ <<<"$line"
    [ -n "$h" ] || continue
    h=${h#*\*}
    h=${h#*@}
    h=${h%%:*}
    [ -n "$h" ] && printf '%s\n' "$h"
  done <"$1"
}

_distc_launch() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev= launcher=${COMP_WORDS[0]}
  [ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}
  COMPREPLY=()

  local opts
  opts=$("$launcher" --list-options 2>/dev/null) || return 0

  # Where do options end?  At the first word that is not one (the program),
  # or after --; an option with ARG eats the next word.
  local i=1 w hostfile=
  while [ "$i" -lt "$COMP_CWORD" ]; do
    w=${COMP_WORDS[i]}
    case $w in
      --) return 0 ;;  # the program comes next: default completion
      --*=*) [ "${w%%=*}" = --hostfile ] && hostfile=${w#*=} ;;
      -?*)
        if grep -qxF -- "$w ARG" <<<"$opts"; then
          [ "$w" = --hostfile ] && hostfile=${COMP_WORDS[i + 1]}
          i=$((i + 1))
        fi ;;
      *) return 0 ;;  # the program: the rest is its own
    esac
    i=$((i + 1))
  done
  hostfile=${hostfile/#\~/$HOME}

  # --opt=value
  if [[ $cur == --*=* ]]; then
    prev=${cur%%=*}
    cur=${cur#*=}
  elif [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(sed 's/ ARG$//' <<<"$opts")" -- "$cur")
    return 0
  elif ! grep -qxF -- "$prev ARG" <<<"$opts"; then
    # The program to run.
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    compopt -o filenames 2>/dev/null
    return 0
  fi

  case $prev in
    --manager)
      mapfile -t COMPREPLY < <(compgen -W "$("$launcher" --list-managers 2>/dev/null)" -- "$cur") ;;
    -p | --procs)
      mapfile -t COMPREPLY < <(compgen -W "auto" -- "$cur") ;;
    --topology)
      mapfile -t COMPREPLY < <(compgen -W "all_to_all master_worker" -- "$cur") ;;
    --dir)
      mapfile -t COMPREPLY < <(compgen -d -- "$cur")
      compopt -o filenames 2>/dev/null ;;
    --hostfile | --exename | --ssh-identity | --ssh-config)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      compopt -o filenames 2>/dev/null ;;
    --hosts)
      # A comma-separated list: complete the entry after the last comma.
      local head= last=$cur
      if [[ $cur == *,* ]]; then head=${cur%,*},; last=${cur##*,}; fi
      local h
      while IFS= read -r h; do
        [ -n "$h" ] && COMPREPLY+=("$head$h")
      done < <(compgen -W "$(_distc_launch_hostfile_hosts "$hostfile")" -- "$last")
      ;;
  esac
  return 0
}
complete -F _distc_launch -o default distc-launch

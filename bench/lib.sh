# shellcheck shell=bash
# lib.sh — helpers shared by bench/run and the rows in bench/rows/.
# Sourced, not run.  Paths are absolute so rows may cd anywhere.

# shellcheck disable=SC2034  # the rows use these
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
OUT_DIR=$BENCH_DIR/out
BUILD_DIR=$OUT_DIR/build          # release build of distc, separate from build/
LAUNCH=$BUILD_DIR/launcher/distc-launch

# mpirun as root needs --allow-run-as-root; 8 ranks on 2 cores need
# --oversubscribe.
# shellcheck disable=SC2034
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)

bench_log() { echo "bench: $*" >&2; }
bench_die() { bench_log "$*"; exit 1; }

# Installs Open MPI from Debian if mpirun or mpicc is missing.
bench_need_mpi() {
  command -v mpirun >/dev/null && command -v mpicc >/dev/null && return
  bench_log "installing openmpi-bin and libopenmpi-dev"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    openmpi-bin libopenmpi-dev >&2
}

# Builds distc (release) and the programs in src/ (those older than their
# source) once per bench/run.
bench_build() {
  [[ -n ${BENCH_BUILT:-} ]] && return
  bench_need_mpi
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    meson setup "$BUILD_DIR" "$REPO_DIR" --buildtype=release >&2
  fi
  ninja -C "$BUILD_DIR" >&2 || bench_die "distc build failed"
  local cflags=(-O2 -Wall -Wextra -I"$REPO_DIR/runtime/include")
  local src name hdr=$BENCH_DIR/src/bench_common.h
  for src in "$BENCH_DIR"/src/*.c; do
    name=$(basename "$src" .c)
    [[ $OUT_DIR/$name -nt $src && $OUT_DIR/$name -nt $hdr ]] && continue
    if [[ $name == mpi_* ]]; then
      mpicc -O2 -Wall -Wextra -o "$OUT_DIR/$name" "$src"
    else
      gcc "${cflags[@]}" -o "$OUT_DIR/$name" "$src" \
        -L"$BUILD_DIR" -Wl,-rpath,"$BUILD_DIR" -ldistc
    fi
  done
  BENCH_BUILT=1
}

# median N... — prints the median of its arguments.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1
          print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# now_us — wall clock in microseconds, without forking.
now_us() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }

# row_line ROW DISTC PEERNAME PEER UNIT PRECISION — the one line a row prints.
row_line() {
  awk -v row="$1" -v d="$2" -v pn="$3" -v p="$4" -v u="$5" -v pr="$6" 'BEGIN {
    printf "bench %s distc=%.*f %s=%.*f ratio=%.3f unit=%s\n",
           row, pr, d, pn, pr, p, d / p, u }'
}

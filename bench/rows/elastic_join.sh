# shellcheck shell=bash
# elastic_join — from `distc-launch --submit sbatch --jobs 2
# --workers-per-job 4 bench_join` starting (its master, then 2 sbatch jobs)
# to all 8 workers joined and one call answered on each, vs Dask doing the
# same the way dask-jobqueue does (dask_join.py: an in-process scheduler, 2
# sbatch jobs running dask-worker --nworkers 4, wait_for_workers(8) and one
# client.run).  Needs the SLURM testbed (tests/slurm/testbed.sh) running;
# installs python3-distributed when missing.  ELASTIC_JOIN_RUNS (3) runs of
# each, interleaved after one untimed pair; medians in ms.

row_elastic_join() {
  local testbed=$REPO_DIR/tests/slurm/testbed.sh
  if ! "$testbed" status >/dev/null 2>&1; then
    bench_log "elastic_join: the SLURM testbed is not running" \
      "(tests/slurm/testbed.sh start); skipped"
    return 0
  fi
  eval "$("$testbed" env)"
  if ! /usr/bin/python3 -c "import distributed" 2>/dev/null; then
    bench_log "installing python3-distributed"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends python3-distributed >&2
  fi
  local runs=${ELASTIC_JOIN_RUNS:-3} d=() p=() i t0 out dir
  dir=$(mktemp -d "$OUT_DIR/elastic_join.XXXXXX")
  chmod 755 "$dir"
  for ((i = 0; i <= runs; i++)); do
    t0=$(now_us)
    out=$("$LAUNCH" --submit sbatch --jobs 2 --workers-per-job 4 \
      --key-dir "$dir" "$OUT_DIR/bench_join" 2>>"$dir/distc.err")
    [[ $out == "workers 8 answered_us "* ]] ||
      bench_die "elastic_join: distc run failed: $out (see $dir/distc.err)"
    ((i)) && d+=("$(( ${out##* } - t0 ))")
    out=$(/usr/bin/python3 "$BENCH_DIR/src/dask_join.py" "$TESTBED_SLURM_LOGIN_ADDR" \
      2 4 "$dir" 2>>"$dir/dask.err" | tail -1)
    [[ $out == "workers 8 seconds "* ]] ||
      bench_die "elastic_join: dask run failed: $out (see $dir/dask.err)"
    ((i)) && p+=("$(awk -v s="${out##* }" 'BEGIN { printf "%d", s * 1e6 }')")
  done
  rm -rf "$dir"
  row_line elastic_join "$(median "${d[@]}" | awk '{ print $1 / 1000 }')" \
    dask "$(median "${p[@]}" | awk '{ print $1 / 1000 }')" ms 0
}

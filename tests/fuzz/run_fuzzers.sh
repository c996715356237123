#!/usr/bin/env bash
# Runs every libFuzzer target of a -DMLA_BUILD_FUZZERS=ON build for a fixed time each, two at a time, starting from
# the committed seeds and regressions. New corpus entries go to a scratch folder (the repository keeps only seeds).
# A crash, leak, timeout or out-of-memory input is copied to tests/fuzz/regressions/<target>/, where CTest's
# fuzz/<target> replays it from then on: commit it with the fix. Exits 1 when any target found something.
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS [TARGET...]
set -euo pipefail
build=$(cd "$1" && pwd)
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
work=$build/fuzz-runs
rm -rf "$work"
mkdir -p "$work"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] && targets+=("$(basename "$bin" | sed 's/^fuzz_//')")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "run_fuzzers: no fuzz targets in $build/tests/fuzz" >&2; exit 1; }

run_one() {
  local name=$1 bin=$build/tests/fuzz/fuzz_$1 dir=$work/$1
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  local corpora=("$dir/corpus" "$here/seeds/$name")
  [ -d "$here/regressions/$name" ] && corpora+=("$here/regressions/$name")
  # -timeout: one input running longer is a hang; -rss_limit_mb also caps any single allocation (malloc_limit_mb),
  # so a parser that sizes an allocation from a lying header is a finding, not a slow run.
  local status=0
  OMP_NUM_THREADS=1 TMPDIR=$dir/tmp ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$here/../sanitizers/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" "${corpora[@]}" > "$dir/log" 2>&1 || status=$?
  local execs
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' || echo "?")
  if [ "$status" -ne 0 ] || [ -n "$(ls -A "$dir/artifacts")" ]; then
    mkdir -p "$here/regressions/$name"
    cp "$dir"/artifacts/* "$here/regressions/$name/" 2>/dev/null || true
    echo "fuzz_$name: FOUND A PROBLEM after $execs runs (exit $status); reproducer(s) copied to tests/fuzz/regressions/$name/"
    grep -E -A40 '^==[0-9]+==ERROR|runtime error|deadly signal|ALARM|out-of-memory|Timeout' "$dir/log" | head -60
    return 1
  fi
  echo "fuzz_$name: ${seconds} s, $execs runs, corpus $(ls "$dir/corpus" | wc -l) new inputs, nothing found"
}
export -f run_one
export build seconds here work

start=$(date +%s)
status=0
printf '%s\n' "${targets[@]}" | xargs -P 2 -I{} bash -c 'run_one "$@"' _ {} || status=1
echo "run_fuzzers: ${#targets[@]} targets x ${seconds} s in $(( $(date +%s) - start )) s"
exit $status

#!/bin/sh
# Spectrum + top-k factors (ours) against numpy's full SVD on the same matrix, side by side.
#   tests/benchmarks/run_decompositions.sh BUILD_DIR [--size RxC] [--threads 1,2] [--eigen-baseline] [--randomized]
#                                            [--dtype float32]
# Default size 7680x4096 (a Llama-2-7B joint key/value matrix): numpy's SVD takes about 10 minutes there. Use
# --size 1920x1024 for a quick smoke run. Work files go to BUILD_DIR/bench-decompositions-RxC.
set -eu
if [ $# -lt 1 ]; then
    sed -n '2,6p' "$0"
    exit 2
fi
build=$1
shift
size=7680x4096
ours_args=""
numpy_args=""
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size=$2; shift 2 ;;
        --eigen-baseline|--randomized) ours_args="$ours_args $1"; shift ;;
        --threads) ours_args="$ours_args --threads $2"; shift 2 ;;
        --dtype) numpy_args="$numpy_args --dtype $2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
bench="$build/tests/benchmarks/bench_decompositions"
[ -x "$bench" ] || { echo "build bench_decompositions first (ninja -C $build bench_decompositions)" >&2; exit 1; }
work="$build/bench-decompositions-$size"
mkdir -p "$work"
# numpy runs on Debian's python (python3-numpy), not whatever python3 is first on PATH.
python=/usr/bin/python3
"$bench" --out "$work" --size "$size" $ours_args
"$python" "$here/numpy_svd_baseline.py" "$work" $numpy_args
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
"$bench" --compare "$work"

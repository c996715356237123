#!/usr/bin/env bash
# Runs the CUDA backend's checks and benchmarks on a GPU machine, from the repository root, with binaries built
# elsewhere (docs/cuda-backend.md, "Running on a GPU machine"). Nothing is compiled here.
#
#   tests/benchmarks/cuda_device_run.sh check|convert [CARRY_DIR] [OUT_DIR]
#
# CARRY_DIR (default .cudarun) holds bin/ (mla-workbench-cli, cuda_parity, backend_selection, nvcc_build, cuda_bench),
# lib/ (their non-system shared libraries) and hf/ (hf_parity_prepare's output). cuBLAS and cuSOLVER come from the
# machine's CUDA installation or PyTorch's nvidia wheels. Results go to OUT_DIR (default $OUT): few files, as text and
# JSON.
#   check    parity tests (CPU vs CUDA), Hugging Face parity of our CPU forward, per-layer decompositions against
#            torch.linalg, calibration throughput against PyTorch's eager forward (8-layer Llama-2-7B shape)
#   convert  a 32-layer Llama-2-7B-shaped BF16 checkpoint converted end to end with --device cuda, against the I/O
#            floor measured on the same disk in the same run
set -u -o pipefail
phase=${1:?usage: cuda_device_run.sh check|convert [CARRY_DIR] [OUT_DIR]}
R=$(cd "${2:-.cudarun}" && pwd)
O=${3:-${OUT:-/tmp/cuda-out}}
W=${MLA_WORK:-/tmp/mla-cuda-work}
mkdir -p "$O" "$W"
S="$O/summary.txt"
B="$O/bench.txt"

# cuBLAS / cuSOLVER and their dependencies: wherever this machine has them.
cuda_dirs=""
for lib in libcublas.so.13 libcublasLt.so.13 libcusolver.so.12 libcusparse.so.12 libnvJitLink.so.13; do
  f=$(find /usr/local/cuda*/lib* /usr/local/cuda*/targets /opt /usr/lib /usr/local/lib -name "$lib" 2>/dev/null | head -1)
  [ -n "$f" ] && case ":$cuda_dirs:" in *":$(dirname "$f"):"*) ;; *) cuda_dirs="$cuda_dirs:$(dirname "$f")" ;; esac
done
ours() { LD_LIBRARY_PATH="$R/lib$cuda_dirs" "$R/bin/$@"; } # our binaries only: python keeps its own libraries
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$S"; }
section() { echo "=== $1" >> "$B"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || log "(could not drop the page cache)"; }

log "phase $phase on $(hostname); cuda libraries from: ${cuda_dirs#:}"

if [ "$phase" = check ]; then
  { date -u; uname -a; head -2 /etc/os-release; nproc; free -g; df -h /tmp .; nvidia-smi;
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)';
    ldd "$R/bin/mla-workbench-cli"; } > "$O/env.txt" 2>&1
  log "nvcc_build: $(ours nvcc_build 2>&1 | tr '\n' ' ')"
  ours backend_selection > "$O/parity.txt" 2>&1; log "backend_selection exit $?"
  for c in scores factors forward generate architectures; do
    start=$(date +%s.%N)
    timeout 300 env LD_LIBRARY_PATH="$R/lib$cuda_dirs" MLA_TEST_TMP="$W/parity-$c" "$R/bin/cuda_parity" "$c" >> "$O/parity.txt" 2>&1
    rc=$?
    log "cuda_parity $c: exit $rc ($(elapsed $start) s), $(grep -c '^FAIL' "$O/parity.txt") failures so far"
  done
  timeout 300 python3 tests/tools/hf_parity.py "$R/hf" --json "$O/hf_parity.json" > "$O/hf_parity.txt" 2>&1
  log "hf_parity exit $?: $(tail -1 "$O/hf_parity.txt")"

  ours mla-workbench-cli synth --shape llama2-7b --layers 2 --out "$W/llama2-7b-2l" --quiet
  section "cuda_bench decompositions (layer 0 of a Llama-2-7B-shaped BF16 checkpoint, 8 pairs kept, latent 1024)"
  timeout 300 env LD_LIBRARY_PATH="$R/lib$cuda_dirs" "$R/bin/cuda_bench" decompositions "$W/llama2-7b-2l" --pairs 8 --latent 1024 --dump "$W/mats" --cpu >> "$B" 2>&1
  log "cuda_bench decompositions exit $?"
  section "torch.linalg on the same matrices"
  timeout 300 python3 tests/benchmarks/cuda_torch_baseline.py decompositions "$W/mats" --repeat 2 >> "$B" 2>&1
  log "torch decompositions exit $?"
  rm -rf "$W/mats" "$W/llama2-7b-2l"

  ours mla-workbench-cli synth --shape llama2-7b --layers 8 --out "$W/llama2-7b-8l" --quiet
  for p in fp32 native tf32; do
    section "cuda_bench forward, precision $p (8-layer Llama-2-7B shape, 16 x 256 tokens)"
    timeout 240 env LD_LIBRARY_PATH="$R/lib$cuda_dirs" MLA_CUDA_PRECISION=$p "$R/bin/cuda_bench" forward "$W/llama2-7b-8l" --seqs 16 --len 256 >> "$B" 2>&1
    log "cuda_bench forward $p exit $?"
  done
  for d in bf16 f32; do
    section "PyTorch eager forward, $d (same checkpoint, same tokens)"
    timeout 300 python3 tests/benchmarks/cuda_torch_baseline.py forward "$W/llama2-7b-8l" --seqs 16 --len 256 --dtype $d >> "$B" 2>&1
    log "torch forward $d exit $?"
  done
  rm -rf "$W/llama2-7b-8l"
fi

if [ "$phase" = convert ]; then
  M="$W/llama2-7b"
  start=$(date +%s.%N)
  ours mla-workbench-cli synth --shape llama2-7b --out "$M" --quiet
  log "synthesised a 32-layer Llama-2-7B-shaped BF16 checkpoint in $(elapsed $start) s: $(du -sb "$M" | cut -f1) bytes"
  section "disk throughput (dd, 8 GiB, direct I/O, on the checkpoint's file system)"
  dd if=/dev/zero of="$W/dd.bin" bs=64M count=128 oflag=direct 2>&1 | tail -1 | tee -a "$B" | sed 's/^/write: /' | tee -a "$S"
  drop_caches
  dd if="$W/dd.bin" of=/dev/null bs=64M iflag=direct 2>&1 | tail -1 | tee -a "$B" | sed 's/^/read: /' | tee -a "$S"
  rm -f "$W/dd.bin"
  drop_caches
  start=$(date +%s.%N)
  cat "$M"/*.safetensors > /dev/null
  log "buffered read of the checkpoint (cold cache): $(elapsed $start) s"
  python3 -c "
import random
random.seed(7)
for s in range(16):
    print(' '.join(['1'] + [str(random.randrange(3, 32000)) for _ in range(255)]))" > "$W/calib.ids"
  timer=""
  [ -x /usr/bin/time ] && timer="/usr/bin/time -v"
  for mode in high 2-norm; do
    drop_caches
    section "convert --device cuda, $mode (32 layers, BF16 in and out)"
    args=(--rope-strategy high)
    [ "$mode" = 2-norm ] && args=(--rope-strategy 2-norm --calib-ids "$W/calib.ids")
    start=$(date +%s.%N)
    $timer env LD_LIBRARY_PATH="$R/lib$cuda_dirs" "$R/bin/mla-workbench-cli" convert "$M" --out "$W/converted" --force --device cuda "${args[@]}" --json \
      > "$W/convert.json" 2> "$W/convert.err"
    rc=$?
    wall=$(elapsed $start)
    python3 -c "
import json; j = json.load(open('$W/convert.json')); l = j.pop('layers'); j['layer0'] = l[0]; print(json.dumps(j))" >> "$B" 2>&1
    grep -E "note:|Maximum resident|Elapsed" "$W/convert.err" >> "$B"
    log "convert $mode: exit $rc, wall $wall s, written $(du -sb "$W/converted" 2>/dev/null | cut -f1) bytes"
    rm -rf "$W/converted"
  done
  rm -rf "$M"
fi
log "phase $phase done"

#!/usr/bin/env python3
"""Conversion wall time and peak memory on synthetic checkpoints with real shapes (issue 3's benchmark).

For SmolLM-135M (whole model) and Llama-2-7B with 4 and 8 layers (BF16 weights), writes a synthetic checkpoint with
`mla-workbench-cli synth`, then times `convert` (partial RoPE `high`, joint SVD, 75% KV saving: no calibration pass,
so the run is what the decomposition and the I/O cost) under /usr/bin/time for its peak resident memory. In the same
run it measures the disk: reading the checkpoint files (page cache dropped first when permitted) and writing a file
of the output's size with fsync. The I/O floor is bytes read / read throughput + bytes written / write throughput.

Usage: bench_conversion.py [--cli build/app/mla-workbench-cli] [--work DIR] [--quick]
Prints a Markdown table for docs/benchmarks.md. Standard library only.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def read_throughput(path):
    cold = drop_caches()
    total = 0
    start = time.perf_counter()
    for d, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(d, name), "rb", buffering=0) as f:
                while True:
                    chunk = f.read(64 << 20)
                    if not chunk:
                        break
                    total += len(chunk)
    return total / (time.perf_counter() - start), cold


def write_throughput(directory, size):
    path = os.path.join(directory, "write-probe.bin")
    block = os.urandom(16 << 20)
    start = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)
        os.fsync(f.fileno())
    rate = written / (time.perf_counter() - start)
    os.remove(path)
    return rate


def timed(cmd):
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return wall, rss_kb * 1024, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "app", "mla-workbench-cli"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--quick", action="store_true", help="SmolLM-135M with 4 layers only")
    ap.add_argument("--device", default="cpu", help="convert's --device: cpu (default), cuda or auto")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs /usr/bin/time (Debian package 'time')")
    work = args.work or tempfile.mkdtemp(prefix="mla-bench-conversion-")
    cases = [("smollm-135m", 4)] if args.quick else [("smollm-135m", 0), ("llama2-7b", 4), ("llama2-7b", 8)]
    rows = []
    for shape, layers in cases:
        label = f"{shape}" + (f" x{layers} layers" if layers else " (all layers)")
        src = os.path.join(work, f"{shape}-{layers}")
        out = os.path.join(work, f"{shape}-{layers}-mla")
        synth = [args.cli, "synth", "--shape", shape, "--dtype", "bf16", "--out", src, "--quiet"]
        if layers:
            synth += ["--layers", str(layers)]
        subprocess.run(synth, check=True)
        in_bytes = folder_bytes(src)
        read_bw, cold = read_throughput(src)
        drop_caches()
        wall, rss, stdout = timed([args.cli, "convert", src, "--out", out, "--rope-strategy", "high", "--device", args.device,
                                     "--quiet", "--json"])
        report = json.loads(stdout)
        out_bytes = folder_bytes(out)
        write_bw = write_throughput(work, out_bytes)
        floor = in_bytes / read_bw + out_bytes / write_bw
        rows.append((label, in_bytes, out_bytes, read_bw, write_bw, cold, floor, wall, rss, report["kv_saving"]))
        print(f"{label}: wall {wall:.1f} s, I/O floor {floor:.1f} s (ratio {wall / floor:.2f}), peak RSS {rss / 2**20:.0f} MiB",
              flush=True)
        shutil.rmtree(src)
        shutil.rmtree(out)

    print()
    print("| checkpoint (BF16) | read | written | read MB/s | write MB/s | I/O floor | conversion wall | wall / floor | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, ib, ob, rb, wb, cold, floor, wall, rss, _ in rows:
        print(f"| {label} | {ib / 2**20:.0f} MiB | {ob / 2**20:.0f} MiB | {rb / 1e6:.0f}{'' if cold else ' (warm)'} | "
              f"{wb / 1e6:.0f} | {floor:.1f} s | {wall:.1f} s | {wall / floor:.2f} | {rss / 2**20:.0f} MiB |")
    sevens = {r[0]: r for r in rows if r[0].startswith("llama2-7b")}
    if len(sevens) == 2:
        four, eight = sevens["llama2-7b x4 layers"], sevens["llama2-7b x8 layers"]
        print(f"\nPeak memory 8 layers / 4 layers: {eight[8] / four[8]:.3f} (goal: under 1.1)")


if __name__ == "__main__":
    main()

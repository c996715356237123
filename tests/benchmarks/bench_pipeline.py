#!/usr/bin/env python3
"""Pipelined against sequential streaming conversion, each as wall time / I/O floor (issue 19's benchmark).

Writes a synthetic Llama-2-7B-shaped BF16 checkpoint (`mla-workbench-cli synth --shape llama2-7b --layers N`), then
converts it twice in the same run: `convert --no-pipeline` (read, convert, write one layer after another) and
`convert` (the default: layer i+1 read and layer i-1 written while layer i is converted), each under /usr/bin/time
for its wall time, CPU time (user + system) and peak resident memory, with the page cache dropped before each when
permitted. The disk is measured in the same run as in bench_conversion.py: a read of the checkpoint (cold when the
cache can be dropped) and a write + fsync of a file of the output's size; I/O floor = bytes read / read throughput +
bytes written / write throughput.

On a machine shared with other work, wall times move with the load: the ratio pipelined / sequential of the same run
is the figure to compare, with the CPU times beside it (equal CPU time and lower wall time: the overlap).

Usage: bench_pipeline.py [--cli build/app/mla-workbench-cli] [--layers 8] [--device cpu] [--work DIR]
                         [--convert-args "..."]   (extra convert flags for both runs, e.g. "--fast-svd")
Prints a Markdown table for docs/benchmarks.md. Standard library only.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_conversion import ROOT, drop_caches, folder_bytes, read_throughput, write_throughput  # noqa: E402


def timed(cmd):
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    field = lambda name: float(re.search(name + r": ([0-9.]+)", p.stderr).group(1))  # noqa: E731
    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    rss = int(field(r"Maximum resident set size \(kbytes\)")) * 1024
    return wall, cpu, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "app", "mla-workbench-cli"))
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=None)
    ap.add_argument("--convert-args", default="", help="extra convert flags for both runs")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs /usr/bin/time (Debian package 'time')")
    work = args.work or tempfile.mkdtemp(prefix="mla-bench-pipeline-")
    src = os.path.join(work, f"llama2-7b-{args.layers}")
    subprocess.run([args.cli, "synth", "--shape", "llama2-7b", "--dtype", "bf16", "--layers", str(args.layers), "--out", src,
                    "--quiet"], check=True)
    in_bytes = folder_bytes(src)
    read_bw, cold = read_throughput(src)
    runs = {}
    out_bytes = 0
    for name, flags in (("sequential", ["--no-pipeline"]), ("pipelined", [])):
        out = os.path.join(work, f"out-{name}")
        drop_caches()
        wall, cpu, rss = timed([args.cli, "convert", src, "--out", out, "--rope-strategy", "high", "--device", args.device,
                                "--quiet", *flags, *shlex.split(args.convert_args)])
        out_bytes = folder_bytes(out)
        runs[name] = (wall, cpu, rss)
        print(f"{name}: wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss / 2**20:.0f} MiB", flush=True)
        if name == "sequential":
            kept = out
        else:
            same = subprocess.run(["cmp", os.path.join(kept, "model.safetensors"), os.path.join(out, "model.safetensors")]).returncode == 0
            print(f"model.safetensors identical: {same}", flush=True)
            shutil.rmtree(out)
    shutil.rmtree(kept)
    write_bw = write_throughput(work, out_bytes)
    floor = in_bytes / read_bw + out_bytes / write_bw
    shutil.rmtree(src)

    extra = f" {args.convert_args}" if args.convert_args else ""
    print()
    print(f"Llama-2-7B shape, {args.layers} layers, BF16, `--device {args.device}{extra}`: {in_bytes / 2**20:.0f} MiB read at "
          f"{read_bw / 1e6:.0f} MB/s{'' if cold else ' (warm cache)'}, {out_bytes / 2**20:.0f} MiB written at {write_bw / 1e6:.0f} MB/s; "
          f"I/O floor {floor:.1f} s")
    print()
    print("| run | wall | wall / I/O floor | CPU (user + sys) | peak RSS |")
    print("|---|---|---|---|---|")
    for name, (wall, cpu, rss) in runs.items():
        print(f"| {name} | {wall:.1f} s | {wall / floor:.2f} | {cpu:.1f} s | {rss / 2**20:.0f} MiB |")
    s, p = runs["sequential"], runs["pipelined"]
    print(f"\nPipelined / sequential, same run: wall {p[0] / s[0]:.3f}, CPU {p[1] / s[1]:.3f}, peak RSS {p[2] / s[2]:.3f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Sampled calibration against given ids (issue 21, part 2): `analyze` with the default calibration (16 sequences of
256 tokens sampled from the model) against `analyze` given the same number of token ids (--calib-ids), on F32
SmolLM-135M-shaped synthetic checkpoints (an 8-layer cut and all 30 layers), measured in one run.

The goal is sampled / ids <= 2 (sampling costs at most what the analysis itself costs): the script prints a Markdown
table for docs/benchmarks.md and exits 1 when a ratio is above --limit (default 2.0). With --baseline-cli (a CLI built
from an earlier commit) the earlier CLI's sampled analyze is timed in the same run too, for the speed-up.

Usage: bench_calibration.py [--cli build/app/mla-workbench-cli] [--baseline-cli PATH] [--work DIR] [--layers 8,30]
                            [--repeats 1] [--limit 2.0]
Standard library only. The machine load (uptime) is printed with the table: the figures are wall times.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SAMPLES, LENGTH = 16, 256


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return p.stdout


def timed(cmd, repeats):
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        run(cmd)
        wall = time.perf_counter() - start
        best = wall if best is None else min(best, wall)
    return best


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "app", "mla-workbench-cli"))
    ap.add_argument("--baseline-cli", help="an earlier CLI whose sampled analyze is timed in the same run")
    ap.add_argument("--work", help="folder for the checkpoints (kept, reused when present)")
    ap.add_argument("--layers", default="8,30")
    ap.add_argument("--repeats", type=int, default=1, help="runs per measurement; the fastest is reported")
    ap.add_argument("--limit", type=float, default=2.0, help="largest sampled / ids ratio accepted")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench-calibration-")
    os.makedirs(work, exist_ok=True)

    rng = random.Random(1)
    ids_path = os.path.join(work, "ids.txt")
    rows = []
    failed = False
    print(f"load average before: {load()}", file=sys.stderr)
    for layers in [int(x) for x in args.layers.split(",")]:
        model = os.path.join(work, f"smollm-135m-{layers}L-f32")
        if not os.path.isfile(os.path.join(model, "config.json")):
            run([args.cli, "synth", "--shape", "smollm-135m", "--layers", str(layers), "--dtype", "f32", "--out", model,
                 "--force", "--quiet"])
        # The same number of ids as the default calibration: 16 sequences of 256, BOS (id 0 or the config's) first.
        with open(os.path.join(model, "config.json")) as f:
            config = json.load(f)
        bos = config.get("bos_token_id", 0) or 0
        vocab = config["vocab_size"]
        with open(ids_path, "w") as f:
            for _ in range(SAMPLES):
                f.write(" ".join(str(i) for i in [bos] + [rng.randrange(vocab) for _ in range(LENGTH - 1)]) + "\n")
        base = ["analyze", model, "--quiet", "--json"]
        ids = timed([args.cli, *base, "--calib-ids", ids_path], args.repeats)
        sampled = timed([args.cli, *base], args.repeats)
        before = timed([args.baseline_cli, *base], args.repeats) if args.baseline_cli else None
        ratio = sampled / ids
        failed |= ratio > args.limit
        rows.append((layers, ids, sampled, ratio, before))
        print(f"{layers} layers: ids {ids:.1f} s, sampled {sampled:.1f} s, ratio {ratio:.2f}"
              + (f", earlier CLI sampled {before:.1f} s" if before else ""), file=sys.stderr)
    print(f"load average after: {load()}", file=sys.stderr)

    print("| SmolLM-135M shape, F32 | analyze, 16 x 256 given ids | analyze, default sampled calibration | sampled / ids |"
          + (" earlier CLI, sampled | speed-up |" if args.baseline_cli else ""))
    print("|---|---|---|---|" + ("---|---|" if args.baseline_cli else ""))
    for layers, ids, sampled, ratio, before in rows:
        line = f"| {layers} layers | {ids:.1f} s | {sampled:.1f} s | {ratio:.2f} |"
        if before:
            line += f" {before:.1f} s | {before / sampled:.1f}x |"
        print(line)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(f"FAILED: sampled calibration costs more than {args.limit}x the given-ids analyze")


if __name__ == "__main__":
    main()

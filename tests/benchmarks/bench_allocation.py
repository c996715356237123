#!/usr/bin/env python3
"""The best preset's cost against the paper preset's, and the allocation's quality (issue 21).

Time: writes SmolLM-135M-shaped F32 checkpoints with `mla-workbench-cli synth --shape smollm-135m --dtype f32` (an
8-layer cut by default, any list with --layers), writes 16 sequences of 256 token ids, and times
`convert --preset paper` and `convert --preset best` on the same ids (`--calib-ids`) under /usr/bin/time (wall time, CPU time,
peak resident memory), one after the other in the same run. Prints best / paper and fails (exit 1) when the ratio on
the 8-layer cut rises above --max-ratio (3 by default): the best preset must stay near the paper's cost.

Quality (--quality): on every shipped real model, `convert --preset paper|best --kv-saving 0.75` (the default sampled
calibration, as tests/tools/results_table.py), then `eval --reference` on 16 held-out sequences sampled from the
original (seeds 1000 + i), and prints the perplexity-gap ratio (ppl_best - ppl_orig) / (ppl_paper - ppl_orig).

Usage: bench_allocation.py [--cli build/app/mla-workbench-cli] [--layers 8[,30,...]] [--quality]
                           [--no-time] [--max-ratio 3] [--threads N] [--work DIR] [--best-flags '--refit-tokens all']
Standard library only.
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

MODELS = [
    ("stories260K", "resources/demo/stories260K.bin"),
    ("aidreams260K", "tests/data/models/aidreams260K/aidreams260K.bin"),
    ("xs260K", "tests/data/models/xs260K/xs260K.bin"),
    ("poem5L", "tests/data/models/poem5L/poem_model.bin"),
]
EVAL_SEQUENCES = 16
EVAL_SEED = 1000


def run_json(cli, *args):
    out = subprocess.run([cli, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def timed(cmd, env=None):
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    # CPU seconds (user + system): on a shared machine, where other jobs stretch the wall time, the ratio of CPU times
    # still says how much work each preset does.
    cpu = sum(float(re.search(rf"{name} time \(seconds\): ([\d.]+)", p.stderr).group(1)) for name in ("User", "System"))
    return wall, rss_kb * 1024, cpu


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def time_presets(cli, work, layers, threads=0, best_flags=()):
    model = os.path.join(work, f"smollm-{layers}")
    if not os.path.exists(model):
        subprocess.run([cli, "synth", "--shape", "smollm-135m", "--layers", str(layers), "--dtype", "f32", "--out", model,
                        "--quiet"], check=True)
    ids = os.path.join(work, "calib-ids.txt")
    rng = random.Random(21)
    with open(ids, "w") as f:
        for _ in range(16):
            f.write(" ".join(str(rng.randrange(1, 49152)) for _ in range(256)) + "\n")
    result = {"layers": layers, "load_before": load()}
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    for preset in ("paper", "best"):
        out = os.path.join(work, f"out-{preset}")
        wall, rss, cpu = timed([cli, "convert", model, "--out", out, "--force", "--preset", preset, "--calib-ids", ids,
                                "--quiet", *(best_flags if preset == "best" else ())], env)
        result[preset] = {"seconds": wall, "rss": rss, "cpu": cpu}
        shutil.rmtree(out, ignore_errors=True)
    result["load_after"] = load()
    result["ratio"] = result["best"]["seconds"] / result["paper"]["seconds"]
    result["rss_ratio"] = result["best"]["rss"] / result["paper"]["rss"]
    result["cpu_ratio"] = result["best"]["cpu"] / result["paper"]["cpu"]
    return result


def quality(cli, work, best_flags=()):
    rows = []
    for name, rel in MODELS:
        model = os.path.join(ROOT, rel)
        length = min(256, run_json(cli, "info", model, "--json")["max_positions"])
        ids = os.path.join(work, name + "-eval.txt")
        lines = []
        for i in range(EVAL_SEQUENCES):
            g = run_json(cli, "generate", model, "--steps", str(length - 1), "--temperature", "1", "--top-p", "1",
                         "--seed", str(EVAL_SEED + i), "--json")
            lines.append(" ".join(str(t) for t in g["prompt_ids"] + g["ids"]))
        with open(ids, "w") as f:
            f.write("\n".join(lines) + "\n")
        row = {"model": name}
        for preset in ("paper", "best"):
            out = os.path.join(work, f"{name}-{preset}")
            args = ["convert", model, "--out", out, "--force", "--preset", preset, "--kv-saving", "0.75", "--quiet", "--json",
                    *(best_flags if preset == "best" else ())]
            try:
                c = run_json(cli, *args)
            except subprocess.CalledProcessError as e:
                if preset != "paper" or "not reachable" not in e.stderr:
                    raise
                c = run_json(cli, *args, "--rope-pairs", "0")  # as tests/tools/results_table.py
            e = run_json(cli, "eval", out, "--reference", model, "--ids", ids, "--json")
            row["original"] = e["reference_ppl"]
            row[preset] = e["ppl"]
            if preset == "best":
                a = c.get("allocation") or {}
                row["split"] = ", ".join(f"{p}/{d}" for p, d in zip(a.get("pairs", []), a.get("latent", [])))
            shutil.rmtree(out, ignore_errors=True)
        row["gap_ratio"] = (row["best"] - row["original"]) / (row["paper"] - row["original"])
        rows.append(row)
        print(f"{name}: original {row['original']:.3f} paper {row['paper']:.3f} best {row['best']:.3f} "
              f"gap ratio {row['gap_ratio']:.4f} split {row['split']}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "app", "mla-workbench-cli"))
    ap.add_argument("--layers", default="8", help="comma-separated layer counts of the SmolLM-135M cut")
    ap.add_argument("--quality", action="store_true", help="also the gap ratios on the shipped real models")
    ap.add_argument("--no-time", action="store_true", help="skip the timing")
    ap.add_argument("--max-ratio", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP_NUM_THREADS for both presets (0: the default, all cores); 1 gives ratios that the load of "
                         "a shared machine barely moves (no thread waits on another)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--best-flags", default="",
                    help="more convert flags for the best preset, e.g. '--refit-tokens all' (the trade-off in docs/benchmarks.md)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="mla-bench-allocation-")
    os.makedirs(work, exist_ok=True)
    failed = False
    if not args.no_time:
        print("| layers | paper s | best s | best / paper | CPU s paper / best | CPU ratio | paper RSS MB | best RSS MB | RSS ratio | load before/after |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for layers in [int(x) for x in args.layers.split(",")]:
            r = time_presets(args.cli, work, layers, args.threads, args.best_flags.split())
            print(f"| {layers} | {r['paper']['seconds']:.1f} | {r['best']['seconds']:.1f} | {r['ratio']:.2f} | "
                  f"{r['paper']['cpu']:.1f} / {r['best']['cpu']:.1f} | {r['cpu_ratio']:.2f} | "
                  f"{r['paper']['rss'] / 2**20:.0f} | {r['best']['rss'] / 2**20:.0f} | {r['rss_ratio']:.2f} | "
                  f"{r['load_before']} / {r['load_after']} |", flush=True)
            if layers == 8 and r["ratio"] > args.max_ratio:
                print(f"FAIL: best / paper = {r['ratio']:.2f} on the 8-layer cut, above {args.max_ratio}", file=sys.stderr)
                failed = True
    if args.quality:
        quality(args.cli, work, args.best_flags.split())
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Produces the DeepSeek-V3 section of docs/results.md: the mha2mla and deepseek-v3 targets side by side at 75% KV
saving on the four real models, and the loss of the DeepSeek-V3 layout split by cause.

For each model: `convert --preset best --kv-saving 0.75` with `--target mha2mla` and with `--target deepseek-v3`, each
evaluated with `eval --reference` on 16 held-out sequences sampled from the original (sampler seeds 1000..1015, as
tests/tools/results_table.py), calibrated on the CLI's default 16 sampled sequences (seed 1). The causes:
  - uniform widths: mha2mla best with ONE pair count and ONE latent width for every layer at the DeepSeek-V3 budget per
    layer (no pair, and the pair count closest to the DeepSeek-V3 rope width; the better kept), against mha2mla best
    with its per-layer allocation;
  - shared rope: deepseek-v3 without its latent norm (deepseek_ablation, in memory) against that uniform mha2mla;
  - latent norm: deepseek-v3 against the same without the norm;
  - biases: none of the four models has attention biases (Qwen2 biases are measured in the tests).
Standard library only.

Usage: deepseek_results.py [--cli build/app/mla-workbench-cli] [--ablation build/tests/core/backend/deepseek_ablation]
                           [--out docs/results.md] [--cache DIR]
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from results_table import MODELS, EVAL_SEQUENCES, EVAL_SEED, context_of, eval_ids, run  # noqa: E402

SAVING = 0.75
MARKER = "<!-- deepseek-v3 section: tests/tools/deepseek_results.py -->"


def cached(cache, key, compute):
    path = os.path.join(cache, key + ".json") if cache else None
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    value = compute()
    if path:
        with open(path, "w") as f:
            json.dump(value, f)
    return value


def convert_and_eval(cli, model, ids, work, name, extra):
    out = os.path.join(work, name)
    t0 = time.time()
    c = run(cli, "convert", model, "--out", out, "--quiet", "--json", *extra)
    seconds = time.time() - t0
    e = run(cli, "eval", out, "--reference", model, "--ids", ids, "--json")
    shutil.rmtree(out, ignore_errors=True)
    return {"convert": c, "ppl": e["ppl"], "kl": e["kl"], "top1": e["top1_agreement"], "reference_ppl": e["reference_ppl"],
            "kv": c["kv_elements_per_token"], "seconds": seconds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "app", "mla-workbench-cli"))
    ap.add_argument("--ablation", default=os.path.join(ROOT, "build", "tests", "core", "backend", "deepseek_ablation"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results.md"))
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mla-deepseek-results-")
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    started = time.time()
    rows = []
    for name, rel, description in MODELS:
        model = os.path.join(ROOT, rel)
        info = run(args.cli, "info", model, "--json")
        length = min(256, info["max_positions"])
        ids = os.path.join(work, name + "-eval.txt")
        eval_ids(args.cli, model, ids, length)
        common = ["--preset", "best", "--kv-saving", str(SAVING)]
        mha = cached(args.cache, f"{name}-mha2mla", lambda: convert_and_eval(args.cli, model, ids, work, "mha", common))
        ds = cached(args.cache, f"{name}-deepseek", lambda: convert_and_eval(
            args.cli, model, ids, work, "ds", common + ["--target", "deepseek-v3"]))
        per_layer = ds["convert"]["kv_lora_rank"] + ds["convert"]["qk_rope_head_dim"]
        kv_heads = info["kv_heads"]
        # Pair counts tried with one width for every layer: none, and the one whose rope keys come closest to the
        # DeepSeek-V3 shared head's width (each try is a full best conversion; the machine is small).
        closest = round(ds["convert"]["qk_rope_head_dim"] / (2 * kv_heads))
        uniform = []
        for p in sorted({0, closest}):
            latent = per_layer - 2 * p * kv_heads
            if latent < 1:
                continue
            uniform.append(cached(args.cache, f"{name}-uniform-{p}", lambda: convert_and_eval(
                args.cli, model, ids, work, f"u{p}", common[:2] + ["--rope-pairs", str(p), "--latent-dim", str(latent)])))
            uniform[-1]["pairs"], uniform[-1]["latent"] = p, latent
        best_uniform = min(uniform, key=lambda r: r["kl"])
        ablation = cached(args.cache, f"{name}-ablation", lambda: json.loads(subprocess.run(
            [args.ablation, model, ids, "--preset", "best", "--kv-saving", str(SAVING), "--without-norm-only"], check=True,
            capture_output=True,
            text=True).stdout))
        no_norm = next(v for v in ablation["variants"] if not v["latent_norm"])
        rows.append({"model": name, "description": description, "mha": mha, "ds": ds, "uniform": best_uniform,
                     "no_norm": no_norm, "original_kv": mha["convert"]["kv_elements_per_token_original"]})
        print(f"{name}: mha2mla KL {mha['kl']:.4f}, deepseek-v3 KL {ds['kl']:.4f}, uniform mha2mla {best_uniform['kl']:.4f} "
              f"(p={best_uniform['pairs']}), without norm {no_norm['kl']:.4f}", flush=True)
    write_section(args.out, rows, time.time() - started)


def write_section(path, rows, seconds):
    lines = [
        MARKER,
        "# Deployable layout: `mha2mla` against `deepseek-v3` at 75% KV saving",
        "",
        "Produced by `tests/tools/deepseek_results.py` (CLI `convert --preset best --kv-saving 0.75 [--target deepseek-v3]`, "
        "then `eval --reference`, and `deepseek_ablation` for the variant without the latent norm). Same evaluation as "
        f"above: {EVAL_SEQUENCES} held-out sequences sampled from the original (seeds {EVAL_SEED}..{EVAL_SEED + EVAL_SEQUENCES - 1}), "
        "calibration on the CLI's default 16 sampled sequences (seed 1). KL is KL(original || converted) in nats per token.",
        "",
        f"Run on {datetime.date.today().isoformat()}, {os.cpu_count()} cores, {seconds / 60:.0f} min in all.",
        "",
        "| model | KV (orig → conv) | original PPL | mha2mla PPL | deepseek-v3 PPL | mha2mla KL | deepseek-v3 KL | KL ratio | "
        "mha2mla top-1 | deepseek-v3 top-1 | deepseek-v3 widths (latent + rope, rope_theta) | goal ≤ 1.25x |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, d = r["mha"], r["ds"]
        ratio = d["kl"] / m["kl"] if m["kl"] > 0 else float("inf")
        c = d["convert"]
        lines.append(
            f"| {r['model']} | {r['original_kv']} → {m['kv']} / {d['kv']} | {m['reference_ppl']:.3f} | {m['ppl']:.3f} | "
            f"{d['ppl']:.3f} | {m['kl']:.4f} | {d['kl']:.4f} | {ratio:.2f} | {m['top1']:.3f} | {d['top1']:.3f} | "
            f"{c['kv_lora_rank']} + {c['qk_rope_head_dim']}, {c['rope_theta']:g} | {'yes' if ratio <= 1.25 else 'no'} |")
    lines += [
        "",
        "## Where the DeepSeek-V3 layout loses, per cause",
        "",
        "KL differences between variants at the same cache size (nats per token; negative: the step helped):",
        "",
        "| model | mha2mla best (per-layer widths) | uniform widths: mha2mla, one width for all layers | shared RoPE head: "
        "deepseek-v3 without latent norm | latent norm: deepseek-v3 | biases |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, u, n, w = r["mha"]["kl"], r["uniform"]["kl"], r["no_norm"]["kl"], r["ds"]["kl"]
        lines.append(
            f"| {r['model']} | {m:.4f} | {u:.4f} ({u - m:+.4f}; {r['uniform']['pairs']} pairs per KV head, latent "
            f"{r['uniform']['latent']}) | {n:.4f} ({n - u:+.4f}) | {w:.4f} ({w - n:+.4f}) | none in this model |")
    lines += [
        "",
        "The uniform-width column tries no RoPE pair and the pair count whose rope keys come closest to the DeepSeek-V3 "
        "head's width (the budget per layer is the DeepSeek-V3 one) and keeps the better on the evaluation set, so it is, "
        "if anything, optimistic for mha2mla. The variant without the latent norm is the same conversion with the engine's "
        "RMSNorm of the latent switched off (in memory: no engine runs it, so it cannot be exported).",
        "",
    ]
    text = "\n".join(lines)
    existing = open(path).read() if os.path.exists(path) else ""
    head = existing.split(MARKER)[0].rstrip() + "\n\n" if existing else ""
    with open(path, "w") as f:
        f.write(head + text)
    print("wrote", path)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The quantised KV cache on the real models: writes the section of docs/results.md between the markers
<!-- kv-cache-results --> and <!-- /kv-cache-results -->, and with --choices prints the measurements behind the
format's choices (docs/kv-cache.md).

For each real model: the `best` conversions at 50 / 75 / 87.5% saving (the first table of docs/results.md) and the
original, each with its KV cache stored as bf16, int8 and int4 (`eval --kv-cache TYPE --reference ORIGINAL`, the
reference keeping a float32 cache), on the held-out sequences of results_table.py (sampler seeds 1000 + i).
--choices adds, per CLI build given with --cli NAME=PATH (e.g. builds whose int8 / int4 differ in the zero point:
the table in core/engine/kv_cache_format.cpp), the error each cache variant adds to the same model with a float32
cache: KL(model, f32 cache || model, variant) and top-1 agreement. Standard library only.

Usage: kv_cache_results.py [--cli [NAME=]PATH ...] [--work DIR] [--out docs/results.md] [--choices] [--quick]
"""
import argparse
import datetime
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import results_table  # noqa: E402

FORMATS = ["bf16", "int8", "int4"]
# (latent, rope) variants for --choices: the rope part under an int4 / int8 latent, and group sizes.
VARIANTS = [("int8", "int8"), ("int8", "bf16"), ("int4", "int4"), ("int4", "int8"), ("int4", "bf16"), ("int4/32", ""),
            ("int4/16", "")]
ORIGINAL_VARIANTS = [("int8", ""), ("int4", ""), ("int4/32", ""), ("int4/16", "")]
BEGIN, END = "<!-- kv-cache-results -->", "<!-- /kv-cache-results -->"


def run(cli, *args):
    return results_table.run(cli, *args)


def models_and_conversions(cli, work, quick, savings=None):
    models = results_table.MODELS[:1] if quick else results_table.MODELS
    savings = [0.75] if quick else (savings or results_table.SAVINGS)
    cases = []
    for name, rel, _ in models:
        model = os.path.join(ROOT, rel)
        ids = os.path.join(work, name + "-eval.txt")
        if not os.path.exists(ids):
            results_table.eval_ids(cli, model, ids, min(256, results_table.context_of(cli, model)))
        conversions = []
        for saving in savings:
            out = os.path.join(work, f"{name}-best-{saving}")
            if not os.path.exists(os.path.join(out, "config.json")):  # converted by an earlier run: reused
                run(cli, "convert", model, "--out", out, "--preset", "best", "--kv-saving", str(saving), "--quiet", "--json")
            conversions.append((saving, out))
        cases.append((name, model, ids, conversions))
    return cases


def evaluate(cli, model, reference, ids, latent, rope=""):
    extra = ["--kv-cache", latent] + (["--kv-cache-rope", rope] if rope else [])
    e = run(cli, "eval", model, "--reference", reference, "--ids", ids, "--json", *extra)
    return {"name": e["kv_cache"], "ppl": e["ppl"], "kl": e["kl"], "top1": e["top1_agreement"],
            "bytes": e["kv_bytes_per_token"], "reference_ppl": e["reference_ppl"]}


def results_section(cli, cases, seconds_before):
    started = time.time()
    lines = [BEGIN, "## With a quantised KV cache", "",
             "Produced by `tests/tools/kv_cache_results.py`. The `best` conversions of the table above and each original",
             "with its KV cache stored as bf16, int8 and int4 (`eval --kv-cache TYPE --reference ORIGINAL`): per token,",
             "groups of 64 elements or the whole row when narrower, each with an F16 scale and an F16 minimum; under an",
             "int4 latent the RoPE keys of MLA layers are int8, the default",
             "(`docs/kv-cache.md`). KL and top-1 are against the original with a float32 cache, on the held-out sequences",
             "above. Bytes per token are what the engine allocated, scales included, over all layers; the original with a",
             "BF16 cache is 100%.", ""]
    table = ["| model | KV saving (elements) | cache | KV bytes/token | of original BF16 | PPL | KL | top-1 |",
             "|---|---|---|---|---|---|---|---|"]
    answers = []
    for name, model, ids, conversions in cases:
        originals = {f: evaluate(cli, model, model, ids, f) for f in FORMATS}
        base = originals["bf16"]["bytes"]
        for f in FORMATS:
            o = originals[f]
            table.append(f"| {name} | original | {o['name']} | {o['bytes']:.0f} | {100 * o['bytes'] / base:.1f}% | "
                         f"{o['ppl']:.3f} | {o['kl']:.4f} | {o['top1']:.3f} |")
        mla = []
        for saving, out in conversions:
            for f in FORMATS:
                r = evaluate(cli, out, model, ids, f)
                mla.append((saving, r))
                table.append(f"| {name} | {saving * 100:.1f}% | {r['name']} | {r['bytes']:.0f} | {100 * r['bytes'] / base:.1f}% | "
                             f"{r['ppl']:.3f} | {r['kl']:.4f} | {r['top1']:.3f} |")
                print(f"{name} {saving} {r['name']}: {r['bytes']:.0f} B/token kl {r['kl']:.4f}", flush=True)
        plain = originals["int4"]
        text = f"- **{name}**: the original with int4, {plain['bytes']:.0f} B/token, KL {plain['kl']:.4f}, top-1 {plain['top1']:.3f}. "
        fitting = [(s, r) for s, r in mla if r["bytes"] <= plain["bytes"]]
        if fitting:
            s, best = min(fitting, key=lambda x: x[1]["kl"])
            text += (f"The best MLA setting in no more bytes: {s * 100:.1f}% + {best['name']}, {best['bytes']:.0f} B/token, KL "
                     f"{best['kl']:.4f}, top-1 {best['top1']:.3f}: **{'better' if best['kl'] < plain['kl'] else 'worse'}**.")
        else:
            text += "No MLA setting above fits in those bytes."
        answers.append(text)
    minutes = (time.time() - started + seconds_before) / 60
    lines += table
    lines += ["", "### Does MLA + int4 beat plain int4 at equal bytes?", "",
              "Per model, the original with its own int4 cache against the MLA setting of the table with the lowest KL",
              "among those that allocate no more bytes per token:", ""]
    lines += answers
    cpu = platform_line()
    lines += ["", f"Run on {datetime.date.today().isoformat()}, {cpu}, {minutes:.0f} min in all.", END]
    return "\n".join(lines) + "\n"


def platform_line():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def choices(clis, cases):
    for label, cli in clis:
        print(f"\n### {label}\n")
        print("| model | saving | cache | bytes/token | KL vs f32 cache | top-1 vs f32 cache |")
        print("|---|---|---|---|---|---|")
        for name, model, ids, conversions in cases:
            for saving, path in [("original", model)] + [(f"{s * 100:.1f}%", p) for s, p in conversions]:
                variants = ORIGINAL_VARIANTS if saving == "original" else VARIANTS
                for latent, rope in variants:
                    e = evaluate(cli, path, path, ids, latent, rope)
                    print(f"| {name} | {saving} | {e['name']} | {e['bytes']:.0f} | {e['kl']:.5f} | {e['top1']:.4f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", action="append", default=[], help="[NAME=]PATH of a CLI build (default: build/app/...)")
    ap.add_argument("--work", default="/tmp/mla-kv-cache-results", help="converted models and ids, reused when present")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results.md"))
    ap.add_argument("--choices", action="store_true", help="print the choice measurements instead of writing the section")
    ap.add_argument("--quick", action="store_true", help="one model, 75%% only")
    ap.add_argument("--savings", default=None, help="comma-separated KV savings (default 0.5,0.75,0.875)")
    args = ap.parse_args()
    clis = [c.split("=", 1) if "=" in c else [c, c] for c in args.cli]
    if not clis:
        clis = [["build", os.path.join(ROOT, "build", "app", "mla-workbench-cli")]]
    os.makedirs(args.work, exist_ok=True)
    started = time.time()
    savings = [float(x) for x in args.savings.split(",")] if args.savings else None
    cases = models_and_conversions(clis[0][1], args.work, args.quick, savings)
    if args.choices:
        choices(clis, cases)
        return 0
    section = results_section(clis[0][1], cases, time.time() - started)
    text = open(args.out).read() if os.path.exists(args.out) else ""
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(args.out, "w") as f:
        f.write(text)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

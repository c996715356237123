#!/usr/bin/env python3
"""Produces the recovery section of docs/results.md: held-out KL and perplexity against training tokens when the
recipe (resources/recovery/distill.py) distils each real model into its 75%-saving conversions.

For each model: the teacher is the original written as a folder unchanged (`convert --rope-pairs HEAD_DIM/2 --svd
none`); the students are `convert --preset paper|best --kv-saving 0.75` (as tests/tools/results_table.py makes them);
the held-out set is the one of results_table.py (16 sequences sampled from the original, sampler seeds 1000..1015);
training data are fresh sequences sampled from the teacher by the recipe (--sample, seed 0, disjoint draws), at most
--tokens training tokens in one pass (every sequence seen once). The KL after training is re-measured by
`mla-workbench-cli eval --reference` on the written folder, and the table shows that number.

Usage (Debian's python3 with python3-torch; the CLI built):
    tests/tools/recovery_table.py [--cli build/app/mla-workbench-cli] [--tokens 1000000] [--out docs/results.md]
                                  [--models stories260K,...] [--starts "paper healed,best healed"] [--cache DIR]
The section between the recovery markers in --out is replaced; the rest of the file is kept.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from results_table import EVAL_SEED, EVAL_SEQUENCES, MODELS, eval_ids, run  # noqa: E402

BEGIN = "<!-- recovery:begin (tests/tools/recovery_table.py) -->"
END = "<!-- recovery:end -->"
CHECKPOINTS = 8  # held-out evaluations along the run


def python_env():
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), OPENBLAS_NUM_THREADS="1")
    openblas = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
    if os.path.exists(os.path.join(openblas, "libblas.so.3")):
        env["LD_LIBRARY_PATH"] = openblas + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def distill(python, teacher, student, heldout, out, length, tokens, lr, log):
    batch = max(1, 4096 // length)  # 4096 tokens per step
    steps = max(1, tokens // (batch * length))
    cmd = [python, os.path.join(ROOT, "resources", "recovery", "distill.py"), "--teacher", teacher, "--student", student,
           "--sample", str(steps * batch), "--seq-len", str(length), "--eval-ids", heldout, "--steps", str(steps),
           "--batch", str(batch), "--lr", str(lr), "--warmup", str(max(1, steps // 20)),
           "--eval-every", str(max(1, steps // CHECKPOINTS)), "--log-every", str(max(1, steps // 20)), "--out", out]
    last = ""
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=python_env())
        for line in p.stdout:  # the progress lines, as they come
            f.write(line)
            f.flush()
            last = line if line.strip() else last
    if p.wait() != 0:
        raise SystemExit(f"distill.py failed for {student} (see {log})")
    return json.loads(last)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "app", "mla-workbench-cli"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results.md"))
    ap.add_argument("--tokens", type=int, default=1000000, help="training tokens per run (default 1M)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--models", default=",".join(m[0] for m in MODELS))
    ap.add_argument("--cache", help="folder keeping finished runs, so a rerun resumes")
    ap.add_argument("--no-healed", action="store_true", help="leave out the healed starts (convert --heal)")
    ap.add_argument("--starts", default="paper,best,paper healed,best healed",
                    help="comma-separated starts to run (default all four: paper,best,paper healed,best healed)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mla-recovery-")
    cache = args.cache or work
    os.makedirs(cache, exist_ok=True)
    started = time.time()
    rows = []
    for name, rel, description in MODELS:
        if name not in args.models.split(","):
            continue
        model = os.path.join(ROOT, rel)
        info = run(args.cli, "info", model, "--json")
        length = min(256, info["max_positions"])
        heldout = os.path.join(work, name + "-eval.txt")
        eval_ids(args.cli, model, heldout, length)
        teacher = os.path.join(work, name + "-teacher")
        run(args.cli, "convert", model, "--out", teacher, "--rope-strategy", "high", "--rope-pairs",
            str(info["head_dim"] // 2), "--svd", "none", "--quiet", "--json")
        for preset, healed in (("paper", False), ("best", False), ("paper", True), ("best", True)):
            label = preset + (" healed" if healed else "")
            if (healed and args.no_healed) or label not in args.starts.split(","):
                continue
            key = os.path.join(cache, f"{name}-{label.replace(' ', '-')}.json")
            if os.path.exists(key):
                rows.append(json.load(open(key)))
                continue
            student = os.path.join(work, f"{name}-{label.replace(' ', '-')}")
            # Healed starts: the block-wise healer at its defaults (docs/healing.md), as `convert --heal` runs it.
            flags = ["--preset", preset, "--kv-saving", "0.75", "--quiet", "--json"] + (["--heal"] if healed else [])
            try:
                run(args.cli, "convert", model, "--out", student, *flags)
            except subprocess.CalledProcessError:
                run(args.cli, "convert", model, "--out", student, *flags, "--rope-pairs", "0")
            out = student + "-recovered"
            t0 = time.time()
            s = distill(args.python, teacher, student, heldout, out, length, args.tokens, args.lr,
                        os.path.join(cache, f"{name}-{label.replace(' ', '-')}.log"))
            e = run(args.cli, "eval", out, "--reference", model, "--ids", heldout, "--json")
            row = {"model": name, "preset": label, "length": length, "kl_before": s["kl_before"],
                   "kl_after": e["kl"], "kl_after_recipe": s["kl_after"], "ppl_before": s["ppl_before"],
                   "ppl_after": e["ppl"], "original_ppl": e["reference_ppl"], "tokens": s["tokens"],
                   "unique_sequences": s["train_sequences"], "steps": s["steps"], "batch": s["batch"],
                   "curve": [{"tokens": 0, "kl": s["kl_before"], "ppl": s["ppl_before"]}]
                   + [{"tokens": v["tokens"], "kl": v["kl"], "ppl": v["ppl"]} for v in s["evals"]]
                   + [{"tokens": s["tokens"], "kl": e["kl"], "ppl": e["ppl"]}],
                   "seconds": time.time() - t0}
            json.dump(row, open(key, "w"))
            print(f"{name} {label}: KL {row['kl_before']:.4f} -> {row['kl_after']:.4f}, PPL {row['ppl_before']:.3f} -> "
                  f"{row['ppl_after']:.3f} (original {row['original_ppl']:.3f}) on {row['tokens']} tokens in "
                  f"{row['seconds']:.0f} s", flush=True)
            rows.append(row)
    write_section(args.out, rows, args, time.time() - started)


def write_section(path, rows, args, seconds):
    lines = [BEGIN, "", "## Recovery by distillation (the PyTorch recipe)", "",
             "Produced by `tests/tools/recovery_table.py`: each 75%-saving conversion distilled from the original by",
             "`resources/recovery/distill.py` (KL on the original's next-token distributions, attention parameters",
             f"only, AdamW, lr {args.lr:g} with warm-up and cosine decay, 4096 tokens per step, one process on the CPU),",
             f"on at most {args.tokens:,} training tokens sampled from the original by the recipe (each sequence seen",
             f"once). Held-out: the {EVAL_SEQUENCES} sequences of the table above (sampler seeds {EVAL_SEED}..",
             f"{EVAL_SEED + EVAL_SEQUENCES - 1}); the KL after is `mla-workbench-cli eval --reference` on the written",
             "folder. Goal (issue 14): with at most 1M training tokens the recipe lowers the held-out KL by at least",
             "a further 20%.", "",
             f"Run on {datetime.date.today().isoformat()}, {os.cpu_count()} cores shared with other jobs, "
             f"{seconds / 60:.0f} min in all.", "",
             "| model | start | tokens | KL before → after | change | PPL before → after (original) | goal met |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        change = r["kl_after"] / r["kl_before"] - 1
        lines.append(f"| {r['model']} | {r['preset']} | {r['tokens']:,} | {r['kl_before']:.4f} → {r['kl_after']:.4f} | "
                     f"{change * 100:+.1f}% | {r['ppl_before']:.3f} → {r['ppl_after']:.3f} ({r['original_ppl']:.3f}) | "
                     f"{'yes' if change <= -0.2 else 'no'} |")
    lines += ["", "Held-out KL (and perplexity) against training tokens:", "",
              "| model | start | " + " | ".join(f"point {i}" for i in range(CHECKPOINTS + 2)) + " |",
              "|---|---|" + "---|" * (CHECKPOINTS + 2)]
    for r in rows:
        cells = [f"{p['tokens'] // 1000}k: {p['kl']:.3f} ({p['ppl']:.2f})" for p in r["curve"]]
        cells += [""] * (CHECKPOINTS + 2 - len(cells))
        lines.append(f"| {r['model']} | {r['preset']} | " + " | ".join(cells) + " |")
    lines += ["", "Healed starts are `convert --preset P --kv-saving 0.75 --heal` (block-wise healing at its defaults,",
              "docs/healing.md) before the recipe; the goal of issue 14 (a further 20% on the healed model) is judged",
              "on those rows. The prototype's figures for comparison: KL 0.34 on stories260K from `best` (1.6M tokens),",
              "0.54 on a 656K TinyStories model.",
              "", END]
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print("wrote", path)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Compares our CPU logits with Hugging Face transformers on the folders hf_parity_prepare wrote (docs/hf-parity.md).

    python3 tests/tools/hf_parity.py DIR [--json OUT.json]

For every DIR/<name>/ holding logits.f32 and ids.txt: loads the model with AutoModelForCausalLM.from_pretrained (the
folder itself, or the path in source.txt), float32, eager attention, on the CPU, runs the same ids and reports the
largest absolute difference of the logits, that divided by the largest |logit|, and whether the argmax agrees at
every position. A folder transformers cannot load is reported with the error (not a crash).
"""
import argparse
import json
import os
import sys

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--json")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |diff| / max |logit| to pass")
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_grad_enabled(False)
    results = []
    for name in sorted(os.listdir(args.dir)):
        folder = os.path.join(args.dir, name)
        logits_file = os.path.join(folder, "logits.f32")
        if not os.path.isfile(logits_file):
            continue
        ids = [int(x) for x in open(os.path.join(folder, "ids.txt")).read().split()]
        ours = np.fromfile(logits_file, dtype=np.float32).reshape(len(ids), -1)
        source = folder
        if os.path.isfile(os.path.join(folder, "source.txt")):
            source = open(os.path.join(folder, "source.txt")).read().strip()
        entry = {"model": name, "tokens": len(ids), "vocab": int(ours.shape[1])}
        try:
            config = json.load(open(os.path.join(source, "config.json")))
            entry["model_type"] = config.get("model_type")
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation="eager")
            model.eval()
            out = model(torch.tensor([ids])).logits[0].float().numpy()
            diff = np.abs(out - ours)
            scale = float(np.abs(out).max())
            entry.update({
                "max_abs_diff": float(diff.max()),
                "max_rel_diff": float(diff.max() / scale),
                "max_abs_logit": scale,
                "argmax_agreement": float(np.mean(out.argmax(-1) == ours.argmax(-1))),
                "passed": bool(diff.max() / scale <= args.tolerance),
            })
        except Exception as e:  # report, do not crash: which config transformers cannot load is a result too
            entry.update({"error": f"{type(e).__name__}: {e}"[:500], "passed": False})
        results.append(entry)
        print(json.dumps(entry), flush=True)

    summary = {"transformers": transformers.__version__, "torch": torch.__version__, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    failed = [r["model"] for r in results if not r.get("passed")]
    print(f"transformers {transformers.__version__}: {len(results) - len(failed)}/{len(results)} within tolerance", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

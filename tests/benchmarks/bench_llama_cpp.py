#!/usr/bin/env python3
"""Our engine against the real llama.cpp on the same GGUF files (docs/benchmarks.md, "Against llama.cpp").

A SmolLM-135M-shaped synthetic model (random weights: speed only) is exported with `mla-workbench-cli export` as
GGUF in F32 and F16 (and, given --extra FILE.gguf, any other GGUF, e.g. a deepseek2 export). Each file is run by
both engines with the same thread count: prefill of CONTEXT tokens, then DECODE greedy tokens one at a time
(tests/benchmarks/bench_gguf_decode for ours, tests/llama_cpp/llama_cpp_run.mjs's "bench" for llama.cpp, which
runs with its defaults: F16 KV cache, flash attention as it decides). The two engines alternate, ROUNDS times, and
the best of each is kept, so both see the same machine; the ratio ours / llama.cpp is printed per file and context,
with the KV buffer each allocated.

  tests/benchmarks/bench_llama_cpp.py [--build build] [--threads 2] [--contexts 256,2048] [--decode 32]
                                      [--rounds 3] [--extra FILE.gguf ...] [--json OUT.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(cmd, env=None):
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"bench_llama_cpp: {' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def prepare(build, cache):
    cli = build / "app" / "mla-workbench-cli"
    folder = cache / "smollm-135m-f32"
    if not (folder / "config.json").exists():
        print(f"writing {folder} ...", flush=True)
        run([cli, "synth", "--shape", "smollm-135m", "--dtype", "f32", "--out", folder, "--quiet"])
    files = []
    for dtype in ("f32", "f16"):
        out = cache / f"smollm-135m-{dtype}.gguf"
        if not out.exists():
            run([cli, "export", folder, "--format", "gguf", "--out", out, "--dtype", dtype,
                 "--tokenizer", ROOT / "resources" / "demo" / "tok512.bin", "--quiet"])
        files.append(out)
    return files


def ours(build, model, contexts, decode, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="close")
    out = run([build / "tests" / "benchmarks" / "bench_gguf_decode", model, "--context", ",".join(map(str, contexts)),
               "--decode", str(decode), "--repeats", "1"], env)
    return {row["context"]: row for row in json.loads(out)["bench"]}


def llama_cpp(model, contexts, decode, threads):
    job = {"threads": threads, "runs": [{"model": str(model), "kv_type": "f16", "flash_attention": "auto",
                                         "bench": {"context": contexts, "decode": decode, "vocab": 256}}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        out = run(["bash", ROOT / "tests" / "llama_cpp" / "run.sh", f.name])
    finally:
        os.unlink(f.name)
    result = json.loads(out)["runs"][0]
    if "error" in result:
        sys.exit(f"bench_llama_cpp: llama.cpp failed on {model}: {result['error']}")
    return {row["context"]: row for row in result["bench"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build", type=Path)
    p.add_argument("--threads", default=2, type=int)
    p.add_argument("--contexts", default="256,2048")
    p.add_argument("--decode", default=32, type=int)
    p.add_argument("--rounds", default=3, type=int)
    p.add_argument("--extra", nargs="*", default=[], type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    contexts = [int(c) for c in a.contexts.split(",")]
    build = a.build.resolve()
    check = subprocess.run(["bash", ROOT / "tests" / "llama_cpp" / "run.sh", "--version"], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"bench_llama_cpp: llama.cpp is not installed: {check.stderr.strip()}")
    files = prepare(build, build / "bench-cache" / "llama-cpp") + a.extra
    best = {}
    for r in range(a.rounds):
        for model in files:
            engines = (("ours", lambda: ours(build, model, contexts, a.decode, a.threads)),
                       ("llama.cpp", lambda: llama_cpp(model, contexts, a.decode, a.threads)))
            for engine, measure in engines:
                for context, row in measure().items():
                    key = (model.name, context, engine)
                    previous = best.get(key)
                    if previous is None or row["decode_tps"] > previous["decode_tps"]:
                        best[key] = dict(row, prefill_tps=max(row["prefill_tps"], (previous or row)["prefill_tps"]))
                    elif row["prefill_tps"] > previous["prefill_tps"]:
                        previous["prefill_tps"] = row["prefill_tps"]
        print(f"round {r + 1} of {a.rounds} done", flush=True)

    print(f"\n{check.stdout.strip()}; {a.threads} threads; decode {a.decode} tokens after a prefill of the context; "
          f"best of {a.rounds} alternating rounds\n")
    print("| file | context | ours decode tok/s | llama.cpp decode tok/s | ratio | ours prefill tok/s | "
          "llama.cpp prefill tok/s | llama.cpp KV buffer |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    for model in files:
        for context in contexts:
            o = best[(model.name, context, "ours")]
            l = best[(model.name, context, "llama.cpp")]
            kv = l.get("kv_cache") or {}
            kv_text = f"{kv.get('mib', '?')} MiB ({kv.get('k_type', '?')}, {kv.get('cells', '?')} cells)"
            print(f"| {model.name} | {context} | {o['decode_tps']:.1f} | {l['decode_tps']:.1f} | "
                  f"{o['decode_tps'] / l['decode_tps']:.2f} | {o['prefill_tps']:.0f} | {l['prefill_tps']:.0f} | {kv_text} |")
            table.append({"file": model.name, "context": context, "ours": o, "llama_cpp": l,
                          "decode_ratio": o["decode_tps"] / l["decode_tps"]})
    if a.json:
        a.json.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()

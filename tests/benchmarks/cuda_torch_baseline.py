#!/usr/bin/env python3
"""PyTorch baselines for the CUDA backend benchmark (docs/benchmarks.md, "CUDA backend"), on the same GPU.

    cuda_torch_baseline.py decompositions DIR [--repeat R]
        DIR holds joint.npy, key.npy, value.npy (cuda_bench decompositions --dump DIR): the same matrices our
        benchmark decomposes. Times torch.linalg.svd (thin), svdvals and eigh of the smaller Gram matrix, in float32
        and float64; the Gram product is timed separately.
    cuda_torch_baseline.py forward MODEL [--seqs N] [--len T] [--dtype bf16|f32] [--repeat R]
        PyTorch's eager forward (transformers, the decoder stack without the output head, as our calibration runs
        it) over N random sequences of T tokens: tokens per second.
Prints one JSON object.
"""
import argparse
import json
import time

import numpy as np
import torch


def timed(fn, repeat):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def decompositions(args):
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "matrices": {}}
    for name in ("joint", "key", "value"):
        m32 = torch.from_numpy(np.load(f"{args.dir}/{name}.npy")).cuda()
        r = {"shape": list(m32.shape)}
        for label, m in (("float32", m32), ("float64", m32.double())):
            g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
            entry = {
                "svdvals_s": timed(lambda: torch.linalg.svdvals(m), args.repeat),
                "eigvalsh_gram_s": timed(lambda: torch.linalg.eigvalsh(g), args.repeat),
                "eigh_gram_s": timed(lambda: torch.linalg.eigh(g), args.repeat),
                "gram_product_s": timed(lambda: (m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T), args.repeat),
            }
            if name == "joint":
                entry["svd_thin_s"] = timed(lambda: torch.linalg.svd(m, full_matrices=False), args.repeat)
            r[label] = entry
        out["matrices"][name] = r
        del m32
        torch.cuda.empty_cache()
    print(json.dumps(out, indent=2))


def forward(args):
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).cuda().eval()
    load = time.perf_counter() - t0
    torch.set_grad_enabled(False)
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(3, model.config.vocab_size, (args.seqs, args.len), generator=gen)
    ids[:, 0] = 1
    ids = ids.cuda()
    body = model.model  # the decoder stack and final norm, no output head (our calibration computes no logits)

    def run():
        body(input_ids=ids, use_cache=False)

    seconds = timed(run, args.repeat)
    tokens = args.seqs * args.len
    print(json.dumps({
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__, "dtype": args.dtype,
        "attention": model.config._attn_implementation, "sequences": args.seqs, "length": args.len, "tokens": tokens,
        "layers": model.config.num_hidden_layers, "seconds": seconds, "tokens_per_second": tokens / seconds,
        "load_seconds": load}, indent=2))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    d = sub.add_parser("decompositions")
    d.add_argument("dir")
    d.add_argument("--repeat", type=int, default=3)
    f = sub.add_parser("forward")
    f.add_argument("model")
    f.add_argument("--seqs", type=int, default=16)
    f.add_argument("--len", type=int, default=256)
    f.add_argument("--dtype", default="bf16")
    f.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    decompositions(args) if args.mode == "decompositions" else forward(args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""An independent reference of the DeepSeek-V2/V3 forward pass, written from Hugging Face transformers' public code
(models/deepseek_v3/modeling_deepseek_v3.py and modular_deepseek_v3.py, models/deepseek_v2/modular_deepseek_v2.py,
modeling_rope_utils.py: _compute_default_rope_parameters and _compute_yarn_parameters), not from MLA Workbench's
C++ engine. numpy only, float64; safetensors are read by hand (8-byte header length, JSON header, raw data).

    python3 tests/tools/deepseek_reference.py DIR [DIR ...] [--tolerance 1e-4] [--json OUT]

Each DIR holds a Hugging Face folder (config.json, model.safetensors or shards with model.safetensors.index.json),
ids.txt (the token ids of one sequence) and logits.f32 (float32 [tokens, vocab]: the logits to check). Exit status 0
when every folder's max |reference - logits| / max |reference| is within the tolerance and the argmax agrees at
every position.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# -- safetensors, by hand ---------------------------------------------------------------------------------------------


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[base + begin:base + end]
        shape = tuple(entry["shape"])
        dtype = entry["dtype"]
        if dtype == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: dtype {dtype} of {name} is not handled here")
        tensors[name] = arr.astype(np.float64).reshape(shape)
    return tensors


def read_folder(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(os.path.join(folder, f)))
    return tensors


# -- the model, as transformers computes it -----------------------------------------------------------------------------


def rms_norm(x, weight, eps):
    # DeepseekV3RMSNorm / LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return weight * (x / np.sqrt(variance + eps))


def yarn_get_mscale(scale=1.0, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def rope_parameters(config):
    """inv_freq and attention_scaling for the rotary part (head_dim = qk_rope_head_dim in DeepseekV2/V3Config)."""
    dim = config["qk_rope_head_dim"]
    base = config.get("rope_theta", 10000.0)
    scaling = config.get("rope_scaling")
    rope_type = "default"
    if isinstance(scaling, dict):
        rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)), 1.0, rope_type
    assert rope_type == "yarn", rope_type
    factor = scaling["factor"]
    attention_factor = scaling.get("attention_factor")
    mscale = scaling.get("mscale")
    mscale_all_dim = scaling.get("mscale_all_dim")
    original_max = scaling.get("original_max_position_embeddings") or config["max_position_embeddings"]

    def get_mscale(scale, m=1):
        if scale <= 1:
            return 1.0
        return 0.1 * m * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def find_correction_dim(num_rotations):
        return (dim * math.log(original_max / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = find_correction_dim(beta_fast), find_correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    pos_freqs = base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    extrapolation_factor = 1 - ramp
    inv_freq = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv_freq, attention_factor, rope_type


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def deinterleave(x):
    # apply_rotary_pos_emb_interleave: view(d/2, 2).transpose -> [x0, x2, ..., x1, x3, ...]
    return np.concatenate([x[..., 0::2], x[..., 1::2]], axis=-1)


def forward(config, w, ids):
    model_type = config["model_type"]
    T = len(ids)
    H = config["num_attention_heads"]
    nope, rope, vdim = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
    kv_lora, q_lora = config["kv_lora_rank"], config.get("q_lora_rank")
    eps = config.get("rms_norm_eps", 1e-6)
    bias = config.get("attention_bias", False)
    interleave = True if model_type == "deepseek_v2" else config.get("rope_interleave", True)
    qk = nope + rope
    inv_freq, attention_scaling, rope_type = rope_parameters(config)
    scaling = qk ** -0.5
    if model_type == "deepseek_v3" and rope_type != "default":
        mscale_all_dim = config["rope_scaling"].get("mscale_all_dim", 0)
        if mscale_all_dim:
            m = yarn_get_mscale(config["rope_scaling"]["factor"], mscale_all_dim)
            scaling = scaling * m * m
    positions = np.arange(T, dtype=np.float64)
    freqs = positions[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb) * attention_scaling, np.sin(emb) * attention_scaling
    mask = np.triu(np.full((T, T), -np.inf), k=1)

    def linear(x, name, with_bias=False):
        y = x @ w[name + ".weight"].T
        if with_bias:
            y = y + w[name + ".bias"]
        return y

    h = w["model.embed_tokens.weight"][np.asarray(ids)]
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        a = p + "self_attn."
        if q_lora is None:
            q = linear(x, a + "q_proj")
        else:
            q = linear(rms_norm(linear(x, a + "q_a_proj", bias), w[a + "q_a_layernorm.weight"], 1e-6), a + "q_b_proj")
        q = q.reshape(T, H, qk).transpose(1, 0, 2)
        q_pass, q_rot = q[..., :nope], q[..., nope:]
        compressed = linear(x, a + "kv_a_proj_with_mqa", bias)
        k_pass, k_rot = compressed[:, :kv_lora], compressed[:, kv_lora:]
        kv = linear(rms_norm(k_pass, w[a + "kv_a_layernorm.weight"], 1e-6), a + "kv_b_proj")
        kv = kv.reshape(T, H, nope + vdim).transpose(1, 0, 2)
        k_pass, v = kv[..., :nope], kv[..., nope:]
        k_rot = k_rot[None, :, :]
        if interleave:
            q_rot, k_rot = deinterleave(q_rot), deinterleave(k_rot)
        q_rot = q_rot * cos + rotate_half(q_rot) * sin
        k_rot = k_rot * cos + rotate_half(k_rot) * sin
        k_rot = np.broadcast_to(k_rot, (H, T, rope))
        query = np.concatenate([q_pass, q_rot], axis=-1)
        key = np.concatenate([k_pass, k_rot], axis=-1)
        scores = query @ key.transpose(0, 2, 1) * scaling + mask
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        out = (probs @ v).transpose(1, 0, 2).reshape(T, H * vdim)
        h = h + linear(out, a + "o_proj", bias)
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        g = linear(x, p + "mlp.gate_proj")
        h = h + linear((g / (1.0 + np.exp(-g))) * linear(x, p + "mlp.up_proj"), p + "mlp.down_proj")
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if config.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return h @ head.T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--json")
    args = parser.parse_args()
    results, failed = [], []
    for folder in args.dirs:
        config = json.load(open(os.path.join(folder, "config.json")))
        ids = [int(t) for t in open(os.path.join(folder, "ids.txt")).read().split()]
        ours = np.fromfile(os.path.join(folder, "logits.f32"), dtype="<f4").astype(np.float64).reshape(len(ids), -1)
        ref = forward(config, read_folder(folder), ids)
        diff = float(np.abs(ref - ours).max())
        scale = float(np.abs(ref).max())
        entry = {"folder": folder, "model_type": config["model_type"], "tokens": len(ids), "max_abs_diff": diff,
                 "max_rel_diff": diff / scale, "argmax_agreement": float(np.mean(ref.argmax(-1) == ours.argmax(-1)))}
        entry["passed"] = entry["max_rel_diff"] <= args.tolerance and entry["argmax_agreement"] == 1.0
        results.append(entry)
        print(json.dumps(entry), flush=True)
        if not entry["passed"]:
            failed.append(folder)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print(f"{len(results) - len(failed)}/{len(results)} within {args.tolerance} of the reference", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Writes the fuzz seed corpora under tests/fuzz/seeds/<target>/ from the real checkpoints and tokenizers in the
repository (resources/demo, tests/data) plus tiny, complete files of each format built here, so that the fuzzers start
from inputs that pass every check. Every seed stays small (headers, prefixes, tiny models). Run it again after a format
change; the output is deterministic.

    /usr/bin/python3 tests/fuzz/make_seeds.py            # rewrites tests/fuzz/seeds (session seeds need --cli)
    /usr/bin/python3 tests/fuzz/make_seeds.py --cli build/app/mla-workbench-cli   # also the session and MLA config seeds
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SEEDS = os.path.join(HERE, "seeds")
MODELS = os.path.join(ROOT, "tests", "data", "models")
DEMO = os.path.join(ROOT, "resources", "demo")
MAX_SEED = 300 * 1024


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) <= MAX_SEED, f"{target}/{name} is {len(data)} bytes"
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def rng_floats(n, seed):
    return (np.random.default_rng(seed).standard_normal(n) * 0.02).astype(np.float32)


# --- safetensors -------------------------------------------------------------------------------------------------

def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, offset, body = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        body += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def llama_hf_tensors(dim, ffn, layers, heads, kv_heads, vocab, dtype="F32", tied=True):
    head = dim // heads
    np_type = {"F32": np.float32, "F16": np.float16}[dtype]
    out, seed = [], 0

    def add(name, shape, ones=False):
        nonlocal seed
        n = int(np.prod(shape))
        values = np.ones(n, np.float32) if ones else rng_floats(n, seed)
        seed += 1
        out.append((name, dtype, shape, values.astype(np_type).tobytes()))

    add("model.embed_tokens.weight", [vocab, dim])
    for l in range(layers):
        p = f"model.layers.{l}."
        add(p + "input_layernorm.weight", [dim], True)
        add(p + "self_attn.q_proj.weight", [heads * head, dim])
        add(p + "self_attn.k_proj.weight", [kv_heads * head, dim])
        add(p + "self_attn.v_proj.weight", [kv_heads * head, dim])
        add(p + "self_attn.o_proj.weight", [dim, heads * head])
        add(p + "post_attention_layernorm.weight", [dim], True)
        add(p + "mlp.gate_proj.weight", [ffn, dim])
        add(p + "mlp.up_proj.weight", [ffn, dim])
        add(p + "mlp.down_proj.weight", [dim, ffn])
    add("model.norm.weight", [dim], True)
    if not tied:
        add("lm_head.weight", [vocab, dim])
    return out


def make_safetensors_seeds():
    real = read(os.path.join(MODELS, "stories260K-hf", "model.safetensors"))
    (n,) = struct.unpack("<Q", real[:8])
    write("safetensors_header", "stories260K-hf-header-only", real[:8 + n])  # data section cut off
    write("safetensors_header", "tiny-llama-f32", safetensors(llama_hf_tensors(8, 16, 1, 2, 1, 16), {"format": "pt"}))
    write("safetensors_header", "tiny-llama-f16-untied", safetensors(llama_hf_tensors(8, 16, 1, 2, 2, 16, "F16", False)))
    mixed = [("a", "BF16", [2, 3], b"\x01" * 12), ("b", "F32", [], b"\x00" * 4), ("c", "I64", [0], b""),
             ("d", "U8", [5], b"\x02" * 5), ("e", "F64", [1, 1], b"\x03" * 8)]
    write("safetensors_header", "dtypes", safetensors(mixed, {"format": "pt", "note": "mixed dtypes"}))
    write("safetensors_header", "empty", safetensors([]))

    # Index files for the shards fuzz_safetensors_index writes beside the input.
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
              "c": "model-00002-of-00002.safetensors"}
    write("safetensors_index", "valid", json.dumps({"metadata": {"total_size": 30}, "weight_map": shards}, indent=2))
    write("safetensors_index", "one-shard", json.dumps({"weight_map": {"a": shards["a"]}}))
    write("safetensors_index", "wrong-shard", json.dumps({"weight_map": {"c": shards["a"]}}))
    write("safetensors_index", "escaping-path", json.dumps({"weight_map": {"a": "../model-00001-of-00002.safetensors"}}))


# --- config.json -------------------------------------------------------------------------------------------------

def make_config_seeds(cli):
    for name in ("stories260K-hf", "aidreams260K-hf"):
        write("config_json", name, read(os.path.join(MODELS, name, "config.json")))
    base = json.loads(read(os.path.join(MODELS, "stories260K-hf", "config.json")))
    variants = {
        "mistral-sliding-window": {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": 32},
        "qwen2-bias": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "num_key_value_heads": 2},
        "qwen3-qk-norm": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "head_dim": 16,
                          "attention_bias": True},
        "llama3-rope-scaling": {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                                "rope_theta": 500000.0, "bos_token_id": 1, "eos_token_id": [2, 3]},
        "linear-rope-scaling": {"rope_scaling": {"type": "linear", "factor": 2.0}, "tie_word_embeddings": True},
        "deepseek-v2-yarn": {"model_type": "deepseek_v2", "architectures": ["DeepseekV2ForCausalLM"], "kv_lora_rank": 16,
                             "q_lora_rank": 24, "qk_rope_head_dim": 4, "qk_nope_head_dim": 8, "v_head_dim": 8,
                             "num_key_value_heads": 8, "first_k_dense_replace": 5, "n_routed_experts": 4,
                             "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                                              "mscale": 0.707, "mscale_all_dim": 0.707}},
    }
    for name, change in variants.items():
        c = dict(base)
        c.update(change)
        write("config_json", name, json.dumps(c, indent=2))
    if cli:
        with tempfile.TemporaryDirectory() as tmp:
            for name, args in {"mla-joint": ["--rope-pairs", "1", "--latent-dim", "8"],
                               "mla-split": ["--rope-pairs", "2", "--latent-dim", "8", "--svd", "split"],
                               "deepseek-v3": ["--target", "deepseek-v3", "--calib-samples", "2", "--calib-seq-len", "32"]}.items():
                out = os.path.join(tmp, name)
                r = subprocess.run([cli, "convert", os.path.join(MODELS, "stories260K-hf"), "--out", out, "--quiet", *args],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    write("config_json", name, read(os.path.join(out, "config.json")))
                else:
                    print(f"skipping config seed {name}: {r.stderr.strip()}")


# --- llama2.c ----------------------------------------------------------------------------------------------------

def llama2c(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared=True, seed=1):
    head = dim // heads
    kv_dim = kv_heads * head
    sizes = [vocab * dim, layers * dim, layers * dim * dim, layers * kv_dim * dim, layers * kv_dim * dim,
             layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden, layers * hidden * dim, dim,
             seq_len * head // 2 * 2]
    if not shared:
        sizes.append(vocab * dim)
    body = rng_floats(sum(sizes), seed)
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq_len)
    return header + body.tobytes()


def make_llama2c_seeds():
    write("llama2c_checkpoint", "tiny-shared", llama2c(8, 16, 2, 2, 1, 32, 16))
    write("llama2c_checkpoint", "tiny-unshared", llama2c(8, 12, 1, 2, 2, 16, 8, shared=False, seed=2))
    write("llama2c_checkpoint", "mha-4-heads", llama2c(16, 32, 1, 4, 4, 20, 4, seed=3))
    write("llama2c_checkpoint", "stories260K-header-only", read(os.path.join(DEMO, "stories260K.bin"))[:28])


# --- GGUF --------------------------------------------------------------------------------------------------------

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_U64 = 4, 5, 6, 7, 8, 9, 10


def gguf_string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(kind, value):
    if kind == GGUF_U32:
        return struct.pack("<I", value)
    if kind == GGUF_I32:
        return struct.pack("<i", value)
    if kind == GGUF_F32:
        return struct.pack("<f", value)
    if kind == GGUF_BOOL:
        return struct.pack("<B", 1 if value else 0)
    if kind == GGUF_STRING:
        return gguf_string(value)
    if kind == GGUF_U64:
        return struct.pack("<Q", value)
    element, items = value
    return struct.pack("<IQ", element, len(items)) + b"".join(gguf_value(element, v) for v in items)


def gguf(metadata, tensors, alignment=32):
    """metadata: list of (key, type, value); tensors: list of (name, dims in ggml order, ggml type, raw)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, kind, value in metadata:
        out += gguf_string(key) + struct.pack("<I", kind) + gguf_value(kind, value)
    offset, data = 0, b""
    for name, dims, ggml_type, raw in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
        data += raw + b"\0" * (-len(raw) % alignment)
        offset = len(data)
    out += b"\0" * (-len(out) % alignment)
    return out + data


def llama2c_vocabulary(path):
    raw = read(path)
    pos, tokens, scores = 4, [], []
    while pos < len(raw):
        score, n = struct.unpack_from("<fi", raw, pos)
        pos += 8
        tokens.append(raw[pos:pos + n])
        scores.append(score)
        pos += n
    return tokens, scores


def gguf_llama(dim, ffn, layers, heads, kv_heads, tokens, scores, f16=False, tokenizer="llama", merges=None):
    vocab = len(tokens)
    head = dim // heads
    meta = [("general.architecture", GGUF_STRING, "llama"), ("general.name", GGUF_STRING, "fuzz seed"),
            ("llama.context_length", GGUF_U32, 16), ("llama.embedding_length", GGUF_U32, dim),
            ("llama.feed_forward_length", GGUF_U32, ffn), ("llama.block_count", GGUF_U32, layers),
            ("llama.attention.head_count", GGUF_U32, heads), ("llama.attention.head_count_kv", GGUF_U32, kv_heads),
            ("llama.rope.dimension_count", GGUF_U32, head),
            ("llama.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-5), ("llama.rope.freq_base", GGUF_F32, 10000.0),
            ("general.alignment", GGUF_U32, 32),
            ("tokenizer.ggml.model", GGUF_STRING, tokenizer),
            ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens)),
            ("tokenizer.ggml.scores", GGUF_ARRAY, (GGUF_F32, scores)),
            ("tokenizer.ggml.token_type", GGUF_ARRAY, (GGUF_I32, [3 if i in (1, 2) else 1 for i in range(vocab)])),
            ("tokenizer.ggml.bos_token_id", GGUF_U32, 1), ("tokenizer.ggml.eos_token_id", GGUF_U32, 2),
            ("tokenizer.ggml.add_bos_token", GGUF_BOOL, True)]
    if merges is not None:
        meta.append(("tokenizer.ggml.merges", GGUF_ARRAY, (GGUF_STRING, merges)))
        meta.append(("tokenizer.ggml.pre", GGUF_STRING, "gpt2"))
    ggml_type, np_type = (1, np.float16) if f16 else (0, np.float32)
    tensors, seed = [], 10

    def add(name, dims, ones=False, keep_f32=False):
        nonlocal seed
        n = int(np.prod(dims))
        values = np.ones(n, np.float32) if ones else rng_floats(n, seed)
        seed += 1
        if keep_f32:
            tensors.append((name, dims, 0, values.tobytes()))
        else:
            tensors.append((name, dims, ggml_type, values.astype(np_type).tobytes()))

    add("token_embd.weight", [dim, vocab])
    for l in range(layers):
        p = f"blk.{l}."
        add(p + "attn_norm.weight", [dim], True, True)
        add(p + "attn_q.weight", [dim, heads * head])
        add(p + "attn_k.weight", [dim, kv_heads * head])
        add(p + "attn_v.weight", [dim, kv_heads * head])
        add(p + "attn_output.weight", [heads * head, dim])
        add(p + "ffn_norm.weight", [dim], True, True)
        add(p + "ffn_gate.weight", [dim, ffn])
        add(p + "ffn_down.weight", [ffn, dim])
        add(p + "ffn_up.weight", [dim, ffn])
    add("output_norm.weight", [dim], True, True)
    return gguf(meta, tensors)


def make_gguf_seeds():
    tokens, scores = llama2c_vocabulary(os.path.join(DEMO, "tok512.bin"))
    write("gguf", "tiny-llama-tok512", gguf_llama(8, 16, 1, 2, 1, tokens, scores))
    write("gguf", "tiny-llama-f16", gguf_llama(8, 16, 2, 2, 2, tokens[:40], scores[:40], f16=True))
    byte_level = ["!", "\"", "#", "a", "b", "c", "ab", "abc", "Ġ", "Ġa", "<|endoftext|>"]
    write("gguf", "tiny-gpt2-vocab",
          gguf_llama(8, 16, 1, 2, 1, byte_level, [0.0] * len(byte_level), tokenizer="gpt2",
                     merges=["a b", "ab c", "Ġ a"]))
    real = read(os.path.join(MODELS, "stories260K", "stories260K.gguf"))
    write("gguf", "stories260K-metadata-only", real[:14176])  # metadata + tensor records, no weights


# --- tokenizers --------------------------------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def added(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
            "special": special}


def tokenizer_json_seeds():
    b2u = bytes_to_unicode()
    order = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    order += [b for b in range(256) if b not in order]
    vocab = {b2u[b]: i for i, b in enumerate(order)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("ll", "o"), ("H", "e"), ("He", "llo"), ("Ġ", "w"),
              ("o", "r"), ("Ġw", "or"), ("Ġwor", "l"), ("Ġworl", "d"), ("'", "s"), ("Ġ", "1"), ("2", "3"), ("Ġ1", "23")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    gpt2 = {"version": "1.0", "added_tokens": [added(vocab["<|endoftext|>"], "<|endoftext|>", True)],
            "normalizer": None, "pre_tokenizer": byte_level, "post_processor": byte_level, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                      "merges": [a + " " + b for a, b in merges]}}
    yield "gpt2", gpt2

    llama3 = json.loads(json.dumps(gpt2))
    llama3["model"]["merges"] = [[a, b] for a, b in merges]
    llama3["model"]["ignore_merges"] = True
    llama3["model"]["vocab"]["<|begin_of_text|>"] = len(vocab)
    llama3["added_tokens"].append(added(len(vocab), "<|begin_of_text|>", True))
    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
    llama3["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    llama3["post_processor"] = {"type": "TemplateProcessing",
                                "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                           {"Sequence": {"id": "A", "type_id": 0}}],
                                "pair": [],
                                "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>",
                                                                         "ids": [len(vocab)],
                                                                         "tokens": ["<|begin_of_text|>"]}}}
    yield "llama3", llama3

    lvocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        lvocab[f"<0x{b:02X}>"] = 3 + b
    for c in ["▁", "h", "e", "l", "o", "w", "r", "d"]:
        lvocab[c] = len(lvocab)
    lmerges = [("l", "l"), ("▁", "h"), ("▁h", "e"), ("▁he", "ll"), ("▁hell", "o"), ("▁", "w"), ("o", "r"),
               ("▁w", "or"), ("▁wor", "l"), ("▁worl", "d")]
    for a, b in lmerges:
        lvocab[a + b] = len(lvocab)
    llama2 = {"version": "1.0",
              "added_tokens": [added(0, "<unk>", True), added(1, "<s>", True), added(2, "</s>", True)],
              "normalizer": {"type": "Sequence", "normalizers": [
                  {"type": "Prepend", "prepend": "▁"},
                  {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
              "pre_tokenizer": None,
              "post_processor": {"type": "TemplateProcessing",
                                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                            {"Sequence": {"id": "A", "type_id": 0}}],
                                 "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
              "decoder": {"type": "Sequence", "decoders": [
                  {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
                  {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
              "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                        "vocab": lvocab, "merges": [a + " " + b for a, b in lmerges]}}
    yield "llama2", llama2


def make_tokenizer_seeds():
    write("tokenizer_llama2c", "tok512.bin", read(os.path.join(DEMO, "tok512.bin")))
    write("tokenizer_llama2c", "poem_tok.bin", read(os.path.join(MODELS, "poem5L", "poem_tok.bin")))
    write("tokenizer_llama2c", "stories260K-hf-tokenizer.bin", read(os.path.join(MODELS, "stories260K-hf", "tokenizer.bin")))
    write("tokenizer_sentencepiece", "tiny_bpe.model",
          read(os.path.join(ROOT, "tests", "data", "tokenizers", "tiny_bpe.model")))
    for name, j in tokenizer_json_seeds():
        write("tokenizer_json", name, json.dumps(j, ensure_ascii=False, indent=1))


# --- sessions ----------------------------------------------------------------------------------------------------

def make_session_seeds(cli):
    if not cli:
        print("session seeds need --cli; kept as they are")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in {"demo-short-calibration.h5": ["--calib-samples", "2", "--calib-seq-len", "32", "--rope-strategy", "uniform"]}.items():
            out = os.path.join(tmp, name)
            r = subprocess.run([cli, "analyze", "--session", out, "--quiet", *args], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"skipping session seed {name}: {r.stderr.strip()}")
                continue
            write("session", name, read(out))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", help="mla-workbench-cli, for the session and converted-config seeds")
    args = parser.parse_args()
    for target in ("safetensors_header", "safetensors_index", "config_json", "llama2c_checkpoint", "gguf",
                   "tokenizer_llama2c", "tokenizer_sentencepiece", "tokenizer_json"):
        shutil.rmtree(os.path.join(SEEDS, target), ignore_errors=True)
    make_safetensors_seeds()
    make_config_seeds(args.cli)
    make_llama2c_seeds()
    make_gguf_seeds()
    make_tokenizer_seeds()
    make_session_seeds(args.cli)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(SEEDS) for f in fs)
    print(f"seeds: {total} bytes")


if __name__ == "__main__":
    main()

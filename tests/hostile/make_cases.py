#!/usr/bin/env python3
"""Writes the hostile-input cases: one reproducer per class of failure that issue 17 found (data loss, real files
refused, crashes, hangs and memory blow-ups, leaks, silent nonsense), each a folder with its input files and a
case.json that says how to run the CLI on it and what must come out.

    tests/hostile/make_cases.py OUT_DIR --cli PATH/TO/mla-workbench-cli

Everything is generated from the small real checkpoints in tests/data and resources/demo, deterministically, so a new
case is a new function here (see README.md). case.json keys:
  class, why      what the case reproduces
  args            CLI arguments; "{case}" is replaced by the case folder
  exit            allowed exit codes (never a signal, never a hang: the runner checks those for every case)
  stderr          a substring (or a list of alternatives) the error message must contain (optional)
  stderr_if_failed  the same, checked only when the exit code is not 0
  max_seconds     how long the run may take (default 60)
  setup           {"fifo": [paths], "symlink": {path: target}, "mknod_null": [paths]} made just before the run
  during          {"after": seconds, "truncate": path, "to": bytes}: an input shrinks while the CLI runs
  mutable         input files the case changes on purpose (not checked for being byte-identical)
  absent          paths that must not exist afterwards (files that must not leak into an output)
  skip_under_asan why the case cannot run under AddressSanitizer (no memory limit there), when it cannot
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HF = os.path.join(ROOT, "tests", "data", "models", "stories260K-hf")
DEMO_BIN = os.path.join(ROOT, "resources", "demo", "stories260K.bin")
DEMO_TOK = os.path.join(ROOT, "resources", "demo", "tok512.bin")
TOKENIZER_JSON = os.path.join(ROOT, "tests", "fuzz", "seeds", "tokenizer_json", "llama2")

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


# ------------------------------------------------------------------------------------------------ file helpers

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        assert e["dtype"] == "F32"
        tensors[name] = np.frombuffer(data[8 + n + b:8 + n + end], dtype=np.float32).reshape(e["shape"]).copy()
    return tensors, meta


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name, t in tensors.items():
        t = np.ascontiguousarray(t, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
        blobs.append(t.tobytes())
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def copy_hf(dst, config_changes=None):
    shutil.copytree(HF, dst)
    if config_changes:
        path = os.path.join(dst, "config.json")
        with open(path) as f:
            config = json.load(f)
        config.update(config_changes)
        with open(path, "w") as f:
            json.dump(config, f, indent=2)


def config_of(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)


def gguf_permute(w, heads):
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def f32_to_f16_bits(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).view(np.uint16)


def quantize_q8_0(w):
    rows = w.reshape(-1, 32).astype(np.float32)
    amax = np.abs(rows).max(axis=1)
    d = (amax / 127.0).astype(np.float16)
    dd = d.astype(np.float32)
    q = np.where(dd[:, None] > 0, np.round(rows / np.where(dd[:, None] > 0, dd[:, None], 1)), 0)
    q = np.clip(q, -127, 127).astype(np.int8)
    out = bytearray()
    for i in range(rows.shape[0]):
        out += d[i].tobytes() + q[i].tobytes()
    return bytes(out)


def write_gguf(path, config, tensors, quantize=None, rope_base=10000.0):
    """A llama GGUF (v3) from Hugging Face tensors; `quantize` names the tensors stored as Q8_0."""
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
                 "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                 "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
    out_tensors = []
    for name, t in tensors.items():
        if name in names:
            g = names[name]
        else:
            parts = name.split(".")
            g = "blk.%s.%s" % (parts[2], per_layer[".".join(parts[3:])])
        if name.endswith("q_proj.weight"):
            t = gguf_permute(t, heads)
        elif name.endswith("k_proj.weight"):
            t = gguf_permute(t, kv)
        dims = list(reversed(t.shape))
        if quantize and quantize(g, t):
            out_tensors.append((g, dims, 8, quantize_q8_0(t)))
        else:
            out_tensors.append((g, dims, 0, np.ascontiguousarray(t, dtype=np.float32).tobytes()))

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    kvs = [("general.architecture", struct.pack("<I", 8) + s("llama"))]
    for key, value in [("embedding_length", config["hidden_size"]), ("feed_forward_length", config["intermediate_size"]),
                       ("block_count", config["num_hidden_layers"]), ("attention.head_count", heads),
                       ("attention.head_count_kv", kv), ("context_length", config["max_position_embeddings"])]:
        kvs.append(("llama." + key, struct.pack("<II", 4, value)))
    kvs.append(("llama.rope.freq_base", struct.pack("<If", 6, rope_base)))
    kvs.append(("tokenizer.ggml.bos_token_id", struct.pack("<II", 4, config.get("bos_token_id", 1))))
    kvs.append(("llama.attention.layer_norm_rms_epsilon", struct.pack("<If", 6, 1e-5)))
    body = b"GGUF" + struct.pack("<IQQ", 3, len(out_tensors), len(kvs))
    for key, value in kvs:
        body += s(key) + value
    offset = 0
    offsets = []
    for g, dims, ty, data in out_tensors:
        body += s(g) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        body += struct.pack("<IQ", ty, offset)
        offsets.append(offset)
        offset = (offset + len(data) + 31) // 32 * 32
    body += b"\0" * ((32 - len(body) % 32) % 32)
    data = bytearray(offset)
    for (g, dims, ty, blob), o in zip(out_tensors, offsets):
        data[o:o + len(blob)] = blob
    with open(path, "wb") as f:
        f.write(body + bytes(data))


def hf_tensors():
    tensors, _ = read_safetensors(os.path.join(HF, "model.safetensors"))
    return tensors


def nested_json(depth):
    return "{\"a\": " * depth + "1" + "}" * depth


# ------------------------------------------------------------------------------------------------ the cases

@case
def dataloss_convert_onto_input_folder(d):
    copy_hf(os.path.join(d, "model"))
    return {"class": "data loss", "why": "convert --out onto the input model's folder deleted the model",
            "args": ["convert", "{case}/model", "--out", "{case}/model", "--rope-strategy", "high", "--rope-pairs", "1",
                     "--latent-dim", "8", "--quiet"], "exit": [1], "stderr": "input"}


@case
def dataloss_convert_onto_foreign_folder(d):
    copy_hf(os.path.join(d, "model"))
    os.makedirs(os.path.join(d, "documents"))
    with open(os.path.join(d, "documents", "thesis.txt"), "w") as f:
        f.write("years of work\n")
    return {"class": "data loss", "why": "convert --out onto any non-empty folder deleted what was there",
            "args": ["convert", "{case}/model", "--out", "{case}/documents", "--rope-strategy", "high", "--quiet"],
            "exit": [1], "stderr": "did not write"}


@case
def dataloss_session_onto_checkpoint(d):
    shutil.copy(DEMO_BIN, os.path.join(d, "stories260K.bin"))
    shutil.copy(DEMO_TOK, os.path.join(d, "tok512.bin"))
    return {"class": "data loss", "why": "analyze --session onto the input checkpoint replaced it",
            "args": ["analyze", "{case}/stories260K.bin", "--calib-samples", "1", "--calib-seq-len", "8", "--session",
                     "{case}/stories260K.bin", "--quiet"], "exit": [1], "stderr": "input"}


@case
def dataloss_session_onto_fifo(d):
    return {"class": "data loss", "why": "analyze --session onto a device node or FIFO replaced it",
            "setup": {"fifo": ["pipe.h5"]},
            "args": ["analyze", "--demo", "--calib-samples", "1", "--calib-seq-len", "8", "--session", "{case}/pipe.h5",
                     "--quiet"], "exit": [1], "stderr": "never replaced"}


@case
def dataloss_session_onto_device(d):
    return {"class": "data loss", "why": "analyze --session onto a device node replaced it (a device of our own, made "
            "only when running as root; otherwise a FIFO stands in)",
            "setup": {"mknod_null": ["null.h5"]},
            "args": ["analyze", "--demo", "--calib-samples", "1", "--calib-seq-len", "8", "--session", "{case}/null.h5",
                     "--quiet"], "exit": [1], "stderr": "never replaced"}


@case
def real_tied_lm_head_only(d):
    model = os.path.join(d, "model")
    copy_hf(model)
    tensors = hf_tensors()
    stored = {("lm_head.weight" if k == "model.embed_tokens.weight" else k): v for k, v in tensors.items()}
    # What safetensors' save_model writes for tied weights: the dropped name points at the kept one.
    write_safetensors(os.path.join(model, "model.safetensors"), dict(sorted(stored.items())),
                      {"format": "pt", "model.embed_tokens.weight": "lm_head.weight"})
    return {"class": "real files refused", "why": "tied embeddings stored only as lm_head.weight, aliased in "
            "__metadata__, failed with 'missing tensor model.embed_tokens.weight'",
            "args": ["generate", "{case}/model", "--steps", "16", "--json"], "exit": [0]}


@case
def real_gguf_q8_0(d):
    config = config_of(HF)
    write_gguf(os.path.join(d, "model.gguf"), config, hf_tensors(),
               quantize=lambda name, t: t.ndim == 2 and t.shape[1] % 32 == 0)
    return {"class": "real files refused", "why": "quantised GGUF (Q8_0) was refused: only F32/F16/BF16 were read",
            "args": ["generate", "{case}/model.gguf", "--steps", "16", "--json"], "exit": [0]}


@case
def crash_tiny_temperature(d):
    return {"class": "crash", "why": "generate --temperature 1e-40 segfaulted in sampling (empty top-p set)",
            "args": ["generate", "--demo", "--temperature", "1e-40", "--top-p", "0.9", "--steps", "24", "--json"],
            "exit": [0]}


@case
def crash_nan_weights(d):
    model = os.path.join(d, "model")
    copy_hf(model)
    tensors = hf_tensors()
    tensors["model.norm.weight"][3] = np.nan
    write_safetensors(os.path.join(model, "model.safetensors"), tensors)
    return {"class": "crash", "why": "a model with NaN weights segfaulted in sampling",
            "args": ["generate", "{case}/model", "--temperature", "0.8", "--steps", "8"], "exit": [1], "stderr": "NaN"}


@case
def crash_nested_config(d):
    model = os.path.join(d, "model")
    copy_hf(model)
    config = json.dumps(config_of(model))[:-1] + ", \"deep\": " + nested_json(200000) + "}"
    with open(os.path.join(model, "config.json"), "w") as f:
        f.write(config)
    return {"class": "crash", "why": "a deeply nested config.json overflowed the stack",
            "args": ["info", "{case}/model"], "exit": [1], "stderr": "nest"}


@case
def crash_nested_tokenizer(d):
    with open(TOKENIZER_JSON) as f:
        text = f.read()
    text = text.rstrip()[:-1] + ", \"deep\": " + nested_json(200000) + "}"
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        f.write(text)
    return {"class": "crash", "why": "a deeply nested tokenizer.json overflowed the stack",
            "args": ["generate", "--demo", "--tokenizer", "{case}/tokenizer.json", "--prompt", "Once", "--steps", "4"],
            "exit": [1], "stderr": "nest"}


@case
def crash_truncated_while_mapped(d):
    # Large enough that generating takes a few seconds, so the file shrinks while its weights are in use.
    rng = np.random.default_rng(1)
    hidden, ffn, layers, vocab, heads = 256, 688, 8, 8192, 8
    tensors = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden), dtype=np.float32) * 0.02}
    for l in range(layers):
        p = "model.layers.%d." % l
        tensors[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        for n, shape in [("self_attn.q_proj", (hidden, hidden)), ("self_attn.k_proj", (hidden, hidden)),
                         ("self_attn.v_proj", (hidden, hidden)), ("self_attn.o_proj", (hidden, hidden)),
                         ("mlp.gate_proj", (ffn, hidden)), ("mlp.up_proj", (ffn, hidden)), ("mlp.down_proj", (hidden, ffn))]:
            tensors[p + n + ".weight"] = rng.standard_normal(shape, dtype=np.float32) * 0.02
        tensors[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
    tensors["model.norm.weight"] = np.ones(hidden, np.float32)
    model = os.path.join(d, "model")
    os.makedirs(model)
    write_safetensors(os.path.join(model, "model.safetensors"), tensors)
    config = config_of(HF)
    config.update({"hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers, "vocab_size": vocab,
                   "num_attention_heads": heads, "num_key_value_heads": heads, "head_dim": hidden // heads,
                   "max_position_embeddings": 4096})
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump(config, f)
    return {"class": "crash", "why": "a model file truncated while mapped killed the process with SIGBUS",
            "args": ["generate", "{case}/model", "--steps", "4000", "--json"],
            "during": {"after": 1.0, "truncate": "model/model.safetensors", "to": 65536},
            "mutable": ["model/model.safetensors"], "exit": [0, 1], "stderr": "changed while it was in use"}


@case
def hang_fifo_as_model(d):
    return {"class": "hang", "why": "a FIFO given as the model hung forever",
            "setup": {"fifo": ["model.bin"]}, "args": ["info", "{case}/model.bin"], "exit": [1], "stderr": "FIFO",
            "max_seconds": 20}


@case
def hang_config_dev_zero(d):
    model = os.path.join(d, "model")
    copy_hf(model)
    os.remove(os.path.join(model, "config.json"))
    return {"class": "hang", "why": "config.json pointing at /dev/zero read gigabytes",
            "setup": {"symlink": {"model/config.json": "/dev/zero"}}, "args": ["info", "{case}/model"], "exit": [1],
            "stderr": "device", "max_seconds": 20}


@case
def hang_session_bomb(d, cli=None):
    import h5py
    session = os.path.join(d, "bomb.h5")
    subprocess.run([cli, "analyze", "--demo", "--calib-samples", "1", "--calib-seq-len", "8", "--session", session,
                    "--quiet"], check=True, stdout=subprocess.DEVNULL)
    # 2^28 calibration ids (2 GiB of int64) stored as gzip chunks of zeros: a few megabytes on disk.
    count = 1 << 28
    chunk = 1 << 20
    compressed = zlib.compress(bytes(chunk * 8), 9)
    with h5py.File(session, "r+") as f:
        g = f["calibration"]
        del g["ids"]
        ds = g.create_dataset("ids", shape=(count,), dtype="<i8", chunks=(chunk,), compression="gzip")
        for i in range(count // chunk):
            ds.id.write_direct_chunk((i * chunk,), compressed)
        del g["sequence_offsets"]
        g.create_dataset("sequence_offsets", data=np.array([0, count], dtype="<i8"))
        g.attrs.modify("sequence_count", np.int64(1))
    return {"class": "memory blow-up", "why": "a session whose compressed datasets expand to gigabytes was loaded whole",
            "args": ["session", "{case}/bomb.h5"], "exit": [1], "stderr": ["memory", "stores only"],
            "skip_under_asan": "its 2 GiB only exceed the memory limit, which AddressSanitizer's shadow memory rules out "
                               "(tests/core/session/tst_session_budget.cpp checks the budget there)"}


@case
def hang_normalizer_amplification(d):
    with open(TOKENIZER_JSON) as f:
        tok = json.load(f)
    tok["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "x" * (1 << 20)}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    return {"class": "memory blow-up", "why": "a normalizer replacing one character by a long string amplified memory "
            "to gigabytes", "args": ["generate", "--demo", "--tokenizer", "{case}/tokenizer.json", "--prompt",
                                     "a " * 4000, "--steps", "4"], "exit": [1], "stderr": "normalizer"}


@case
def hang_redos_pretokenizer(d):
    with open(TOKENIZER_JSON) as f:
        tok = json.load(f)
    tok["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    return {"class": "hang", "why": "a pre-tokenizer regex with nested quantifiers ran for minutes (ReDoS)",
            "args": ["generate", "--demo", "--tokenizer", "{case}/tokenizer.json", "--prompt", "a" * 5000 + "!",
                     "--steps", "4"], "exit": [1], "stderr": "regex", "max_seconds": 30}


@case
def leak_companion_symlink(d):
    model = os.path.join(d, "model")
    copy_hf(model)
    os.makedirs(os.path.join(d, "private"))
    with open(os.path.join(d, "private", "secret.json"), "w") as f:
        f.write("{\"password\": \"hunter2\"}\n")
    return {"class": "leak", "why": "a companion file that is a symbolic link to a file elsewhere was copied into the "
            "export", "setup": {"symlink": {"model/generation_config.json": "{case}/private/secret.json"}},
            "args": ["convert", "{case}/model", "--out", "{case}/out", "--rope-strategy", "high", "--rope-pairs", "1",
                     "--latent-dim", "8", "--quiet"], "exit": [0], "absent": ["out/generation_config.json"]}


def nonsense_config(d, changes, why, stderr):
    copy_hf(os.path.join(d, "model"), changes)
    return {"class": "silent nonsense", "why": why, "args": ["info", "{case}/model"], "exit": [1], "stderr": stderr}


@case
def nonsense_bos_out_of_range(d):
    return nonsense_config(d, {"bos_token_id": 99999}, "an out-of-range bos_token_id was accepted", "bos")


@case
def nonsense_eos_out_of_range(d):
    return nonsense_config(d, {"eos_token_id": [2, 70000]}, "an out-of-range eos_token_id was accepted", "eos")


@case
def nonsense_sliding_window(d):
    return nonsense_config(d, {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": -5},
                           "a negative sliding_window was accepted", "sliding_window")


@case
def nonsense_gguf_rope(d):
    write_gguf(os.path.join(d, "model.gguf"), config_of(HF), hf_tensors(), rope_base=float("nan"))
    return {"class": "silent nonsense", "why": "GGUF rope values out of range were accepted",
            "args": ["info", "{case}/model.gguf"], "exit": [1], "stderr": "rope"}


@case
def nonsense_latent_dim_huge(d):
    return {"class": "silent nonsense", "why": "analyze --latent-dim 16777216 was accepted",
            "args": ["analyze", "--demo", "--latent-dim", "16777216", "--quiet"], "exit": [1, 2],
            "stderr": "--latent-dim", "max_seconds": 15}


@case
def nonsense_latent_dim_late(d):
    return {"class": "silent nonsense", "why": "--latent-dim 9999 failed only after the calibration",
            "args": ["convert", "--demo", "--out", "{case}/out", "--latent-dim", "9999", "--calib-samples", "64",
                     "--quiet"], "exit": [1, 2], "stderr": "--latent-dim", "max_seconds": 15}


@case
def nonsense_text_as_model(d):
    with open(os.path.join(d, "notes.bin"), "w") as f:
        f.write("These are my notes, not a model.\n" * 40)
    return {"class": "silent nonsense", "why": "a plain text file given as a model reported that heads do not divide",
            "args": ["info", "{case}/notes.bin"], "exit": [1], "stderr": "not a safetensors/GGUF/llama2.c checkpoint"}


@case
def nonsense_padded_vocabulary(d):
    model = os.path.join(d, "model")
    copy_hf(model, {"vocab_size": 576})
    tensors = hf_tensors()
    e = tensors["model.embed_tokens.weight"]
    # 64 padding rows that the model strongly prefers, so generation soon samples an id the tokenizer lacks.
    tensors["model.embed_tokens.weight"] = np.concatenate([e, np.repeat(e[13:14] * 50.0, 64, axis=0)])
    write_safetensors(os.path.join(model, "model.safetensors"), tensors)
    return {"class": "silent nonsense", "why": "a padded-vocabulary tokenizer error did not name the file",
            "args": ["generate", "{case}/model", "--steps", "32"], "exit": [0, 1], "stderr_if_failed": "tokenizer.bin"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--cli", required=True)
    parser.add_argument("--only", help="comma-separated case names")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    os.makedirs(args.out, exist_ok=True)
    written = 0
    for fn in CASES:
        if only and fn.__name__ not in only:
            continue
        d = os.path.join(args.out, fn.__name__)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        spec = fn(d, cli=args.cli) if "cli" in fn.__code__.co_varnames else fn(d)
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(spec, f, indent=2)
        written += 1
    print("make_cases: %d cases in %s" % (written, args.out))


if __name__ == "__main__":
    sys.exit(main())

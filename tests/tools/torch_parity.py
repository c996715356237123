#!/usr/bin/env python3
"""PyTorch side of tests/core/conversion/tst_pytorch_export.cpp: loads each exported folder with the modeling_mla.py
it carries (plain PyTorch, no transformers) and compares its logits with the engine's, in both MLA forms.

    python3 tests/tools/torch_parity.py DIR [--damaged FOLDER]

For every DIR/<case>/ holding model/ (an export), ids.txt and the engine's logits_absorbed.f32 / logits_expanded.f32
(float32 [tokens, vocab]), prints one JSON object per case:
- rel_<form>: max |torch - engine| / max |engine| over the whole sequence run at once;
- rel_<form>_decode: the same for a prefill of half the sequence followed by one token at a time through the cache;
- cache_bytes_<form>: bytes the cache really holds after the whole sequence (MlaCache.nbytes(), float32);
- cache_widths_absorbed: per layer, the values per token of the cached keys (the RoPE keys) and rows (the latents and
  whatever the layer keeps uncompressed);
- promised_elements_<form>: model.kv_cache_elements_per_token().
Where Hugging Face transformers is installed, each case is also loaded with AutoModelForCausalLM.from_pretrained(...,
trust_remote_code=True) (rel_auto against the absorbed logits, generate_matches: greedy generate() with its cache
equals greedy decoding through this file's own cache) and without trust_remote_code (auto_without_remote_code: must be
"refused", never a Llama with missing k_proj / v_proj).

With --damaged, also loads FOLDER (a copy with a broken model.safetensors) and prints {"damaged": FOLDER, "error":
the message}, which must name the file and the problem. The C++ test judges the numbers against the engine and the
config.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def transformers_checks(transformers, export, ids, engine_absorbed, model):
    major = int(transformers.__version__.split(".")[0])
    dtype_kw = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
    auto = transformers.AutoModelForCausalLM.from_pretrained(export, trust_remote_code=True, **dtype_kw).eval()
    out = {"transformers": transformers.__version__, "auto_class": type(auto).__name__,
           "rel_auto": relative(auto(torch.tensor([ids])).logits[0].numpy(), engine_absorbed)}
    prompt = torch.tensor([ids[:8]])
    generated = auto.generate(prompt, max_new_tokens=8, do_sample=False)[0, 8:].tolist()
    model.set_mla_form("absorbed")
    ours, current = [], list(ids[:8])
    for _ in range(8):
        ours.append(int(model(torch.tensor([current])).logits[0, -1].argmax()))
        current.append(ours[-1])
    out["generate_matches"] = generated == ours
    try:
        transformers.AutoModelForCausalLM.from_pretrained(export, trust_remote_code=False, **dtype_kw)
        out["auto_without_remote_code"] = "loaded"
    except Exception as e:  # the refusal is the expected outcome
        out["auto_without_remote_code"] = f"refused: {type(e).__name__}"
    return out


def relative(ours, engine):
    return float(np.abs(ours - engine).max() / np.abs(engine).max())


def main():
    root = sys.argv[1]
    damaged = sys.argv[sys.argv.index("--damaged") + 1] if "--damaged" in sys.argv else None
    torch.set_grad_enabled(False)
    try:
        transformers = importlib.import_module("transformers")
    except ImportError:
        transformers = None
    for index, case in enumerate(sorted(os.listdir(root))):
        folder = os.path.join(root, case)
        if not os.path.isfile(os.path.join(folder, "ids.txt")):
            continue
        export = os.path.join(folder, "model")
        modeling = load_module(os.path.join(export, "modeling_mla.py"), f"modeling_mla_{index}")
        ids = [int(x) for x in open(os.path.join(folder, "ids.txt")).read().split()]
        model = modeling.MlaForCausalLM.from_pretrained(export)
        result = {"case": case, "tokens": len(ids)}
        for form in ("absorbed", "expanded"):
            engine = np.fromfile(os.path.join(folder, f"logits_{form}.f32"), dtype=np.float32).reshape(len(ids), -1)
            model.set_mla_form(form)
            whole = model(torch.tensor([ids])).logits[0].numpy()
            cache = modeling.MlaCache()
            half = len(ids) // 2
            parts = [model(torch.tensor([ids[:half]]), past_key_values=cache, use_cache=True).logits[0]]
            for t in range(half, len(ids)):
                parts.append(model(torch.tensor([[ids[t]]]), past_key_values=cache, use_cache=True).logits[0])
            decoded = torch.cat(parts).numpy()
            result[f"rel_{form}"] = relative(whole, engine)
            result[f"rel_{form}_decode"] = relative(decoded, engine)
            result[f"argmax_{form}"] = float(np.mean(whole.argmax(-1) == engine.argmax(-1)))
            result[f"cache_bytes_{form}"] = cache.nbytes()
            result[f"promised_elements_{form}"] = model.kv_cache_elements_per_token()
            if form == "absorbed":
                result["cache_widths_absorbed"] = [list(cache.layer_widths(l)) for l in range(len(cache.keys))]
                engine_absorbed = engine
        if transformers is not None:
            result.update(transformers_checks(transformers, export, ids, engine_absorbed, model))
        print(json.dumps(result), flush=True)
    if damaged:
        modeling = load_module(os.path.join(damaged, "modeling_mla.py"), "modeling_mla_damaged")
        try:
            modeling.MlaForCausalLM.from_pretrained(damaged)
            error = ""
        except modeling.CheckpointError as e:
            error = str(e)
        print(json.dumps({"damaged": damaged, "error": error}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

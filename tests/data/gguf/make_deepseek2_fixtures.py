#!/usr/bin/python3
"""Writes the deepseek2 fixtures of tests/core/formats: tiny dense DeepSeek-V2-style models with random weights,
written by llama.cpp's own GGUF library (gguf-py) with the metadata calls and tensor transforms of its own converter
(conversion/deepseek.py, DeepseekV2Model), so that our reader is tested on files as llama.cpp makes them, not as we
do. Three variants:

  deepseek2_dense.gguf       q_lora_rank 0 (a plain attn_q), absorbed MLA (attn_k_b / attn_v_b), 2 layers
  deepseek2_lite.gguf        the same with 26 layers and no q_lora_rank key, as the converter writes a checkpoint
                             whose q_lora_rank is null (DeepSeek-V2-Lite): llama.cpp reads q_lora_rank only when the
                             model is not "lite" (26 or 27 layers), so without the key only lite models load
  deepseek2_qlora.gguf       a query latent (attn_q_a, attn_q_a_norm, attn_q_b), absorbed MLA, 2 layers
  deepseek2_legacy.gguf      the older layout: no key/value_length_mla, one attn_kv_b, head_count_kv = heads

gguf-py comes with the llama.cpp source of the pinned build (tests/llama_cpp/node_modules/node-llama-cpp/llama/
gitRelease.bundle); it needs only numpy:

  git clone tests/llama_cpp/node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llama-src
  /usr/bin/python3 tests/data/gguf/make_deepseek2_fixtures.py /tmp/llama-src/gguf-py
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "/tmp/llama-src/gguf-py")

import numpy as np  # noqa: E402
import gguf  # noqa: E402

HIDDEN, FFN, LAYERS, HEADS = 32, 48, 2, 2
NOPE, ROPE, VALUE, KV_LORA, Q_LORA = 8, 4, 8, 8, 12
EPS, THETA, CONTEXT = 1e-5, 10000.0, 128


def vocabulary():
    # A llama2.c-style vocabulary: <unk> <s> </s>, the 256 byte tokens, then a few pieces.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    for piece in ["\u2581a", "\u2581the", "\u2581cat", "\u2581sat", "\u2581on", "\u2581mat", "s", "t", "e"]:
        tokens.append(piece)
        types.append(1)
    scores = [0.0] * len(tokens)
    for i in range(259, len(tokens)):
        scores[i] = -float(i - 259)
    return tokens, scores, types


def write(name, variant, seed, layers=LAYERS, ffn=FFN, tied=False):
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    vocab = len(tokens)

    def w(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    writer = gguf.GGUFWriter(str(HERE / name), "deepseek2")
    writer.add_name(f"deepseek2 fixture ({variant})")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(ffn)
    writer.add_block_count(layers)
    writer.add_head_count(HEADS)
    writer.add_rope_freq_base(THETA)
    writer.add_layer_norm_rms_eps(EPS)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    # DeepseekV2Model.set_gguf_parameters, dense: every block leading and dense.
    writer.add_leading_dense_block_count(layers)
    writer.add_vocab_size(vocab)
    if variant == "qlora":
        writer.add_q_lora_rank(Q_LORA)
    elif variant != "lite":
        # The converter leaves the key out when q_lora_rank is null; llama.cpp then refuses any model that is not
        # lite ("key not found in model: deepseek2.attention.q_lora_rank"), so a loadable file states 0.
        writer.add_q_lora_rank(0)
    writer.add_kv_lora_rank(KV_LORA)
    if variant == "legacy":
        writer.add_head_count_kv(HEADS)
        writer.add_key_length(NOPE + ROPE)
        writer.add_value_length(VALUE)
    else:
        writer.add_head_count_kv(1)
        writer.add_key_length(KV_LORA + ROPE)
        writer.add_value_length(KV_LORA)
        writer.add_key_length_mla(NOPE + ROPE)
        writer.add_value_length_mla(VALUE)
    writer.add_expert_feed_forward_length(ffn)
    writer.add_expert_shared_count(0)
    writer.add_rope_dimension_count(ROPE)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    # Tensors in PyTorch's [out, in] order; gguf-py writes the shape reversed, as ggml reads it.
    writer.add_tensor("token_embd.weight", w(vocab, HIDDEN, scale=1.0))
    writer.add_tensor("output_norm.weight", norm(HIDDEN))
    if not tied:
        writer.add_tensor("output.weight", w(vocab, HIDDEN))
    for b in range(layers):
        p = f"blk.{b}."
        writer.add_tensor(p + "attn_norm.weight", norm(HIDDEN))
        if variant == "qlora":
            writer.add_tensor(p + "attn_q_a.weight", w(Q_LORA, HIDDEN))
            writer.add_tensor(p + "attn_q_a_norm.weight", norm(Q_LORA))
            writer.add_tensor(p + "attn_q_b.weight", w(HEADS * (NOPE + ROPE), Q_LORA))
        else:
            writer.add_tensor(p + "attn_q.weight", w(HEADS * (NOPE + ROPE), HIDDEN))
        writer.add_tensor(p + "attn_kv_a_mqa.weight", w(KV_LORA + ROPE, HIDDEN))
        writer.add_tensor(p + "attn_kv_a_norm.weight", norm(KV_LORA))
        kv_b = w(HEADS * (NOPE + VALUE), KV_LORA)
        if variant == "legacy":
            writer.add_tensor(p + "attn_kv_b.weight", kv_b)
        else:
            # DeepseekV2Model.modify_tensors
            per_head = kv_b.reshape(HEADS, NOPE + VALUE, KV_LORA)
            k_b = np.ascontiguousarray(per_head[:, :NOPE, :].transpose(0, 2, 1))
            v_b = np.ascontiguousarray(per_head[:, NOPE:, :])
            writer.add_tensor(p + "attn_k_b.weight", k_b)
            writer.add_tensor(p + "attn_v_b.weight", v_b)
        writer.add_tensor(p + "attn_output.weight", w(HIDDEN, HEADS * VALUE))
        writer.add_tensor(p + "ffn_norm.weight", norm(HIDDEN))
        writer.add_tensor(p + "ffn_gate.weight", w(ffn, HIDDEN))
        writer.add_tensor(p + "ffn_up.weight", w(ffn, HIDDEN))
        writer.add_tensor(p + "ffn_down.weight", w(HIDDEN, ffn))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {HERE / name}")


if __name__ == "__main__":
    write("deepseek2_dense.gguf", "dense", 1)
    write("deepseek2_lite.gguf", "lite", 4, layers=26, ffn=16, tied=True)
    write("deepseek2_qlora.gguf", "qlora", 2)
    write("deepseek2_legacy.gguf", "legacy", 3)

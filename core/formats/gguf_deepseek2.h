#pragma once

#include "tensor/tensor.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mla {

class GgufFile;

// The attention tensors of llama.cpp's `deepseek2` architecture with absorbed MLA (src/models/deepseek2.cpp of the
// pinned build, and its converter conversion/deepseek.py), from and to the DeepSeek-V2/V3 Hugging Face layout:
//   attn_kv_a_mqa  = kv_a_proj_with_mqa  [kvLora + rope, hidden]   (latent rows, then the shared rope key)
//   attn_k_b       ggml {nope, kvLora, heads}: for head h, the transpose of kv_b_proj's nope rows of that head
//   attn_v_b       ggml {kvLora, value, heads}: for head h, kv_b_proj's value rows of that head as they are
// kv_b_proj is [heads * (nope + value), kvLora], each head's nope rows first. In our row-major view (dims
// reversed) attn_k_b is [heads, kvLora, nope] and attn_v_b [heads, value, kvLora].
struct DeepSeek2Widths {
    std::int64_t heads = 0;
    std::int64_t nope = 0;
    std::int64_t rope = 0;
    std::int64_t value = 0;
    std::int64_t kvLora = 0;
};

// What a deepseek2 GGUF says about its attention, read and checked as llama.cpp's loader reads it
// (llama_model_deepseek2::load_arch_hparams and the general hyperparameters), every key checked against the others.
struct DeepSeek2Hyperparameters {
    DeepSeek2Widths widths;
    std::int64_t qLoraRank = 0; // 0: a plain attn_q
    bool absorbed = true;       // key/value_length_mla present: attn_k_b / attn_v_b; else the older attn_kv_b
    bool lite = false;          // 26 or 27 blocks (or 48 with a 128,256-token vocabulary): q_lora_rank not read
    // YaRN, when rope.scaling.type is "yarn": llama.cpp assumes mscale = mscale_all_dim, the converter writes
    // yarn_log_multiplier = 0.1 * mscale_all_dim.
    bool yarn = false;
    double yarnFactor = 1.0;
    std::int64_t yarnOriginalContext = 0;
    double yarnMscaleAllDim = 0.0;
    double yarnBetaFast = 32.0;
    double yarnBetaSlow = 1.0;
};

// Throws an Error naming `g`'s file and the key for anything llama.cpp would refuse or that contradicts another
// key: mixture-of-experts layers (expert_count, leading_dense_block_count), a missing or zero kv_lora_rank, one
// larger than the hidden size, key/value lengths that disagree with kv_lora_rank and the rope width, a key head
// count other than 1 with absorbed MLA, a missing q_lora_rank in a model that is not lite, RoPE scalings other
// than YaRN, attention temperature scaling.
DeepSeek2Hyperparameters readDeepSeek2Hyperparameters(const GgufFile& g, std::int64_t hidden, std::int64_t heads,
                                                      std::int64_t layers, std::int64_t vocab);

// Row `row` of attn_k_b (row h * kvLora + j: nope values) and of attn_v_b (row h * value + r: kvLora values), read
// from kv_b_proj. Rows are produced in order by a caller streaming the tensor, so the kB source keeps the current
// head's block: construct one per tensor written.
class DeepSeek2KvBSplitter {
public:
    DeepSeek2KvBSplitter(const Tensor& kvB, const DeepSeek2Widths& widths);
    void kBRow(std::uint64_t row, float* out);
    void vBRow(std::uint64_t row, float* out) const;

private:
    const Tensor& m_kvB;
    DeepSeek2Widths m_w;
    std::int64_t m_head = -1;
    std::vector<float> m_block; // the current head's nope rows, [nope, kvLora]
};

// kv_b_proj [heads * (nope + value), kvLora] (float32, owned) from attn_k_b [heads, kvLora, nope] and attn_v_b
// [heads, value, kvLora] as our reader sees them.
Tensor deepSeek2KvB(const Tensor& kB, const Tensor& vB, const DeepSeek2Widths& widths);

// Source row of output row `row` when the `rope` dims at the end of each `width`-row block (a query head's
// nope + rope rows, or kv_a_proj_with_mqa's single block) go from the half layout (pair i = dims (i, i + rope/2))
// to llama.cpp's interleaved one (pair i = dims (2i, 2i + 1)). Rows outside the rope part map to themselves.
std::int64_t deepSeek2InterleavedRopeRow(std::int64_t row, std::int64_t width, std::int64_t rope);
// The inverse: interleaved -> half.
std::int64_t deepSeek2HalfRopeRow(std::int64_t row, std::int64_t width, std::int64_t rope);

} // namespace mla

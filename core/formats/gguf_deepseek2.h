#pragma once

#include "tensor/tensor.h"

#include <cstdint>
#include <vector>

namespace mla {

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

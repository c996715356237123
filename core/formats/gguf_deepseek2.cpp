#include "formats/gguf_deepseek2.h"

#include "util/error.h"

namespace mla {

DeepSeek2KvBSplitter::DeepSeek2KvBSplitter(const Tensor& kvB, const DeepSeek2Widths& widths) : m_kvB(kvB), m_w(widths)
{
    const std::vector<std::int64_t> expected{widths.heads * (widths.nope + widths.value), widths.kvLora};
    if (kvB.shape() != expected)
        throw Error("internal: kv_b_proj has shape " + shapeString(kvB.shape()) + ", expected " + shapeString(expected));
}

void DeepSeek2KvBSplitter::kBRow(std::uint64_t row, float* out)
{
    const auto r = static_cast<std::int64_t>(row);
    const std::int64_t head = r / m_w.kvLora;
    const std::int64_t j = r % m_w.kvLora;
    if (head != m_head) {
        m_block.resize(static_cast<std::size_t>(m_w.nope * m_w.kvLora));
        m_kvB.rowsToFloat(head * (m_w.nope + m_w.value), m_w.nope, m_block.data());
        m_head = head;
    }
    for (std::int64_t i = 0; i < m_w.nope; ++i)
        out[i] = m_block[static_cast<std::size_t>(i * m_w.kvLora + j)];
}

void DeepSeek2KvBSplitter::vBRow(std::uint64_t row, float* out) const
{
    const auto r = static_cast<std::int64_t>(row);
    const std::int64_t head = r / m_w.value;
    m_kvB.rowToFloat(head * (m_w.nope + m_w.value) + m_w.nope + r % m_w.value, out);
}

Tensor deepSeek2KvB(const Tensor& kB, const Tensor& vB, const DeepSeek2Widths& w)
{
    if (kB.numel() != w.heads * w.kvLora * w.nope || vB.numel() != w.heads * w.value * w.kvLora)
        throw Error("internal: attn_k_b / attn_v_b sizes do not match the deepseek2 widths");
    const std::vector<float> k = kB.toFloats();
    const std::vector<float> v = vB.toFloats();
    const std::int64_t rows = w.heads * (w.nope + w.value);
    std::vector<float> out(static_cast<std::size_t>(rows * w.kvLora));
    for (std::int64_t h = 0; h < w.heads; ++h) {
        const std::int64_t base = h * (w.nope + w.value);
        for (std::int64_t i = 0; i < w.nope; ++i)
            for (std::int64_t j = 0; j < w.kvLora; ++j)
                out[static_cast<std::size_t>((base + i) * w.kvLora + j)] = k[static_cast<std::size_t>((h * w.kvLora + j) * w.nope + i)];
        for (std::int64_t r = 0; r < w.value; ++r)
            for (std::int64_t j = 0; j < w.kvLora; ++j)
                out[static_cast<std::size_t>((base + w.nope + r) * w.kvLora + j)] = v[static_cast<std::size_t>((h * w.value + r) * w.kvLora + j)];
    }
    return Tensor::fromFloats(DType::F32, {rows, w.kvLora}, out.data());
}

std::int64_t deepSeek2InterleavedRopeRow(std::int64_t row, std::int64_t width, std::int64_t rope)
{
    const std::int64_t block = row / width;
    const std::int64_t offset = row % width;
    const std::int64_t ropeStart = width - rope;
    if (offset < ropeStart)
        return row;
    const std::int64_t k = offset - ropeStart;
    return block * width + ropeStart + k / 2 + (k % 2) * (rope / 2);
}

std::int64_t deepSeek2HalfRopeRow(std::int64_t row, std::int64_t width, std::int64_t rope)
{
    const std::int64_t block = row / width;
    const std::int64_t offset = row % width;
    const std::int64_t ropeStart = width - rope;
    if (offset < ropeStart)
        return row;
    const std::int64_t k = offset - ropeStart;
    const std::int64_t half = rope / 2;
    return block * width + ropeStart + 2 * (k % half) + k / half;
}

} // namespace mla

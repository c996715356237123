#include "formats/gguf_deepseek2.h"

#include "formats/gguf.h"
#include "util/error.h"

#include <cmath>

namespace mla {
namespace {

constexpr const char* kPrefix = "deepseek2.";

bool isIntegerValue(const GgufValue& v)
{
    return v.type != GgufValueType::String && v.type != GgufValueType::Array && v.type != GgufValueType::F32
           && v.type != GgufValueType::F64 && v.type != GgufValueType::Bool;
}

// An integer key under deepseek2.; nullopt when absent, an Error when present but not a non-negative integer.
std::optional<std::int64_t> integerKey(const GgufFile& g, const std::string& suffix)
{
    const GgufValue* v = g.find(kPrefix + suffix);
    if (!v)
        return std::nullopt;
    if (!isIntegerValue(*v) || v->integer < 0 || v->integer > (std::int64_t(1) << 32))
        throw Error(g.path(), std::string("metadata ") + kPrefix + suffix + " must be a non-negative integer");
    return v->integer;
}

std::int64_t requiredKey(const GgufFile& g, const std::string& suffix, const std::string& why)
{
    if (auto v = integerKey(g, suffix))
        return *v;
    throw Error(g.path(), std::string("missing metadata ") + kPrefix + suffix + " (" + why + ")");
}

std::optional<double> numberKey(const GgufFile& g, const std::string& suffix)
{
    const GgufValue* v = g.find(kPrefix + suffix);
    if (!v)
        return std::nullopt;
    if (v->type == GgufValueType::String || v->type == GgufValueType::Array || v->type == GgufValueType::Bool
        || !std::isfinite(v->number))
        throw Error(g.path(), std::string("metadata ") + kPrefix + suffix + " must be a finite number");
    return v->number;
}

} // namespace

DeepSeek2Hyperparameters readDeepSeek2Hyperparameters(const GgufFile& g, std::int64_t hidden, std::int64_t heads,
                                                      std::int64_t layers, std::int64_t vocab)
{
    const auto& file = g.path();
    const std::string p = kPrefix;
    DeepSeek2Hyperparameters h;
    DeepSeek2Widths& w = h.widths;
    w.heads = heads;

    // Mixture of experts: every block past leading_dense_block_count (default 0) routes through experts.
    const auto denseKey = integerKey(g, "leading_dense_block_count");
    const std::int64_t experts = integerKey(g, "expert_count").value_or(0);
    if (!denseKey)
        throw Error(file, "missing metadata " + p + "leading_dense_block_count (" + std::to_string(layers)
                              + ", the block count, for a dense model): without it llama.cpp routes every block "
                                "through mixture-of-experts layers");
    const std::int64_t dense = *denseKey;
    if (dense < layers)
        throw Error(file, "a mixture-of-experts deepseek2 model (" + p + "leading_dense_block_count " + std::to_string(dense)
                              + " of " + std::to_string(layers) + " blocks, " + p + "expert_count " + std::to_string(experts)
                              + "): blocks " + std::to_string(dense) + " to " + std::to_string(layers - 1)
                              + " use expert feed-forward layers, which are not supported (only dense deepseek2)");
    if (experts > 0)
        throw Error(file, p + "expert_count " + std::to_string(experts) + ": mixture-of-experts deepseek2 models are not "
                                  "supported (only dense deepseek2, expert_count 0)");

    // llama.cpp's "lite" guess (DeepSeek-V2-Lite and relatives): q_lora_rank is then not read at all.
    h.lite = layers == 26 || layers == 27 || (layers == 48 && vocab == 128256);
    if (!h.lite)
        h.qLoraRank = requiredKey(g, "attention.q_lora_rank", "llama.cpp requires it unless the model has 26 or 27 blocks; "
                                                               "0 for a plain attn_q");

    w.kvLora = requiredKey(g, "attention.kv_lora_rank", "the latent width");
    if (w.kvLora <= 0)
        throw Error(file, "metadata " + p + "attention.kv_lora_rank must be positive");
    if (w.kvLora > hidden)
        throw Error(file, "metadata " + p + "attention.kv_lora_rank " + std::to_string(w.kvLora)
                              + " is larger than the hidden size " + std::to_string(hidden) + " (" + p + "embedding_length)");
    if (h.qLoraRank > hidden)
        throw Error(file, "metadata " + p + "attention.q_lora_rank " + std::to_string(h.qLoraRank)
                              + " is larger than the hidden size " + std::to_string(hidden));
    w.rope = requiredKey(g, "rope.dimension_count", "the width of the shared rotated key head");
    if (w.rope <= 0 || w.rope % 2 != 0)
        throw Error(file, "metadata " + p + "rope.dimension_count " + std::to_string(w.rope) + " must be positive and even");

    const auto keyMla = integerKey(g, "attention.key_length_mla");
    const auto valueMla = integerKey(g, "attention.value_length_mla");
    const auto key = integerKey(g, "attention.key_length");
    const auto value = integerKey(g, "attention.value_length");
    const std::int64_t kvHeads = integerKey(g, "attention.head_count_kv").value_or(heads);
    h.absorbed = keyMla.has_value() || valueMla.has_value();
    if (h.absorbed) {
        if (!keyMla || !valueMla)
            throw Error(file, "metadata " + p + (keyMla ? "attention.value_length_mla" : "attention.key_length_mla")
                                  + " is missing while its partner is present");
        if (*keyMla <= w.rope)
            throw Error(file, "metadata " + p + "attention.key_length_mla " + std::to_string(*keyMla)
                                  + " leaves no position-free key dims beside rope.dimension_count " + std::to_string(w.rope));
        w.nope = *keyMla - w.rope;
        w.value = *valueMla;
        // The absorbed view llama.cpp caches: one key "head" of kv_lora + rope values, the latent as the value.
        if (kvHeads != 1)
            throw Error(file, "metadata " + p + "attention.head_count_kv " + std::to_string(kvHeads)
                                  + " contradicts absorbed MLA (key_length_mla present), which caches one latent: expected 1");
        if (key && *key != w.kvLora + w.rope)
            throw Error(file, "metadata " + p + "attention.key_length " + std::to_string(*key) + " contradicts "
                                  + p + "attention.kv_lora_rank " + std::to_string(w.kvLora) + " + " + p
                                  + "rope.dimension_count " + std::to_string(w.rope));
        if (value && *value != w.kvLora)
            throw Error(file, "metadata " + p + "attention.value_length " + std::to_string(*value) + " contradicts "
                                  + p + "attention.kv_lora_rank " + std::to_string(w.kvLora));
    } else {
        // The older layout: ordinary heads over kv_b_proj's decompressed keys and values.
        if (!key || !value)
            throw Error(file, "metadata " + p + (key ? "attention.value_length" : "attention.key_length")
                                  + " is missing (needed without key_length_mla)");
        if (*key <= w.rope)
            throw Error(file, "metadata " + p + "attention.key_length " + std::to_string(*key)
                                  + " leaves no position-free key dims beside rope.dimension_count " + std::to_string(w.rope));
        if (kvHeads != heads)
            throw Error(file, "metadata " + p + "attention.head_count_kv " + std::to_string(kvHeads) + " must equal "
                                  + p + "attention.head_count " + std::to_string(heads) + " without key_length_mla");
        w.nope = *key - w.rope;
        w.value = *value;
    }
    if (w.value <= 0)
        throw Error(file, "metadata " + p + (h.absorbed ? "attention.value_length_mla" : "attention.value_length")
                              + " must be positive");

    if (const GgufValue* scaling = g.find(p + "rope.scaling.type"); scaling && scaling->string != "none") {
        if (scaling->type != GgufValueType::String || scaling->string != "yarn")
            throw Error(file, "metadata " + p + "rope.scaling.type '" + scaling->string
                                  + "' is not supported for deepseek2 (none, yarn)");
        h.yarn = true;
        h.yarnFactor = numberKey(g, "rope.scaling.factor").value_or(1.0);
        if (!(h.yarnFactor >= 1.0))
            throw Error(file, "metadata " + p + "rope.scaling.factor must be at least 1 for yarn");
        h.yarnOriginalContext = integerKey(g, "rope.scaling.original_context_length").value_or(0);
        // The converter writes 0.1 * mscale_all_dim (and llama.cpp divides by 0.1 again).
        h.yarnMscaleAllDim = numberKey(g, "rope.scaling.yarn_log_multiplier").value_or(0.0) / 0.1;
        h.yarnBetaFast = numberKey(g, "rope.scaling.yarn_beta_fast").value_or(32.0);
        h.yarnBetaSlow = numberKey(g, "rope.scaling.yarn_beta_slow").value_or(1.0);
    }
    for (const char* unsupported : {"attention.temperature_scale", "attention.temperature_length"}) {
        if (g.find(p + unsupported))
            throw Error(file, "metadata " + p + unsupported + ": attention temperature scaling is not supported");
    }
    return h;
}

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

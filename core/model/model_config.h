#pragma once

#include "model/deepseek_config.h"
#include "model/mla_config.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mla {

enum class RopeScaling { None, Linear, Llama3, Yarn };

struct RopeConfig {
    double theta = 10000.0;
    RopeScaling scaling = RopeScaling::None;
    double factor = 1.0;              // linear and llama3
    double lowFreqFactor = 1.0;       // llama3
    double highFreqFactor = 4.0;      // llama3
    std::int64_t originalMaxPositions = 8192; // llama3 and yarn
    // yarn (read for DeepSeek checkpoints only), as Hugging Face's _compute_yarn_parameters reads rope_scaling
    double betaFast = 32.0;
    double betaSlow = 1.0;
    double mscale = 0.0;          // 0: absent
    double mscaleAllDim = 0.0;    // 0: absent
    std::optional<double> attentionFactor;
    bool truncate = true;
};

// Everything about a model's shape that inference and conversion need, whatever file it came from.
struct ModelConfig {
    std::string architecture = "llama"; // key of the architecture table (llama, mistral, qwen2, qwen3)
    std::int64_t hidden = 0;
    std::int64_t ffn = 0;
    std::int64_t layers = 0;
    std::int64_t heads = 0;
    std::int64_t kvHeads = 0;
    std::int64_t headDim = 0;
    std::int64_t vocab = 0;
    std::int64_t maxPositions = 0;
    double rmsEps = 1e-5;
    RopeConfig rope;
    bool tieEmbeddings = true;
    bool qkvBias = false;   // biases on the query, key and value projections
    bool outputBias = false; // bias on o_proj
    bool mlpBias = false;
    bool qkNorm = false;    // per-head RMSNorm of queries and keys before RoPE (qwen3)
    std::int64_t slidingWindow = 0; // 0: full causal attention
    std::optional<int> bosId;
    std::vector<int> eosIds;
    std::optional<MlaConfig> mla; // present when the attention is Multi-head Latent Attention
    // Present for DeepSeek-V2/V3 checkpoints (architecture deepseek_v2 / deepseek_v3): the attention is MLA in the
    // DeepSeek layout; heads = kvHeads = num_attention_heads and headDim = qk_nope_head_dim + qk_rope_head_dim.
    std::optional<DeepSeekAttentionConfig> deepseek;

    std::int64_t qDim() const { return heads * headDim; }
    std::int64_t kvDim() const { return kvHeads * headDim; }
    std::int64_t group() const { return kvHeads > 0 ? heads / kvHeads : 0; }
    std::int64_t pairsPerHead() const { return headDim / 2; }
    bool isMla() const { return mla.has_value(); }
    // Columns of o_proj: heads * v_head_dim for DeepSeek attention, heads * headDim otherwise.
    std::int64_t attentionOutputDim() const { return deepseek ? heads * deepseek->valueDim : qDim(); }
    std::string attentionKind() const; // "mha", "gqa" or "mla"

    // Elements of K/V cache per token summed over layers (the MLA cache when mla is set).
    std::int64_t kvElementsPerToken() const;
    std::int64_t kvElementsPerTokenInLayer(std::int64_t layer) const;

    // Throws an Error naming `file` for any inconsistency (heads not dividing hidden, kv heads not dividing heads,
    // odd head size, non-positive sizes, ...).
    void validate(const std::filesystem::path& file) const;
};

// Reads a Hugging Face config.json (and its optional mha2mla block).
ModelConfig configFromHuggingFace(const nlohmann::json& json, const std::filesystem::path& file);
// The config.json we write for an exported model (original fields + mha2mla block when MLA).
nlohmann::ordered_json configToHuggingFace(const ModelConfig& config);

} // namespace mla

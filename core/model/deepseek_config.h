#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>

namespace mla {

struct ArchitectureInfo;
struct ModelConfig;

// Multi-head Latent Attention in the DeepSeek-V2/V3 checkpoint layout, as stock transformers, vLLM and SGLang read it
// (docs/deepseek-export.md lists the public code each fact was checked against). Per layer and token:
//   q      = q_proj(x)                 or q_b_proj(RMSNorm(q_a_proj(x)))      [heads, nope + rope]
//   [c; k_pe] = kv_a_proj_with_mqa(x)  c: the latent (kvLoraRank), k_pe: ONE rotated key head shared by all heads
//   [k_nope; v] = kv_b_proj(RMSNorm(c) * kv_a_layernorm)                       [heads, nope + value]
//   logit  = (q_nope . k_nope + q_pe . RoPE(k_pe)) * softmaxScale
// The absorbed form caches RMSNorm(c) and RoPE(k_pe): kvLoraRank + ropeDim values per token and layer.
struct DeepSeekAttentionConfig {
    std::int64_t kvLoraRank = 0;
    std::int64_t qLoraRank = 0;  // 0: q_proj straight from the hidden state (config q_lora_rank null)
    std::int64_t ropeDim = 0;    // qk_rope_head_dim: the shared rotated key head and each query head's rope part
    std::int64_t nopeDim = 0;    // qk_nope_head_dim
    std::int64_t valueDim = 0;   // v_head_dim
    bool ropeInterleave = true;  // pair i = dims (2i, 2i+1) of the rope part; false: dims (i, i + ropeDim/2)
    bool attentionBias = false;  // biases on q_a_proj, kv_a_proj_with_mqa and o_proj (transformers only)
    // transformers builds kv_a_layernorm and q_a_layernorm with DeepseekV3RMSNorm's default eps, not rms_norm_eps
    // (vLLM and SGLang use rms_norm_eps; converted exports keep the latent's RMS far above either eps).
    double latentNormEps = 1e-6;
    bool yarnMscaleInScale = true; // V3: softmax scale *= yarn_get_mscale(factor, mscale_all_dim)^2 (V2 in transformers: no)
    // False only in in-memory ablations that measure what the latent norm costs; such a model is never written.
    bool latentNorm = true;

    std::int64_t qkHeadDim() const { return nopeDim + ropeDim; }
    std::int64_t cacheElementsPerLayer() const { return kvLoraRank + ropeDim; }
    bool operator==(const DeepSeekAttentionConfig&) const = default;
};

// Reads a DeepSeek-V2/V3 config.json (model_type deepseek_v2 / deepseek_v3) into `config`: refuses mixture-of-experts
// layers (naming the field), rope scalings other than yarn, and widths that disagree, with an Error naming `file`.
ModelConfig deepSeekConfigFromHuggingFace(const nlohmann::json& json, const ArchitectureInfo& arch,
                                          const std::filesystem::path& file);

// The config.json a stock DeepseekV3ForCausalLM reads: every field the engines look up, a dense MLP in every layer
// (first_k_dense_replace = num_hidden_layers, integer expert counts that no layer uses), no head_dim (transformers
// would take it for the rotary width).
nlohmann::ordered_json deepSeekConfigToHuggingFace(const ModelConfig& config);

// Consistency of the DeepSeek widths with the rest of the config (called by ModelConfig::validate).
void validateDeepSeekAttention(const ModelConfig& config, const std::filesystem::path& file);

// The softmax scale the engines use: (nope + rope)^-0.5, times yarn's mscale(factor, mscale_all_dim)^2 where
// transformers applies it; and the factor yarn puts on cos and sin (so on q_pe and k_pe both).
double deepSeekSoftmaxScale(const ModelConfig& config);
double deepSeekRopeAttentionFactor(const ModelConfig& config);

} // namespace mla

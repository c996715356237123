#include "model/deepseek_config.h"

#include "model/architecture.h"
#include "model/config_json_fields.h"
#include "model/model_config.h"
#include "util/error.h"
#include "util/json_util.h"

#include <cmath>
#include <string>
#include <vector>

namespace mla {
namespace {

struct WidthField {
    const char* key;
    std::int64_t DeepSeekAttentionConfig::*member;
    std::int64_t fallback; // transformers' default when the key is absent (DeepseekV2Config / DeepseekV3Config)
};

constexpr WidthField kWidths[] = {
    {"kv_lora_rank", &DeepSeekAttentionConfig::kvLoraRank, 512},
    {"qk_rope_head_dim", &DeepSeekAttentionConfig::ropeDim, 64},
    {"qk_nope_head_dim", &DeepSeekAttentionConfig::nopeDim, 128},
    {"v_head_dim", &DeepSeekAttentionConfig::valueDim, 128},
};

constexpr std::int64_t kDefaultQLoraRank = 1536;

// rope_scaling: absent / null / default, or yarn (the only scaling SGLang's DeepSeek code accepts: it turns any
// rope_scaling into deepseek_yarn).
RopeConfig ropeFromJson(const JsonObject& obj, std::int64_t maxPositions)
{
    RopeConfig rope;
    rope.theta = obj.optionalNumber("rope_theta").value_or(10000.0);
    if (!obj.has("rope_scaling"))
        return rope;
    const JsonObject s(obj.raw().at("rope_scaling"), obj.file(), "rope_scaling");
    const std::string type = s.optionalString("rope_type").value_or(s.optionalString("type").value_or("default"));
    if (type == "default")
        return rope;
    if (type != "yarn")
        obj.fail("rope_scaling type '" + type + "' is not supported for DeepSeek models (supported: none, yarn)");
    rope.scaling = RopeScaling::Yarn;
    if (!s.has("factor"))
        obj.fail("rope_scaling.factor is missing (yarn needs the scaling factor)");
    rope.factor = s.number("factor");
    rope.originalMaxPositions = s.optionalInteger("original_max_position_embeddings").value_or(maxPositions);
    rope.betaFast = s.optionalNumber("beta_fast").value_or(32.0);
    rope.betaSlow = s.optionalNumber("beta_slow").value_or(1.0);
    rope.mscale = s.optionalNumber("mscale").value_or(0.0);
    rope.mscaleAllDim = s.optionalNumber("mscale_all_dim").value_or(0.0);
    rope.attentionFactor = s.optionalNumber("attention_factor");
    rope.truncate = s.optionalBool("truncate").value_or(true);
    if (!(rope.factor > 0.0) || !std::isfinite(rope.factor))
        obj.fail("rope_scaling.factor must be positive");
    if (rope.originalMaxPositions <= 0)
        obj.fail("rope_scaling.original_max_position_embeddings must be positive");
    if (!(rope.betaFast > 0.0) || !(rope.betaSlow > 0.0))
        obj.fail("rope_scaling.beta_fast and beta_slow must be positive");
    return rope;
}

// transformers builds a mixture-of-experts MLP in every layer from first_k_dense_replace on (vLLM and SGLang also
// need n_routed_experts set and skip layers by moe_layer_freq): a dense model has first_k_dense_replace >= layers.
void refuseMixtureOfExperts(const JsonObject& obj, const ArchitectureInfo& arch, std::int64_t layers)
{
    const std::int64_t firstDense = obj.optionalInteger("first_k_dense_replace").value_or(arch.defaultFirstDenseLayers);
    if (firstDense >= layers)
        return;
    const auto experts = obj.raw().find("n_routed_experts");
    const std::string expertText = experts == obj.raw().end() ? std::to_string(arch.defaultRoutedExperts) + " (the default when absent)"
                                                              : experts->dump();
    obj.fail("mixture-of-experts layers are not supported: first_k_dense_replace is " + std::to_string(firstDense)
             + (obj.has("first_k_dense_replace") ? "" : " (the default when absent)") + " < num_hidden_layers "
             + std::to_string(layers) + " with n_routed_experts " + expertText + ", so layers " + std::to_string(firstDense)
             + ".." + std::to_string(layers - 1)
             + " would route through experts (a dense model sets first_k_dense_replace = num_hidden_layers)");
}

double yarnMscale(double scale, double mscale)
{
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

} // namespace

ModelConfig deepSeekConfigFromHuggingFace(const nlohmann::json& json, const ArchitectureInfo& arch, const std::filesystem::path& file)
{
    const JsonObject obj(json, file);
    ModelConfig c;
    c.architecture = std::string(arch.name);
    readRequiredSizes(obj, c);
    if (c.heads <= 0)
        obj.fail("num_attention_heads must be positive");
    c.maxPositions = obj.optionalInteger("max_position_embeddings").value_or(arch.defaultMaxPositions);

    DeepSeekAttentionConfig a;
    for (const auto& w : kWidths) {
        a.*(w.member) = obj.optionalInteger(w.key).value_or(w.fallback);
        if (a.*(w.member) < -(1 << 24) || a.*(w.member) > (1 << 24)) // bounds before any sum of widths
            obj.fail(std::string(w.key) + " " + std::to_string(a.*(w.member)) + " is out of range");
    }
    const auto q = json.find("q_lora_rank");
    if (q == json.end())
        a.qLoraRank = kDefaultQLoraRank;
    else if (!q->is_null())
        a.qLoraRank = obj.integer("q_lora_rank");
    if (q != json.end() && !q->is_null() && a.qLoraRank <= 0)
        obj.fail("q_lora_rank must be null or positive, got " + std::to_string(a.qLoraRank));
    a.ropeInterleave = arch.ropeInterleaveKey ? obj.optionalBool("rope_interleave").value_or(true) : true;
    a.attentionBias = obj.optionalBool("attention_bias").value_or(false);
    a.yarnMscaleInScale = arch.yarnMscaleInScale;

    // The query/key heads are the attention heads; repeat_kv in transformers would multiply heads otherwise.
    c.kvHeads = obj.optionalInteger("num_key_value_heads").value_or(c.heads);
    if (c.kvHeads != c.heads)
        obj.fail("num_key_value_heads " + std::to_string(c.kvHeads) + " differs from num_attention_heads "
                 + std::to_string(c.heads) + ": DeepSeek attention expands the latent into every head");
    if (obj.has("head_dim") && obj.integer("head_dim") != a.ropeDim)
        obj.fail("head_dim " + std::to_string(obj.integer("head_dim")) + " differs from qk_rope_head_dim "
                 + std::to_string(a.ropeDim) + " (transformers takes head_dim as the rotary width)");
    c.headDim = a.qkHeadDim();
    c.rmsEps = obj.optionalNumber("rms_norm_eps").value_or(1e-6);
    c.rope = ropeFromJson(obj, c.maxPositions);
    c.tieEmbeddings = obj.optionalBool("tie_word_embeddings").value_or(false);
    c.qkvBias = false;
    c.outputBias = a.attentionBias;
    c.mlpBias = false;
    const std::string act = obj.optionalString("hidden_act").value_or("silu");
    if (act != "silu")
        obj.fail("hidden_act '" + act + "' is not supported (only silu / SwiGLU)");
    readSpecialTokenIds(json, file, c);
    refuseMixtureOfExperts(obj, arch, c.layers);
    c.deepseek = a;
    c.validate(file);
    return c;
}

void validateDeepSeekAttention(const ModelConfig& c, const std::filesystem::path& file)
{
    const DeepSeekAttentionConfig& a = *c.deepseek;
    if (a.kvLoraRank <= 0 || a.kvLoraRank > (1 << 20))
        throw Error(file, "kv_lora_rank " + std::to_string(a.kvLoraRank) + " is not a plausible latent width");
    if (a.ropeDim <= 0 || a.ropeDim % 2 != 0 || a.ropeDim > 4096)
        throw Error(file, "qk_rope_head_dim " + std::to_string(a.ropeDim) + " must be a positive even number (RoPE rotates pairs)");
    if (a.nopeDim < 0 || a.nopeDim > 4096)
        throw Error(file, "qk_nope_head_dim " + std::to_string(a.nopeDim) + " is out of range");
    if (a.valueDim <= 0 || a.valueDim > 4096)
        throw Error(file, "v_head_dim " + std::to_string(a.valueDim) + " must be positive");
    if (a.qLoraRank < 0 || a.qLoraRank > (1 << 20))
        throw Error(file, "q_lora_rank " + std::to_string(a.qLoraRank) + " is out of range");
    if (c.headDim != a.qkHeadDim())
        throw Error(file, "internal: head size " + std::to_string(c.headDim) + " is not qk_nope_head_dim + qk_rope_head_dim");
    if (c.kvHeads != c.heads)
        throw Error(file, "DeepSeek attention needs num_key_value_heads = num_attention_heads");
    if (c.isMla())
        throw Error(file, "a DeepSeek-layout model cannot also carry an mha2mla block");
    if (c.rope.scaling != RopeScaling::None && c.rope.scaling != RopeScaling::Yarn)
        throw Error(file, "DeepSeek models take no rope_scaling other than yarn");
}

double deepSeekSoftmaxScale(const ModelConfig& c)
{
    const DeepSeekAttentionConfig& a = *c.deepseek;
    double scale = 1.0 / std::sqrt(static_cast<double>(a.qkHeadDim()));
    if (a.yarnMscaleInScale && c.rope.scaling == RopeScaling::Yarn && c.rope.mscaleAllDim != 0.0) {
        const double m = yarnMscale(c.rope.factor, c.rope.mscaleAllDim);
        scale *= m * m;
    }
    return scale;
}

double deepSeekRopeAttentionFactor(const ModelConfig& c)
{
    const RopeConfig& r = c.rope;
    if (r.scaling != RopeScaling::Yarn)
        return 1.0;
    if (r.attentionFactor)
        return *r.attentionFactor;
    if (r.mscale != 0.0 && r.mscaleAllDim != 0.0)
        return yarnMscale(r.factor, r.mscale) / yarnMscale(r.factor, r.mscaleAllDim);
    return yarnMscale(r.factor, 1.0);
}

nlohmann::ordered_json deepSeekConfigToHuggingFace(const ModelConfig& c)
{
    const DeepSeekAttentionConfig& a = *c.deepseek;
    if (!a.latentNorm)
        throw Error("internal: a DeepSeek model without its latent norm is an in-memory ablation and is never written");
    const ArchitectureInfo& arch = architectureInfo(c.architecture);
    nlohmann::ordered_json j;
    j["architectures"] = {std::string(arch.hfClass)};
    j["model_type"] = c.architecture;
    j["vocab_size"] = c.vocab;
    j["hidden_size"] = c.hidden;
    j["intermediate_size"] = c.ffn;
    j["num_hidden_layers"] = c.layers;
    j["num_attention_heads"] = c.heads;
    j["num_key_value_heads"] = c.heads;
    j["kv_lora_rank"] = a.kvLoraRank;
    j["q_lora_rank"] = a.qLoraRank > 0 ? nlohmann::ordered_json(a.qLoraRank) : nlohmann::ordered_json();
    j["qk_rope_head_dim"] = a.ropeDim;
    j["qk_nope_head_dim"] = a.nopeDim;
    j["v_head_dim"] = a.valueDim;
    // Dense MLP in every layer. The expert fields stay integers because vLLM and SGLang do arithmetic on them while
    // loading (n_routed_experts + shared experts, n_shared_experts > 0) even when no layer routes.
    j["first_k_dense_replace"] = c.layers;
    j["moe_layer_freq"] = 1;
    j["n_routed_experts"] = 1;
    j["n_shared_experts"] = 1;
    j["num_experts_per_tok"] = 1;
    j["n_group"] = 1;
    j["topk_group"] = 1;
    j["moe_intermediate_size"] = c.ffn;
    j["routed_scaling_factor"] = 1.0;
    j["norm_topk_prob"] = true;
    j["hidden_act"] = "silu";
    j["max_position_embeddings"] = c.maxPositions;
    j["rms_norm_eps"] = c.rmsEps;
    j["rope_theta"] = c.rope.theta;
    if (c.rope.scaling == RopeScaling::Yarn) {
        nlohmann::ordered_json s = {{"type", "yarn"}, {"rope_type", "yarn"}, {"factor", c.rope.factor},
                                    {"original_max_position_embeddings", c.rope.originalMaxPositions},
                                    {"beta_fast", c.rope.betaFast}, {"beta_slow", c.rope.betaSlow}};
        if (c.rope.mscale != 0.0)
            s["mscale"] = c.rope.mscale;
        if (c.rope.mscaleAllDim != 0.0)
            s["mscale_all_dim"] = c.rope.mscaleAllDim;
        if (c.rope.attentionFactor)
            s["attention_factor"] = *c.rope.attentionFactor;
        j["rope_scaling"] = s;
    } else {
        j["rope_scaling"] = nullptr;
    }
    if (arch.ropeInterleaveKey)
        j["rope_interleave"] = a.ropeInterleave;
    j["attention_bias"] = a.attentionBias;
    j["attention_dropout"] = 0.0;
    j["tie_word_embeddings"] = c.tieEmbeddings;
    j["initializer_range"] = 0.02;
    j["use_cache"] = true;
    if (c.bosId)
        j["bos_token_id"] = *c.bosId;
    if (c.eosIds.size() == 1)
        j["eos_token_id"] = c.eosIds[0];
    else if (!c.eosIds.empty())
        j["eos_token_id"] = c.eosIds;
    j["torch_dtype"] = "float32";
    return j;
}

} // namespace mla

#include "model/model_config.h"

#include "model/architecture.h"
#include "model/config_json_fields.h"
#include "model/mla_model_type.h"
#include "util/error.h"
#include "util/json_util.h"
#include "util/version.h"

#include <algorithm>
#include <limits>
#include <set>
#include <sstream>

namespace mla {
namespace {

struct IntegerField {
    const char* key;
    std::int64_t ModelConfig::*member;
};

// Required integer fields of a Hugging Face config.json.
constexpr IntegerField kRequiredIntegers[] = {
    {"hidden_size", &ModelConfig::hidden},
    {"intermediate_size", &ModelConfig::ffn},
    {"num_hidden_layers", &ModelConfig::layers},
    {"num_attention_heads", &ModelConfig::heads},
    {"vocab_size", &ModelConfig::vocab},
};

struct RopeScalingName {
    const char* name;
    RopeScaling scaling;
};

constexpr RopeScalingName kRopeScalings[] = {
    {"default", RopeScaling::None},
    {"linear", RopeScaling::Linear},
    {"llama3", RopeScaling::Llama3},
};

std::vector<int> idList(const nlohmann::json& v, const std::filesystem::path& file, const char* key)
{
    std::vector<int> ids;
    if (v.is_null())
        return ids;
    auto id = [&](const nlohmann::json& e) {
        // Read wide, so an id beyond int cannot wrap into the vocabulary; validate() checks the range.
        const std::int64_t x = e.is_number_unsigned() ? static_cast<std::int64_t>(std::min<std::uint64_t>(e.get<std::uint64_t>(), 1ull << 40))
                                                      : e.get<std::int64_t>();
        return static_cast<int>(std::clamp<std::int64_t>(x, -1, std::numeric_limits<int>::max()));
    };
    if (v.is_number_integer()) {
        ids.push_back(id(v));
        return ids;
    }
    if (v.is_array()) {
        if (v.size() > 1024)
            throw Error(file, std::string("'") + key + "' lists " + std::to_string(v.size()) + " ids; at most 1024 are allowed");
        for (const auto& e : v) {
            if (!e.is_number_integer())
                throw Error(file, std::string("'") + key + "' must be an integer or a list of integers");
            ids.push_back(id(e));
        }
        return ids;
    }
    throw Error(file, std::string("'") + key + "' must be an integer or a list of integers");
}

RopeConfig ropeFromJson(const JsonObject& obj)
{
    RopeConfig rope;
    rope.theta = obj.optionalNumber("rope_theta").value_or(10000.0);
    if (!obj.has("rope_scaling"))
        return rope;
    const JsonObject scaling(obj.raw().at("rope_scaling"), obj.file(), "rope_scaling");
    std::string type = scaling.optionalString("rope_type").value_or(scaling.optionalString("type").value_or("default"));
    bool known = false;
    for (const auto& s : kRopeScalings) {
        if (type == s.name) {
            rope.scaling = s.scaling;
            known = true;
        }
    }
    if (!known)
        obj.fail("rope_scaling type '" + type + "' is not supported (supported: default, linear, llama3)");
    rope.factor = scaling.optionalNumber("factor").value_or(1.0);
    rope.lowFreqFactor = scaling.optionalNumber("low_freq_factor").value_or(1.0);
    rope.highFreqFactor = scaling.optionalNumber("high_freq_factor").value_or(4.0);
    rope.originalMaxPositions = scaling.optionalInteger("original_max_position_embeddings").value_or(8192);
    if (rope.factor <= 0.0)
        obj.fail("rope_scaling.factor must be positive");
    if (rope.scaling == RopeScaling::Llama3 && rope.highFreqFactor <= rope.lowFreqFactor)
        obj.fail("rope_scaling.high_freq_factor must exceed low_freq_factor");
    return rope;
}

MlaConfig mlaFromJson(const nlohmann::json& json, const ModelConfig& base, const std::filesystem::path& file)
{
    const JsonObject block(json, file, "mha2mla");
    MlaConfig mla;
    mla.partialRopeVersion = block.optionalString("partial_rope_version").value_or("custom");
    mla.uniformStartPoint = static_cast<int>(block.optionalInteger("uniform_start_point").value_or(0));
    mla.sigmaPlacement = block.optionalString("sigma_placement").value_or("up");
    mla.activationAware = block.optionalBool("activation_aware").value_or(false);
    mla.preset = block.optionalString("preset").value_or("");
    mla.toolVersion = block.optionalString("tool_version").value_or("");
    const std::string methodName = block.optionalString("svd_init_method").value_or("joint");
    LatentMethod method;
    if (!parseLatentMethod(methodName, method))
        block.fail("mha2mla.svd_init_method '" + methodName + "' is not one of joint, split, only_key, only_value, none");

    const auto& pairs = block.raw().find("rope_pairs_kept");
    if (pairs == block.raw().end() || !pairs->is_array())
        block.fail("mha2mla.rope_pairs_kept is missing: the explicit per-layer, per-KV-head list of kept RoPE pairs");
    if (static_cast<std::int64_t>(pairs->size()) != base.layers)
        block.fail("mha2mla.rope_pairs_kept has " + std::to_string(pairs->size()) + " layers, expected "
                   + std::to_string(base.layers));

    // Latent widths: explicit per layer (latent_dims for the key/joint latent, latent_dims_v for the value latent),
    // else the public code's low_rank x KV heads for every latent the method has.
    auto perLayer = [&](const char* key, std::int64_t fallback) {
        std::vector<std::int64_t> out(static_cast<std::size_t>(base.layers), fallback);
        auto it = block.raw().find(key);
        if (it == block.raw().end() || it->is_null())
            return out;
        if (!it->is_array() || static_cast<std::int64_t>(it->size()) != base.layers)
            block.fail(std::string("mha2mla.") + key + " must list one width per layer");
        for (std::size_t l = 0; l < it->size(); ++l) {
            if (!(*it)[l].is_number_integer() || (*it)[l].get<std::int64_t>() < 0)
                block.fail(std::string("mha2mla.") + key + " entries must be non-negative integers");
            out[l] = (*it)[l].get<std::int64_t>();
        }
        return out;
    };
    const std::int64_t lowRankWidth = block.optionalInteger("low_rank").value_or(0) * base.kvHeads;
    const bool keyLatent = method == LatentMethod::Joint || method == LatentMethod::Split || method == LatentMethod::Key;
    const bool valueLatent = method == LatentMethod::Split || method == LatentMethod::Value;
    const std::vector<std::int64_t> latentK = perLayer("latent_dims", keyLatent ? lowRankWidth : 0);
    const std::vector<std::int64_t> latentV = perLayer("latent_dims_v", valueLatent ? lowRankWidth : 0);

    for (std::int64_t l = 0; l < base.layers; ++l) {
        MlaLayerConfig layer;
        layer.method = method;
        layer.latentK = keyLatent ? latentK[static_cast<std::size_t>(l)] : 0;
        layer.latentV = valueLatent ? latentV[static_cast<std::size_t>(l)] : 0;
        const nlohmann::json& layerPairs = (*pairs)[static_cast<std::size_t>(l)];
        if (!layerPairs.is_array() || static_cast<std::int64_t>(layerPairs.size()) != base.kvHeads)
            block.fail("mha2mla.rope_pairs_kept[" + std::to_string(l) + "] must list " + std::to_string(base.kvHeads)
                       + " KV heads");
        for (const auto& headPairs : layerPairs) {
            std::vector<int> kept;
            if (!headPairs.is_array())
                block.fail("mha2mla.rope_pairs_kept[" + std::to_string(l) + "] entries must be lists of pair indices");
            for (const auto& j : headPairs) {
                if (!j.is_number_integer() || j.get<std::int64_t>() < 0 || j.get<std::int64_t>() >= base.headDim / 2)
                    block.fail("mha2mla.rope_pairs_kept[" + std::to_string(l) + "] has a pair index outside [0, "
                               + std::to_string(base.headDim / 2) + ")");
                kept.push_back(j.get<int>());
            }
            if (!std::is_sorted(kept.begin(), kept.end()) || std::adjacent_find(kept.begin(), kept.end()) != kept.end())
                block.fail("mha2mla.rope_pairs_kept[" + std::to_string(l) + "] pair indices must be ascending and distinct");
            if (!layer.keptPairs.empty() && kept.size() != layer.keptPairs[0].size())
                block.fail("mha2mla.rope_pairs_kept[" + std::to_string(l) + "]: every KV head must keep the same number of pairs");
            layer.keptPairs.push_back(std::move(kept));
        }
        mla.layers.push_back(std::move(layer));
    }
    return mla;
}

} // namespace

void readRequiredSizes(const JsonObject& obj, ModelConfig& c)
{
    for (const auto& f : kRequiredIntegers)
        c.*(f.member) = obj.integer(f.key);
}

void readSpecialTokenIds(const nlohmann::json& json, const std::filesystem::path& file, ModelConfig& c)
{
    if (const auto bos = json.find("bos_token_id"); bos != json.end()) {
        const auto ids = idList(*bos, file, "bos_token_id");
        if (!ids.empty())
            c.bosId = ids.front();
    }
    if (const auto eos = json.find("eos_token_id"); eos != json.end())
        c.eosIds = idList(*eos, file, "eos_token_id");
}

std::string ModelConfig::attentionKind() const
{
    if (mla || deepseek)
        return "mla";
    return kvHeads == heads ? "mha" : "gqa";
}

std::int64_t ModelConfig::kvElementsPerTokenInLayer(std::int64_t layer) const
{
    if (deepseek)
        return deepseek->cacheElementsPerLayer();
    if (mla)
        return mla->layers[static_cast<std::size_t>(layer)].cacheElements(kvHeads, headDim);
    return 2 * kvHeads * headDim;
}

std::int64_t ModelConfig::kvElementsPerToken() const
{
    std::int64_t total = 0;
    for (std::int64_t l = 0; l < layers; ++l)
        total += kvElementsPerTokenInLayer(l);
    return total;
}

void ModelConfig::validate(const std::filesystem::path& file) const
{
    auto positive = [&](std::int64_t v, const char* what) {
        if (v <= 0)
            throw Error(file, std::string(what) + " must be positive, got " + std::to_string(v));
    };
    positive(hidden, "hidden size");
    positive(ffn, "feed-forward size");
    positive(layers, "layer count");
    positive(heads, "attention head count");
    positive(kvHeads, "key/value head count");
    positive(headDim, "head size");
    positive(vocab, "vocabulary size");
    // Bounds far above any real model; they stop a corrupt header from sizing an allocation.
    constexpr std::int64_t kLimit = 1 << 24;
    if (hidden > kLimit || ffn > 4 * kLimit || layers > 4096 || heads > 4096 || headDim > 4096 || vocab > 4 * kLimit)
        throw Error(file, "model dimensions are implausibly large (hidden " + std::to_string(hidden) + ", layers "
                              + std::to_string(layers) + ", vocab " + std::to_string(vocab) + ")");
    if (heads % kvHeads != 0)
        throw Error(file, std::to_string(kvHeads) + " key/value heads do not divide " + std::to_string(heads)
                              + " attention heads");
    if (headDim % 2 != 0 && !deepseek) // DeepSeek: only the rope part must be even (validateDeepSeekAttention)
        throw Error(file, "head size " + std::to_string(headDim) + " is odd; RoPE needs pairs of dimensions");
    auto number = [](double v) {
        std::ostringstream s;
        s << v;
        return s.str();
    };
    if (!(rmsEps > 0.0) || rmsEps > 1.0)
        throw Error(file, "rms_norm_eps " + number(rmsEps) + " is out of range (0, 1]");
    // RoPE values (rope_theta / GGUF rope.freq_base, the scaling block) size angles and wavelengths: a NaN, zero or
    // infinite value would silently give a model that computes nonsense.
    if (!(rope.theta > 1.0 && rope.theta <= 1e12))
        throw Error(file, "rope_theta must be greater than 1 and at most 1e12 (GGUF: rope.freq_base), got " + number(rope.theta));
    if (!(rope.factor > 0.0 && rope.factor <= 1e6))
        throw Error(file, "rope scaling factor " + number(rope.factor) + " is out of range (0, 1e6]");
    if (rope.scaling == RopeScaling::Llama3
        && !(rope.lowFreqFactor > 0.0 && rope.highFreqFactor > rope.lowFreqFactor && rope.highFreqFactor <= 1e6
             && rope.originalMaxPositions > 0 && rope.originalMaxPositions <= (1 << 30)))
        throw Error(file, "llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor <= 1e6 and original_max_position_embeddings in [1, 2^30]");
    if (maxPositions < 0 || maxPositions > (std::int64_t(1) << 30))
        throw Error(file, "max_position_embeddings must not be negative nor above 2^30, got " + std::to_string(maxPositions));
    if (slidingWindow < 0 || slidingWindow > (std::int64_t(1) << 30))
        throw Error(file, "sliding_window " + std::to_string(slidingWindow) + " is out of range [0, 2^30] (0: full attention)");
    if (bosId && (*bosId < 0 || *bosId >= vocab))
        throw Error(file, "bos token id " + std::to_string(*bosId) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    for (int eos : eosIds) {
        if (eos < 0 || eos >= vocab)
            throw Error(file, "eos token id " + std::to_string(eos) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
    if (!findArchitecture(architecture))
        throw Error(file, "unsupported architecture '" + architecture + "' (supported: " + supportedArchitectureList() + ")");
    if (mla) {
        if (static_cast<std::int64_t>(mla->layers.size()) != layers)
            throw Error(file, "MLA settings cover " + std::to_string(mla->layers.size()) + " layers, the model has "
                                  + std::to_string(layers));
        for (std::size_t l = 0; l < mla->layers.size(); ++l) {
            const auto& layer = mla->layers[l];
            if (static_cast<std::int64_t>(layer.keptPairs.size()) != kvHeads)
                throw Error(file, "MLA layer " + std::to_string(l) + " lists kept pairs for "
                                      + std::to_string(layer.keptPairs.size()) + " KV heads, expected " + std::to_string(kvHeads));
            if (layer.latentK < 0 || layer.latentV < 0 || layer.latentWidth() > hidden + 2 * kvDim())
                throw Error(file, "MLA layer " + std::to_string(l) + " has an invalid latent width");
            if ((layer.compressesKeys() && layer.method != LatentMethod::Value && layer.latentK <= 0)
                || ((layer.method == LatentMethod::Split || layer.method == LatentMethod::Value) && layer.latentV <= 0))
                throw Error(file, "MLA layer " + std::to_string(l) + " compresses with a latent of width 0");
        }
    }
    if (deepseek)
        validateDeepSeekAttention(*this, file);
}

ModelConfig configFromHuggingFace(const nlohmann::json& json, const std::filesystem::path& file)
{
    const JsonObject obj(json, file);
    ModelConfig c;
    std::string modelType = obj.optionalString("model_type").value_or("");
    if (modelType.empty() && obj.has("architectures") && json["architectures"].is_array() && !json["architectures"].empty()
        && json["architectures"][0].is_string()) {
        const std::string cls = json["architectures"][0].get<std::string>();
        for (const char* name : {"llama", "mistral", "qwen2", "qwen3", "deepseek_v2", "deepseek_v3"}) {
            if (architectureInfo(name).hfClass == cls)
                modelType = name;
        }
    }
    // An MLA export names its own model type (so that stock loaders refuse it); its layers follow the architecture it
    // was converted from.
    if (modelType == kMlaModelType) {
        const auto block = json.find("mha2mla");
        if (block == json.end() || !block->is_object() || !block->contains("base_model_type")
            || !(*block)["base_model_type"].is_string())
            throw Error(file, "model_type '" + std::string(kMlaModelType)
                                  + "' needs mha2mla.base_model_type, the architecture the model was converted from");
        modelType = (*block)["base_model_type"].get<std::string>();
    }
    const ArchitectureInfo* arch = findArchitecture(modelType);
    if (!arch)
        throw Error(file, "unsupported model_type '" + modelType + "' (supported: " + supportedArchitectureList() + ")");
    c.architecture = std::string(arch->name);
    if (arch->latentAttention)
        return deepSeekConfigFromHuggingFace(json, *arch, file);

    readRequiredSizes(obj, c);
    c.kvHeads = obj.optionalInteger("num_key_value_heads").value_or(c.heads);
    if (c.heads <= 0)
        throw Error(file, "num_attention_heads must be positive");
    c.headDim = obj.optionalInteger("head_dim").value_or(c.hidden / c.heads);
    if (!obj.has("head_dim") && c.hidden % c.heads != 0)
        throw Error(file, std::to_string(c.heads) + " attention heads do not divide hidden_size " + std::to_string(c.hidden));
    c.maxPositions = obj.optionalInteger("max_position_embeddings").value_or(2048);
    c.rmsEps = obj.optionalNumber("rms_norm_eps").value_or(1e-6);
    c.rope = ropeFromJson(obj);
    c.tieEmbeddings = obj.optionalBool("tie_word_embeddings").value_or(false);
    const bool attentionBias = obj.optionalBool("attention_bias").value_or(false);
    c.qkvBias = arch->qkvBiasAlways || (arch->attentionBiasKey && attentionBias);
    c.outputBias = arch->attentionBiasKey && attentionBias;
    c.mlpBias = obj.optionalBool("mlp_bias").value_or(false);
    c.qkNorm = arch->qkNorm;
    if (arch->usesSlidingWindowKey)
        c.slidingWindow = obj.optionalInteger("sliding_window").value_or(0);
    if (obj.optionalBool("use_sliding_window").value_or(false))
        throw Error(file, "use_sliding_window is set; per-layer sliding windows are not supported");
    const std::string act = obj.optionalString("hidden_act").value_or("silu");
    if (act != "silu")
        throw Error(file, "hidden_act '" + act + "' is not supported (only silu / SwiGLU)");
    readSpecialTokenIds(json, file, c);

    if (obj.has("mha2mla")) {
        c.validate(file); // the base shape must be sound before the MLA block is read against it
        c.mla = mlaFromJson(json["mha2mla"], c, file);
    }
    c.validate(file);
    return c;
}

nlohmann::ordered_json configToHuggingFace(const ModelConfig& c)
{
    if (c.deepseek)
        return deepSeekConfigToHuggingFace(c);
    const ArchitectureInfo& arch = architectureInfo(c.architecture);
    nlohmann::ordered_json j;
    j["architectures"] = {std::string(arch.hfClass)};
    j["model_type"] = c.architecture;
    j["hidden_size"] = c.hidden;
    j["intermediate_size"] = c.ffn;
    j["num_hidden_layers"] = c.layers;
    j["num_attention_heads"] = c.heads;
    j["num_key_value_heads"] = c.kvHeads;
    j["head_dim"] = c.headDim;
    j["vocab_size"] = c.vocab;
    j["max_position_embeddings"] = c.maxPositions;
    j["rms_norm_eps"] = c.rmsEps;
    j["rope_theta"] = c.rope.theta;
    if (c.rope.scaling == RopeScaling::Linear) {
        j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope.factor}};
    } else if (c.rope.scaling == RopeScaling::Llama3) {
        j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", c.rope.factor}, {"low_freq_factor", c.rope.lowFreqFactor},
                             {"high_freq_factor", c.rope.highFreqFactor},
                             {"original_max_position_embeddings", c.rope.originalMaxPositions}};
    }
    j["hidden_act"] = "silu";
    j["tie_word_embeddings"] = c.tieEmbeddings;
    if (arch.attentionBiasKey)
        j["attention_bias"] = c.outputBias;
    j["mlp_bias"] = c.mlpBias;
    if (arch.usesSlidingWindowKey)
        j["sliding_window"] = c.slidingWindow > 0 ? nlohmann::ordered_json(c.slidingWindow) : nlohmann::ordered_json();
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

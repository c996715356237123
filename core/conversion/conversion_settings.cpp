#include "conversion/conversion_settings.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>

namespace mla {

std::string_view decompositionMethodName(DecompositionMethod m)
{
    return m == DecompositionMethod::Exact ? "exact" : "randomized";
}

bool parseDecompositionMethod(std::string_view name, DecompositionMethod& out)
{
    for (DecompositionMethod m : {DecompositionMethod::Exact, DecompositionMethod::Randomized}) {
        if (name == decompositionMethodName(m)) {
            out = m;
            return true;
        }
    }
    return false;
}

std::string_view sigmaPlacementName(SigmaPlacement s)
{
    return s == SigmaPlacement::Up ? "up" : "sqrt";
}

bool parseSigmaPlacement(std::string_view name, SigmaPlacement& out)
{
    if (name == "up") {
        out = SigmaPlacement::Up;
        return true;
    }
    if (name == "sqrt") {
        out = SigmaPlacement::Sqrt;
        return true;
    }
    return false;
}

std::string_view conversionTargetName(ConversionTarget t)
{
    return t == ConversionTarget::DeepSeekV3 ? "deepseek-v3" : "mha2mla";
}

bool parseConversionTarget(std::string_view name, ConversionTarget& out)
{
    for (ConversionTarget t : {ConversionTarget::Mha2mla, ConversionTarget::DeepSeekV3}) {
        if (name == conversionTargetName(t)) {
            out = t;
            return true;
        }
    }
    return false;
}

LatentSplit splitLatent(LatentMethod method, std::int64_t latent)
{
    switch (method) {
    case LatentMethod::Joint:
    case LatentMethod::Key:
        return {latent, 0};
    case LatentMethod::Split:
        return {latent / 2, latent - latent / 2};
    case LatentMethod::Value:
        return {0, latent};
    case LatentMethod::None:
        break;
    }
    return {0, 0};
}

LatentRange latentRange(const ModelConfig& c, std::int64_t pairs, LatentMethod method)
{
    const std::int64_t rowsK = c.kvHeads * std::max<std::int64_t>(c.headDim - 2 * pairs, 0);
    const std::int64_t rowsV = c.kvHeads * c.headDim;
    const std::int64_t rankK = std::min(rowsK, c.hidden);
    const std::int64_t rankV = std::min(rowsV, c.hidden);
    LatentRange r;
    switch (method) {
    case LatentMethod::Joint:
        r = {1, std::min(rowsK + rowsV, c.hidden)};
        break;
    case LatentMethod::Split:
        r = {2, 2 * std::max(rankK, rankV)};
        break;
    case LatentMethod::Key:
        r = {1, rankK};
        break;
    case LatentMethod::Value:
        r = {1, rankV};
        break;
    case LatentMethod::None:
        r = {0, 0};
        break;
    }
    r.maximum = std::max(r.maximum, r.minimum);
    return r;
}

std::int64_t latentForSaving(const ModelConfig& c, std::int64_t p, LatentMethod method, double saving)
{
    if (!(saving > 0.0 && saving < 1.0))
        throw Error("the KV saving must be between 0 and 1 (exclusive), got " + std::to_string(saving));
    const std::int64_t original = 2 * c.kvHeads * c.headDim;
    const auto target = static_cast<std::int64_t>(std::llround((1.0 - saving) * static_cast<double>(original)));
    const std::int64_t rope = c.kvHeads * 2 * p;
    std::int64_t latent = target - rope;
    if (method == LatentMethod::Key)
        latent -= c.kvDim();
    else if (method == LatentMethod::Value)
        latent -= c.kvHeads * (c.headDim - 2 * p);
    else if (method == LatentMethod::None)
        throw Error("svd none keeps every key and value: a KV saving cannot be set (give pairs only)");
    const std::int64_t minimum = method == LatentMethod::Split ? 2 : 1;
    if (latent < minimum)
        throw Error("a " + std::to_string(static_cast<int>(std::lround(saving * 100))) + "% KV saving is not reachable with "
                    + std::to_string(p) + " RoPE pairs per head and the " + std::string(latentMethodName(method))
                    + " method: the kept RoPE keys and uncompressed parts alone take " + std::to_string(target - latent)
                    + " of the " + std::to_string(target) + " elements allowed per layer");
    return latent;
}

std::int64_t ropePairsForLayer(const ModelConfig& c, const ConversionSettings& s, std::int64_t layer)
{
    if (!s.ropePairsPerLayer.empty()) {
        if (static_cast<std::int64_t>(s.ropePairsPerLayer.size()) != c.layers)
            throw Error("per-layer RoPE pairs list " + std::to_string(s.ropePairsPerLayer.size()) + " layers, the model has "
                        + std::to_string(c.layers));
        return s.ropePairsPerLayer[static_cast<std::size_t>(layer)];
    }
    return s.ropePairs >= 0 ? s.ropePairs : std::max<std::int64_t>(1, (c.headDim + 15) / 16);
}

std::vector<MlaLayerConfig> resolveLayerConfigs(const ModelConfig& c, const ConversionSettings& s,
                                                const std::vector<LayerPairSelection>& selections)
{
    if (static_cast<std::int64_t>(selections.size()) != c.layers)
        throw Error("internal: RoPE selections for " + std::to_string(selections.size()) + " of " + std::to_string(c.layers) + " layers");
    if (!s.latentPerLayer.empty() && static_cast<std::int64_t>(s.latentPerLayer.size()) != c.layers)
        throw Error("per-layer latent widths list " + std::to_string(s.latentPerLayer.size()) + " layers, the model has "
                    + std::to_string(c.layers));
    std::vector<MlaLayerConfig> layers;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        MlaLayerConfig m;
        m.keptPairs = selections[static_cast<std::size_t>(l)];
        m.method = s.method;
        const std::int64_t p = m.ropePairs();
        std::int64_t latent = 0;
        if (s.method != LatentMethod::None) {
            if (!s.latentPerLayer.empty())
                latent = s.latentPerLayer[static_cast<std::size_t>(l)];
            else if (s.latentDim > 0)
                latent = s.latentDim;
            else
                latent = latentForSaving(c, p, s.method, s.targetSaving);
            if (latent < (s.method == LatentMethod::Split ? 2 : 1))
                throw Error("layer " + std::to_string(l) + ": the latent width must be at least "
                            + (s.method == LatentMethod::Split ? std::string("2 for split") : std::string("1")));
        }
        const LatentSplit split = splitLatent(s.method, latent);
        m.latentK = split.key;
        m.latentV = split.value;
        layers.push_back(std::move(m));
    }
    return layers;
}

} // namespace mla

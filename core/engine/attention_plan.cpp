#include "engine/attention_plan.h"

#include "model/rope.h"

#include <algorithm>

namespace mla {

std::vector<std::int64_t> ropeBlockDims(const std::vector<int>& keptPairs, std::int64_t headDim)
{
    std::vector<std::int64_t> dims;
    for (int j : keptPairs)
        dims.push_back(j);
    for (int j : keptPairs)
        dims.push_back(j + headDim / 2);
    return dims;
}

std::vector<std::int64_t> nopeBlockDims(const std::vector<int>& keptPairs, std::int64_t headDim)
{
    std::vector<bool> kept(static_cast<std::size_t>(headDim), false);
    for (auto d : ropeBlockDims(keptPairs, headDim))
        kept[static_cast<std::size_t>(d)] = true;
    std::vector<std::int64_t> dims;
    for (std::int64_t d = 0; d < headDim; ++d) {
        if (!kept[static_cast<std::size_t>(d)])
            dims.push_back(d);
    }
    return dims;
}

std::vector<LayerAttentionPlan> planAttention(const ModelConfig& config)
{
    const std::vector<float> freqs = ropeFrequencies(config.rope, config.headDim);
    std::vector<LayerAttentionPlan> plans(static_cast<std::size_t>(config.layers));
    std::vector<int> allPairs(static_cast<std::size_t>(config.headDim / 2));
    for (std::size_t j = 0; j < allPairs.size(); ++j)
        allPairs[j] = static_cast<int>(j);

    for (std::int64_t l = 0; l < config.layers; ++l) {
        LayerAttentionPlan& plan = plans[static_cast<std::size_t>(l)];
        plan.latent = config.isMla();
        if (plan.latent)
            plan.keptPairs = config.mla->layers[static_cast<std::size_t>(l)].keptPairs;
        else
            plan.keptPairs.assign(static_cast<std::size_t>(config.kvHeads), allPairs);
        plan.ropePairs = plan.keptPairs.empty() ? 0 : static_cast<std::int64_t>(plan.keptPairs[0].size());
        for (const auto& kept : plan.keptPairs) {
            std::vector<float> f;
            for (int j : kept)
                f.push_back(freqs[static_cast<std::size_t>(j)]);
            plan.ropeFreqs.push_back(std::move(f));
            plan.ropeDims.push_back(ropeBlockDims(kept, config.headDim));
            plan.nopeDims.push_back(nopeBlockDims(kept, config.headDim));
        }
    }
    return plans;
}

} // namespace mla

#pragma once

#include "analysis/rope_scores.h"
#include "model/model_config.h"

#include <string>
#include <string_view>
#include <vector>

namespace mla {

// Which frequency pairs keep their rotation (method document, section 1). Pair j = 0 rotates fastest.
enum class RopeStrategy {
    High,         // pairs j < p
    Low,          // pairs j >= d_h/2 - p
    Uniform,      // pairs start + floor(i * d_h / (2p)), i = 0..p-1
    TwoNorm,      // the p pairs with the largest paper 2-norm score of the KV head
    RotationLoss, // the p pairs whose loss of rotation would change the logits most (our second measure)
};

std::string_view ropeStrategyName(RopeStrategy s); // high, low, uniform, 2-norm, rotation-loss
bool parseRopeStrategy(std::string_view name, RopeStrategy& out);
bool ropeStrategyNeedsScores(RopeStrategy s);

// [kvHead][...] ascending kept pairs for one layer. Ties in a score keep the lower j (stable).
using LayerPairSelection = std::vector<std::vector<int>>;

// `scores` is required by TwoNorm and RotationLoss. `pairs` in [0, d_h/2].
LayerPairSelection selectLayerPairs(const ModelConfig& config, RopeStrategy strategy, std::int64_t pairs,
                                    std::int64_t uniformStart, const LayerRopeScores* scores);

// The default number of kept pairs: d_h/16 rounded up, at least 1 (the paper's choice).
std::int64_t defaultRopePairs(const ModelConfig& config);

} // namespace mla

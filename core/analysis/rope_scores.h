#pragma once

#include "analysis/layer_statistics.h"
#include "model/model_config.h"

#include <vector>

namespace mla {

// Per-layer RoPE contribution measures (method document, section 1).
struct LayerRopeScores {
    MatrixXdRM queryNorm;   // [heads, pairs]: mean over tokens of ||q pair||
    MatrixXdRM keyNorm;     // [kvHeads, pairs]
    MatrixXdRM perQuery;    // [heads, pairs]: queryNorm * keyNorm of the head's KV head (paper-compatible)
    MatrixXdRM perKvHead;   // [kvHeads, pairs]: perQuery summed over each KV group — what 2-norm selection uses
    // Second measure, "rotation loss": the expected squared change of an attention logit (q.k / sqrt(d_h)) when pair j
    // stops rotating, E_delta E[(q^T (R(delta w_j) - I) k)^2] / d_h, with q and k second moments taken per pair,
    // q and k treated as independent, and the query-key distance delta uniform over [0, context). Summed over the
    // query heads of each KV group. Unlike the 2-norm bound it is ~0 for pairs that barely rotate within the context.
    MatrixXdRM rotationLossPerQuery; // [heads, pairs]
    MatrixXdRM rotationLoss;         // [kvHeads, pairs]
};

// `context` is the query-key distance range for the rotation-loss measure (typically the calibration length).
LayerRopeScores computeRopeScores(const ModelConfig& config, const LayerStatistics& stats, std::int64_t context);

} // namespace mla

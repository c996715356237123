#pragma once

#include "model/model.h"

#include <cstdint>
#include <vector>

namespace mla {

// How one layer's attention is laid out, derived once from the config: which frequency pairs of each KV head keep
// their rotation, their frequencies, and for MLA layers where the RoPE and position-free dims of each head sit.
struct LayerAttentionPlan {
    bool latent = false;                      // an MLA layer
    std::int64_t ropePairs = 0;               // p: kept pairs per head (headDim/2 for an original layer)
    std::vector<std::vector<int>> keptPairs;  // [kvHead] ascending
    std::vector<std::vector<float>> ropeFreqs; // [kvHead][p] frequencies of the kept pairs
    // MLA: for each KV head, the head dims (original order) of its RoPE block (2p) and of its nope block.
    std::vector<std::vector<std::int64_t>> ropeDims;
    std::vector<std::vector<std::int64_t>> nopeDims;
};

std::vector<LayerAttentionPlan> planAttention(const ModelConfig& config);

// Dims of a head, in the order of a kept-RoPE block: first the lower dims j of the kept pairs, then j + headDim/2.
std::vector<std::int64_t> ropeBlockDims(const std::vector<int>& keptPairs, std::int64_t headDim);
// The complement of ropeBlockDims, ascending.
std::vector<std::int64_t> nopeBlockDims(const std::vector<int>& keptPairs, std::int64_t headDim);

} // namespace mla

#pragma once

#include "conversion/conversion_settings.h"
#include "conversion/rope_sharing.h"
#include "model/model.h"
#include "util/job_control.h"

#include <vector>

namespace mla {

class ComputeBackend;

// What one layer's conversion to the DeepSeek-V3 layout measured (relative errors are squared-norm ratios on the
// calibration tokens).
struct DeepSeekLayerReport {
    struct Slot {
        int pair = -1;          // original frequency pair j the slot's component rotates with; -1: unused slot
        double frequency = 0.0; // w_j
        double ladder = 0.0;    // the slot's frequency on the exported ladder
        double energy = 0.0;    // share of the layer's rope logit energy the component carries
    };
    std::vector<Slot> ropeSlots; // named so because Qt defines `slots` away
    double ropeCost = 0.0;               // predicted fraction of the rope logit energy lost (sharing and ladder)
    double latentResidualNoNorm = 0.0;   // ||[k_nope; v] - U c||^2 / ||[k_nope; v]||^2: the latent alone
    double latentResidualNormScaled = 0.0; // the same through the engine's RMSNorm with U only rescaled
    double latentResidualNormFitted = 0.0; // through the RMSNorm after the least-squares fit of kv_b_proj
    double queryBiasResidual = 0.0;      // what the query bias fold leaves, relative to the queries (0: no bias)
    double keyBiasResidual = 0.0;        // the same for the shared RoPE key's part of the key bias
    double valueBiasShare = 0.0;         // the value bias's share of the value targets the fit reproduces
    double outputErrorInitial = 0.0;     // attention output (o_proj applied) against the original layer
    double outputErrorFinal = 0.0;       // after the o_proj refit (= initial without it)
    bool balanced = false;
};

// Calibration data of one layer: the converted model's normalised attention inputs (xc, what the layer will see) and
// the original model's (xo, where the targets come from). Sums, not means.
struct DeepSeekLayerInputs {
    std::vector<MatrixRM> xc, xo;
    MatrixXdRM gram;        // sum of xc xc^T
    Eigen::VectorXd sum;    // sum of xc
    std::int64_t tokens = 0;
};

DeepSeekLayerInputs deepSeekLayerInputs(std::vector<MatrixRM> xc, std::vector<MatrixRM> xo);

// Builds (the latent's decomposition on `backend`) one DeepSeek-V3 layer (q_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj) from an original
// layer: the shared RoPE head from `slotComponents` (indices into `components`, -1 unused), the position-free keys
// (everything the shared head does not carry) and the values through a latent of `target.deepseek->kvLoraRank`
// fitted by least squares to what the engine computes after its RMSNorm, the softmax-scale change folded into the
// queries and the biases folded where exact (key bias of the position-free part: drops out of the softmax) or by
// least squares otherwise. `latentNorm` false builds the ablation without the norm. Everything else of the layer is
// shared with `original`.
LayerWeights buildDeepSeekLayer(const ComputeBackend& backend, const ModelConfig& original, const ModelConfig& target, const LayerWeights& layer,
                                const std::vector<RopeComponent>& components, const std::vector<int>& slotComponents,
                                const DeepSeekLayerInputs& inputs, const ConversionSettings& settings, bool balanced,
                                DeepSeekLayerReport& report, const JobControl& job = {});

// A one-layer model of `target`'s shape holding `layer`, sharing the embedding and head with `base`.
Model singleDeepSeekLayerModel(const Model& base, const ModelConfig& target, const LayerWeights& layer);

// The converted config: deepseek_v3, nope = value = the original head size, one shared rope head of `ropeDim`,
// rope_theta `ropeTheta`, interleaved pairs, no biases, untied output head.
ModelConfig deepSeekTargetConfig(const ModelConfig& original, std::int64_t ropeDim, std::int64_t kvLoraRank, double ropeTheta,
                                 bool latentNorm = true);

} // namespace mla

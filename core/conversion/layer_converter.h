#pragma once

#include "conversion/conversion_settings.h"
#include "model/model.h"
#include "numerics/decompositions.h"

namespace mla {

class ComputeBackend;

// One attention layer in the MHA2MLA layout (method document, section 5), float32.
struct ConvertedAttention {
    MatrixRM q;          // reordered rows: every head's kept RoPE dims, then every head's position-free dims
    VectorF qBias;
    MatrixRM kRope;      // [kvHeads * 2p, hidden]
    VectorF kRopeBias;
    MatrixRM downKv;     // joint
    MatrixRM downK;      // split, key-only
    MatrixRM downV;      // split, value-only
    MatrixRM upK;        // acts on the key latent, or on the hidden state when keys are not compressed
    MatrixRM upV;
    VectorF upKBias, upVBias;
    double keyRelativeError = 0.0;   // ||W_k_nope - up_k down_k||_F / ||W_k_nope||_F (weight space)
    double valueRelativeError = 0.0;
    double jointRelativeError = 0.0; // over [W_k_nope; W_v]
    // The decompositions' own residual and norm, squared and summed over them, in the space they minimise (balanced,
    // whitened): how close each came to its best low-rank approximation there.
    double factorSquaredResidual = 0.0;
    double factorSquaredNorm = 0.0;
};

// A layer's whitened keys and values, [K; V] S with every key row, and the Gram of its rows: the joint matrix of any
// RoPE pair count is a row subset of [K; V], so its whitened product is a row subset of this one and the Gram a
// principal submatrix. An allocation measuring a dozen pair counts per layer multiplies and forms the Gram once.
struct WhitenedKeyValue {
    MatrixXdRM product;   // [K; V] S: the key projection's rows, then the value projection's
    Eigen::MatrixXd gram; // of product's rows rounded to float, as the decomposition of one pair count forms it
};
WhitenedKeyValue whitenedKeyValue(const ComputeBackend& backend, const LayerWeights& layer, const MatrixXdRM& whitening);

// For a caller that converts one layer many times (the allocation, once per pair count): what it computed once, and
// what it does not need.
struct AttentionConversionShortcuts {
    const MatrixXdRM* whitening = nullptr; // whiteningFactor(covariance, 1e-6) of the covariance passed, when known
    bool relativeErrors = true;            // false: leave the *RelativeError fields at 0 (three products fewer)
    // whitenedKeyValue(layer, *whitening): used by an exact joint decomposition without the balance on the CPU
    // whose rows are the smaller side; any other conversion ignores it.
    const WhitenedKeyValue* keyValue = nullptr;
};

// Converts one layer's attention. `covariance` (E[x x^T] of the attention input) is used by the activation-aware
// decomposition and may be null otherwise. The decompositions and products run on `backend`.
ConvertedAttention convertAttention(const ComputeBackend& backend, const ModelConfig& config, const LayerWeights& layer, const MlaLayerConfig& target,
                                    const ConversionSettings& settings, const MatrixXdRM* covariance = nullptr,
                                    const JobControl& job = {}, const AttentionConversionShortcuts& shortcuts = {});

// The decomposition options of a conversion's latent factors (exact, or randomized with its power iterations).
LowRankOptions lowRankOptions(const ConversionSettings& settings);

// The whitening factor convertAttention uses for an activation-aware decomposition with this covariance.
MatrixXdRM attentionWhitening(const MatrixXdRM& covariance);

} // namespace mla

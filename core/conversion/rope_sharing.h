#pragma once

#include "model/model_config.h"
#include "numerics/decompositions.h"
#include "tensor/tensor.h"

#include <complex>
#include <cstdint>
#include <vector>

namespace mla {

// From per-KV-head RoPE pairs to the ONE rotated key head DeepSeek-V3 shares across all query heads
// (docs/deepseek-export.md). Write a key pair as a complex number k~ = k_a + i k_b (a = dim j, b = dim j + d_h/2);
// RoPE multiplies it by e^{i m w_j}. Any complex combination across KV heads of pairs of the SAME frequency commutes
// with RoPE, so at each frequency j the KV heads' pairs k~_j (a vector over heads) can be rewritten exactly as
// k~_j = B c_j with components c_j = A k~_j (A B = I on the kept span), and a query pair q~_h sees
// Re(conj(q~_h) e^{i m w_j} k~_{g,j}) = sum_c Re(conj(conj(B_gc) q~_h) e^{i m w_j} c_jc): each component becomes one
// rotated pair with its own query pair conj(B_gc) q~_h. The components are the principal directions of the keys at
// that frequency weighted by the energy of the queries that read each KV head, so truncation loses the least logit
// energy; a component kept but placed on a ladder slot of another frequency, or dropped to the position-free part,
// costs its energy times the expected loss of a frequency error over the context.

// Second moments of pre-RoPE queries and keys per frequency pair, summed over calibration tokens.
struct RopePairStatistics {
    std::int64_t tokens = 0;
    std::vector<Eigen::MatrixXcd> keyCovariance; // [pair]: sum of k~ k~^H over KV heads [kvHeads, kvHeads]
    MatrixXdRM queryEnergy;                      // [heads, pairs]: sum of |q~|^2
};

RopePairStatistics emptyRopePairStatistics(const ModelConfig& config);
// Accumulates one forward call's pre-RoPE queries and keys (original head order, half layout) of a layer.
void accumulateRopePairs(const ModelConfig& config, const MatrixRM& queries, const MatrixRM& keys, RopePairStatistics& stats);

// One candidate rotated pair of the shared head.
struct RopeComponent {
    int pair = 0;                 // j, the original frequency pair it rotates with
    double frequency = 0.0;       // w_j in radians per position
    double energy = 0.0;          // query-weighted key energy it carries (its share of the rope logit energy)
    std::vector<std::complex<double>> down; // [kvHeads]: c = sum_g down[g] k~_{g,j}
    std::vector<std::complex<double>> up;   // [kvHeads]: k~_{g,j} contribution = up[g] c
};

// Every component of a layer (kvHeads per frequency pair), sorted by frequency descending, then energy descending.
std::vector<RopeComponent> ropeComponents(const ModelConfig& config, const RopePairStatistics& stats);

// E over query-key distances d of 1 - cos(d * delta), with d distributed as the causal pairs of a context of
// `context` tokens (P(d) proportional to context - d): the relative logit-energy loss of a pair that rotates
// `delta` radians per position too fast or too slow (delta = w: a pair that stops rotating).
double frequencyErrorLoss(double delta, std::int64_t context);

// The shared head's frequencies theta^(-2i/ropeDim), i = 0 .. ropeDim/2 - 1.
std::vector<double> ropeLadder(double theta, std::int64_t ropeDim);

struct SharedRopeLayout {
    double theta = 10000.0;                   // rope_theta of the exported config
    std::vector<std::vector<int>> slotComponents; // [layer][slot]: index into that layer's components, -1: unused slot
    std::vector<double> layerCost;            // predicted fraction of each layer's rope logit energy lost
    double cost = 0.0;                        // summed over layers
};

// Chooses rope_theta (one value for every layer, as the config has one) and, per layer, which components take the
// ladder's slots, monotone in frequency, so that the summed predicted loss is smallest: for each theta on a grid
// (with every ladder that lands exactly on an original frequency) a dynamic programme per layer picks kept
// components and slots, the rest becoming position-free.
SharedRopeLayout chooseSharedRope(const std::vector<std::vector<RopeComponent>>& layers, std::int64_t ropeDim,
                                  std::int64_t context);

} // namespace mla

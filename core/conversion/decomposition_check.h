#pragma once

#include "conversion/conversion_settings.h"
#include "model/model.h"
#include "numerics/decompositions.h"
#include "util/job_control.h"

#include <nlohmann/json.hpp>

#include <string>

namespace mla {

class ComputeBackend;

// What the randomized decomposition (--decomposition randomized) costs and saves, measured on one layer before the
// conversion's other layers use it: that layer's latent factors computed both ways on the same backend, each timed,
// each residual measured in the space the decomposition minimises (the balanced, and when `whitened` the whitened,
// key/value matrix). The user sees it (CLI text and JSON, the workbench's conversion summary, the model card).
struct DecompositionCheck {
    std::int64_t layer = 0;
    std::int64_t powerIterations = 0;
    bool whitened = false;               // measured on the whitened matrix (false: weight space, no covariance at hand)
    double exactRelativeError = 0.0;     // ||M - up down||_F / ||M||_F with the exact factors (the best of that rank)
    double randomizedRelativeError = 0.0;
    double exactSeconds = 0.0;
    double randomizedSeconds = 0.0;

    // randomized / exact - 1 (0 when the exact error is 0, i.e. the latent keeps the whole matrix).
    double excess() const;
    // exact / randomized seconds.
    double speedup() const;
};

// Decomposes `layer`'s attention for `target` exactly and with `settings`' randomized decomposition. `covariance`
// whitens both when the settings are activation-aware; without it both run in weight space (whitened = false).
DecompositionCheck checkDecomposition(const ComputeBackend& backend, const ModelConfig& config, std::int64_t layerIndex,
                                      const LayerWeights& layer, const MlaLayerConfig& target, const ConversionSettings& settings,
                                      const MatrixXdRM* covariance, const JobControl& job = {});

// One line for people (the CLI's text output, the workbench's status, the model card): "randomized decomposition (1
// power iteration) checked on layer 0: relative error 0.0812 against the exact 0.0790 (2.8% above), 1.2 s against
// 3.4 s (2.8x faster)" (or "Nx slower" when it was).
std::string decompositionCheckSummary(const DecompositionCheck& check);

// The check as the CLI's --json prints it (convert's "decomposition_check").
nlohmann::ordered_json decompositionCheckJson(const DecompositionCheck& check);

} // namespace mla

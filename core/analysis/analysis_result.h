#pragma once

#include "analysis/calibration.h"
#include "analysis/rope_scores.h"
#include "analysis/rope_selection.h"
#include "conversion/conversion_settings.h"
#include "model/model_config.h"
#include "numerics/decompositions.h"

#include <string>
#include <vector>

namespace mla {

// Singular values (descending) of one layer's [W_k_nope; W_v] (joint), W_k_nope (key) and W_v (value), and the
// closed-form relative error of a rank-k truncation for every k (method document, section 2).
struct KeyValueSpectra {
    std::vector<double> joint, key, value;
    std::vector<double> jointError, keyError, valueError; // relativeErrorCurve of each, length n + 1
    bool empty() const { return joint.empty(); }
};

KeyValueSpectra makeSpectra(std::vector<double> joint, std::vector<double> key, std::vector<double> value);

struct LayerAnalysis {
    LayerRopeScores scores;
    LayerPairSelection selection;     // kept pairs under the analysis settings
    KeyValueSpectra weightSpectra;    // on the weights
    KeyValueSpectra activationSpectra; // on calibration activations (whitened); empty when not computed
    MatrixXdRM inputCovariance;       // E[x x^T] of the attention input; kept only for small models
};

// Everything an analysis found, independent of the weights: what the GUI shows, a session stores and a conversion
// preview reads. Plain values, safe to copy across threads.
struct AnalysisResult {
    ModelConfig config;               // the original model's
    std::string modelPath;
    std::string modelFingerprint;     // of config + tensor index (sessions warn on mismatch)
    std::string calibrationDescription;
    std::string calibrationSource;    // samples, text or ids
    TokenSequences calibrationIds;
    std::int64_t calibrationTokens = 0;
    std::int64_t scoreContext = 0;    // query-key distance range of the rotation-loss measure
    ConversionSettings settings;      // the settings the selection and spectra were computed for
    std::vector<LayerAnalysis> layers;

    std::vector<LayerPairSelection> selections() const;
    bool hasActivationSpectra() const;
    bool hasCovariances() const;
};

} // namespace mla

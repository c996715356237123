#pragma once

#include "analysis/analysis_result.h"
#include "analysis/kv_accounting.h"
#include "conversion/conversion_settings.h"

#include <vector>

namespace mla {

// What a conversion would do, predicted from an analysis's spectra with closed forms only (no decomposition), so a
// GUI can update it on every slider move.
struct LayerPreview {
    std::int64_t ropePairs = 0;
    std::int64_t latentK = 0;
    std::int64_t latentV = 0;
    double weightError = 0.0;      // relative Frobenius error of [W_k_nope; W_v] in weight space
    double activationError = -1.0; // the same on calibration activations (whitened); -1 when not analysed
    double rotationLoss = 0.0;     // summed rotation-loss score of the dropped pairs (all KV heads)
    double twoNormDropped = 0.0;   // fraction of the 2-norm score mass that loses its rotation
    std::int64_t kvOriginal = 0;   // cached elements per token
    std::int64_t kvConverted = 0;
    std::int64_t attentionParamsOriginal = 0;
    std::int64_t attentionParamsConverted = 0;
};

struct ConversionPreview {
    std::vector<LayerPreview> layers;
    KvAccount kv;
    std::int64_t paramsOriginal = 0;
    std::int64_t paramsConverted = 0;
    double meanWeightError = 0.0;
    double meanActivationError = -1.0;
    bool selectionMatchesAnalysis = true; // false: the pairs differ from the analysed selection, spectra are stale
    std::string problem;                  // non-empty when the settings cannot be realised (e.g. unreachable saving)
};

// `parameterCount` is the original model's total (the difference comes from the attention layers only).
ConversionPreview previewConversion(const AnalysisResult& analysis, const ConversionSettings& settings,
                                    std::int64_t parameterCount);

// The preview of a conversion before any analysis exists: cache sizes and latent widths do not depend on which pairs
// are kept, so a score-free selection with the same pair counts stands in. Predicted errors are unknown (-1) and the
// converted parameter count too (-1). Settings that cannot be realised give `problem`, as previewConversion does.
ConversionPreview previewWithoutAnalysis(const ModelConfig& config, const ConversionSettings& settings,
                                         std::int64_t parameterCount);

// The live preview: from the analysis when there is one, else without.
ConversionPreview previewSettings(const ModelConfig& config, const AnalysisResult* analysis, const ConversionSettings& settings,
                                  std::int64_t parameterCount);

// Predicted relative error at latent width(s) from one spectrum set: joint uses latentK; split combines the key
// error at latentK with the value error at latentV weighted by their energies; key/value-only compress one side.
double predictedError(const KeyValueSpectra& spectra, LatentMethod method, std::int64_t latentK, std::int64_t latentV);

} // namespace mla

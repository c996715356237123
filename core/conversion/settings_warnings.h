#pragma once

#include "analysis/analysis_result.h"
#include "conversion/preview.h"
#include "model/model_config.h"

#include <string>
#include <vector>

namespace mla {

// What a user should know about settings that are valid (validateConversionSettings accepts them) but work against
// the point of converting, before any work starts: the KV cache grows over the original's (in total or in some
// layers), or a layer's latent is wider than the rank of what it compresses (the extra columns carry nothing: the
// layer is rank-deficient at that width). `preview` is the preview of the settings (previewSettings); `analysis`
// gives the measured ranks (null: only the structural bound is known, which validation already enforces).
// One sentence per finding, each naming the layers and the numbers; empty when there is nothing to say.
std::vector<std::string> conversionWarnings(const ModelConfig& config, const ConversionPreview& preview, const AnalysisResult* analysis);

// The numerical rank of a spectrum (singular values in decreasing order): how many exceed `relative` times the
// largest.
std::int64_t numericalRank(const std::vector<double>& singular, double relative = 1e-6);

} // namespace mla

#pragma once

#include "analysis/analysis_result.h"
#include "model/model_config.h"

#include <cstdint>

namespace mla::test {

// A test fixture: an analysis of a model shape without its weights: per-pair scores that fall with frequency (with
// per-layer and per-head variation) and power-law key/value spectra of the right lengths, for the preview benchmark (a
// Llama-2-7B-shaped analysis), the view-data and widget tests. Deterministic for a seed; `activations` adds whitened spectra.
AnalysisResult syntheticAnalysis(const ModelConfig& config, std::uint64_t seed = 1, bool activations = true);

// The weightless shape the settings, preview and workbench tests edit: 6 layers, 8 query / 4 KV heads of 32.
ModelConfig sixLayerShape();
// A smaller one for widget models and views: 3 layers, 8 query / 4 KV heads of 8 (the 260K models' attention).
ModelConfig threeLayerShape();

} // namespace mla::test

#pragma once

#include "analysis/analysis_result.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"
#include "settings/settings.h"

#include <memory>

namespace mla {
class OriginalTrajectory;
}

namespace mla::pipeline {

using AnalysisPtr = std::shared_ptr<const AnalysisResult>;

// Analyze (CLI analyze, the workbench's Analyze): calibrates on the settings' calibration source, scores every RoPE
// pair, selects the kept pairs the settings ask for and computes the weight and activation spectra.
AnalysisPtr analyse(const OpenedModel& model, const Settings& settings, const ExecutionContext& context);

// The selection and spectra of `analysis` for new RoPE settings, from its stored scores (and covariances), without
// calibrating again: what the live preview needs after the kept pairs change.
AnalysisPtr reselect(const OpenedModel& model, const AnalysisPtr& analysis, const ConversionSettings& settings,
                     const ExecutionContext& context);

// The calibration a conversion of these settings needs (scores for a score-based strategy, activations for
// whitening, refits and allocation), without spectra; null when it needs none. With `keep`, the original model's
// hidden states entering each layer are kept there as far as its cap allows, for the conversion's later passes.
AnalysisPtr calibrateForConversion(const OpenedModel& model, const Settings& settings, const ExecutionContext& context,
                                   OriginalTrajectory* keep = nullptr);

// Whether converting with these settings needs an analysis (scores or calibration activations).
bool conversionNeedsAnalysis(const ConversionSettings& settings);

// Whether `analysis` was made from this model (same config and tensor index).
bool analysisMatchesModel(const AnalysisResult& analysis, const Model& model);

} // namespace mla::pipeline

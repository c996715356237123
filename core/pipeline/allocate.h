#pragma once

#include "analysis/analysis_result.h"
#include "conversion/budget_allocation.h"
#include "model/model.h"
#include "pipeline/execution_context.h"
#include "settings/settings.h"

namespace mla::pipeline {

// Allocate (the workbench's "Allocate now", and the first step of a conversion with allocation): measures every
// layer's attention-output error for candidate (pairs, latent) choices on the analysis's calibration tokens and picks
// each layer's choice with the least total error within the settings' budget (allocationBudget). Pairs the settings
// fix (rope_pairs >= 0) are kept in every layer; a locked layer keeps its width and pair count. The original model's
// layer inputs come from `kept` where the calibration pass kept them; those the allocation computes are kept there
// too, up to its cap.
Allocation allocate(const Model& model, const AnalysisResult& analysis, const Settings& settings, const ExecutionContext& context,
                    OriginalTrajectory* kept = nullptr);

} // namespace mla::pipeline

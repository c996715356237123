#pragma once

#include "analysis/analysis_result.h"
#include "conversion/budget_allocation.h"
#include "conversion/preview.h"
#include "settings/settings.h"

#include <string>

namespace mla {

// "Compare with a preset": what a preset would convert to from the current settings, for the workbench's bars.
//
// The preset's recipe applied to the current settings, with the current widths and budget. The current per-layer lists
// are dropped (they are the current allocation's or the layers set by hand, not the preset's); locked layers keep
// their widths.
Settings presetSettings(const Settings& current, const ModelConfig& config, const std::string& preset);

struct PresetComparison {
    Settings settings;              // presetSettings(...), with the measured allocation applied when one was given
    ConversionPreview preview;      // the preset's per-layer predicted errors (its problem set when it cannot convert)
    // The current settings are the preset's (same recipe; for a preset that allocates, the current per-layer widths are
    // its allocation): the two series are the same by construction, not by accident.
    bool sameAsCurrent = false;
    // The preset allocates per layer and no measured allocation was given: `preview` is of one width for every layer,
    // which is not what a conversion with the preset does (pipeline::allocate measures it).
    bool allocationMissing = false;
    bool useActivation = false;     // the preset's errors to show are the activation-space ones
};

// `allocation`: the measured allocation of presetSettings(current, config, preset) (pipeline::allocate), or null.
PresetComparison comparePreset(const AnalysisResult& analysis, const Settings& current, const std::string& preset,
                               const Allocation* allocation, std::int64_t parameterCount);

} // namespace mla

#pragma once

#include "analysis/analysis_result.h"
#include "conversion/preview.h"
#include "conversion/sanity_check.h"
#include "settings/settings_table.h" // settingsJson

#include <nlohmann/json.hpp>

namespace mla {

// The `analyze --json` document. It lives in core so that `analyze` and `session` (which prints the same keys from a
// stored session) cannot drift apart. "params" is left out when `withParams` is false (parameter count unknown).
nlohmann::ordered_json analysisJson(const AnalysisResult& analysis, const ConversionPreview& preview, bool withParams = true);

// A conversion check: perplexities, KL, top-1 agreement, measured KV bytes and the generations side by side.
nlohmann::ordered_json sanityJson(const SanityReport& report);

} // namespace mla

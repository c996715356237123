#pragma once

#include "conversion/converter.h"
#include "conversion/deepseek_converter.h"
#include "conversion/sanity_check.h"

#include <nlohmann/json.hpp>

#include <string>

namespace mla {

// The deepseek-v3 target (docs/deepseek-export.md) is converted and written by the pipeline (pipeline/convert.h:
// convertToFolder, convertInMemory + exportConversion with settings.conversion.target = DeepSeekV3). These are its
// config.json and its report.

// The config.json of a converted DeepSeek-V3 model: deepSeekConfigToHuggingFace plus pad_token_id from the source and
// a small provenance block.
nlohmann::ordered_json deepSeekExportConfigJson(const Model& source, const ModelConfig& converted);

// The machine-readable report (CLI --json) and a short human summary. `check` may be null.
nlohmann::ordered_json deepSeekExportJson(const DeepSeekDetails& details, const ModelConfig& converted, const ModelConfig& original,
                                          const ExportReport& written, const SanityReport* check);
std::string deepSeekExportSummary(const DeepSeekDetails& details, const ModelConfig& converted, const ModelConfig& original,
                                  const SanityReport* check);

} // namespace mla

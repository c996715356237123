#pragma once

#include "analysis/calibration.h"
#include "conversion/converter.h"
#include "conversion/deepseek_converter.h"
#include "conversion/sanity_check.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace mla {

class Tokenizer;

// What the deepseek-v3 target did, for the CLI's report and the GUI.
struct DeepSeekExport {
    DeepSeekConversion conversion;
    ExportReport written;
    std::optional<SanityReport> check;
    std::string calibrationDescription;
};

// The whole user action for the deepseek-v3 target: calibrate (`calibration`), convert (convertToDeepSeek), write a
// Hugging Face folder a stock DeepseekV3ForCausalLM loads (config.json, explicit lm_head.weight, safetensors, the
// source's tokenizer files, README.md with this target's model card) to options.folder, staged and renamed into place
// only when complete, and when `check` reload it and measure it against the original (numbers into README.md).
DeepSeekExport exportDeepSeekTarget(const Model& original, const Tokenizer* tokenizer, const ConversionSettings& settings,
                                    const CalibrationOptions& calibration, ExportOptions options, bool check,
                                    const JobControl& job = {});

// The config.json of a converted DeepSeek-V3 model: deepSeekConfigToHuggingFace plus pad_token_id from the source and
// a small provenance block.
nlohmann::ordered_json deepSeekExportConfigJson(const Model& source, const ModelConfig& converted);

// The machine-readable report (CLI --json) and a short human summary.
nlohmann::ordered_json deepSeekExportJson(const DeepSeekExport& e, const ModelConfig& original);
std::string deepSeekExportSummary(const DeepSeekExport& e, const ModelConfig& original);

} // namespace mla

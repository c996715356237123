#pragma once

#include "conversion/conversion_settings.h"
#include "conversion/sanity_check.h"
#include "model/model_config.h"
#include "tensor/dtype.h"
#include "util/job_control.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace mla {

// What the README.md of an exported folder says: where the model came from, every setting, what the KV cache saves
// and, when a check was run, what was measured.
struct ModelCardInfo {
    std::string sourceModel;          // path of the original checkpoint
    std::string sourceFormat;         // safetensors, llama2c or gguf
    ModelConfig original;
    ModelConfig converted;            // original + mla
    ConversionSettings settings;
    std::string calibration;          // description of the calibration set; empty when none was used
    std::int64_t calibrationTokens = 0;
    DType dtype = DType::F32;         // of the written weights
    std::uint64_t shardBytes = 0;     // 0: one model.safetensors
    std::optional<SanityReport> metrics;
    std::string metricsDescription;   // what the metrics were measured on
    bool metricsOnWrittenWeights = true; // false: measured on the converted model in memory, before it was written
};

// Markdown with a small YAML front matter (tags), as Hugging Face model cards are written.
std::string modelCardMarkdown(const ModelCardInfo& info);

// Replaces `folder`/README.md with the card, atomically (a staged file renamed into place).
void writeModelCard(const std::filesystem::path& folder, const ModelCardInfo& info);

} // namespace mla

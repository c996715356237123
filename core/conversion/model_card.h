#pragma once

#include "conversion/conversion_settings.h"
#include "conversion/deepseek_layer.h"
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
    // deepseek-v3 target (converted.deepseek set): how the widths were chosen, what each layer's conversion
    // measured, and whether the folder carries a Hugging Face tokenizer the serving engines can load.
    std::string widthsOrigin = {};
    std::vector<DeepSeekLayerReport> deepSeekLayers = {};
    bool hasHuggingFaceTokenizer = false;
};

// Markdown with a small YAML front matter (tags), as Hugging Face model cards are written.
std::string modelCardMarkdown(const ModelCardInfo& info);

struct Model;
class Tokenizer;

struct ExportCheckOptions {
    std::int64_t sequences = 4;        // held-out sequences sampled from the original model
    std::int64_t sequenceLength = 128; // capped at the model's context
    std::uint64_t seed = 7919;         // not the calibration's default seed, so the text is not the calibration text
    std::int64_t generationSteps = 32;
};

// The quick check after an export: reloads `folder` (the weights exactly as written, dtype rounding included),
// compares it with `original` (perplexities, KL, top-1 agreement, measured KV bytes, a greedy generation) and
// rewrites the folder's README.md with the metrics, atomically. Returns the report.
SanityReport checkExportedModel(const Model& original, const Tokenizer* tokenizer, const std::filesystem::path& folder,
                                ModelCardInfo card, const ExportCheckOptions& options = {}, const JobControl& job = {});

} // namespace mla

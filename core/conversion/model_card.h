#pragma once

#include "conversion/conversion_settings.h"
#include "conversion/decomposition_check.h"
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

// How an export was healed after the conversion (core/heal, docs/healing.md), for its model card.
struct HealCardInfo {
    std::string start;                // the start healed: e.g. "paper", "allocated", "converted"
    std::string startChoice;          // how it was chosen (empty: as converted), e.g. "auto: lower held-out KL of paper, allocated"
    std::int64_t steps = 0;           // AdamW steps per layer (upper bound; layers may stop early)
    std::string learningRate;         // e.g. "0.1 x query-weight RMS per layer" or "0.003"
    std::int64_t trainTokens = 0;
    std::int64_t heldOutTokens = 0;
    std::string data;                 // description of the healing data (its source)
    std::uint64_t seed = 0;
    std::int64_t layersHealed = 0;
    std::optional<double> klBefore;   // held-out KL(original || model), nats per token
    std::optional<double> klAfter;
    double seconds = 0.0;
};

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
    bool metricsOnWrittenWeights = true; // false: measured on the converted model in memory, before it was written
    std::optional<HealCardInfo> heal; // set when the weights were healed after the conversion
    std::optional<DecompositionCheck> decompositionCheck = {}; // --decomposition randomized, measured on one layer
};

// Markdown with a small YAML front matter (tags), as Hugging Face model cards are written.
std::string modelCardMarkdown(const ModelCardInfo& info);

// Replaces `folder`/README.md with the card, atomically (a staged file renamed into place).
void writeModelCard(const std::filesystem::path& folder, const ModelCardInfo& info);

} // namespace mla

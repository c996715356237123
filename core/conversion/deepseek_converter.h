#pragma once

#include "analysis/calibration.h"
#include "conversion/conversion_settings.h"
#include "conversion/deepseek_layer.h"
#include "conversion/rope_sharing.h"
#include "model/model.h"
#include "util/job_control.h"

#include <string>
#include <vector>

namespace mla {

class ComputeBackend;

// The DeepSeek-V3 target's widths: one qk_rope_head_dim and one kv_lora_rank for every layer (the layout has no
// per-layer widths, so a global KV budget can only be spent through this one split).
struct DeepSeekWidths {
    std::int64_t ropeDim = 0;
    std::int64_t kvLoraRank = 0;
    std::int64_t budgetPerLayer = 0;   // cached elements per token and layer the settings allow
    std::string origin;                // "flashmla", "given", "default" or "measured"
    struct Candidate {
        std::int64_t ropeDim = 0;
        std::int64_t kvLoraRank = 0;
        double cost = 0.0;             // summed attention-output error / residual-stream energy over layers
    };
    std::vector<Candidate> candidates; // the splits measured when the split was chosen by measurement
};

// The widths the settings fix, or the default split of the budget; `measure` is set when the best preset asks for a
// measured split (decided in convertToDeepSeek). Throws a clear Error when the widths cannot work: FlashMLA's
// 512 + 64 on a model whose cache is smaller or whose hidden size cannot fill a 512-wide latent, a budget below
// 2 + 1, a rope head wider than the model has pairs, a latent wider than the keys and values have directions.
DeepSeekWidths deepSeekWidths(const ModelConfig& original, const ConversionSettings& settings, bool* measure = nullptr);

// Throws an Error naming `file` when `original` cannot be converted to the DeepSeek-V3 layout.
void requireDeepSeekConvertible(const ModelConfig& original, const std::filesystem::path& file);

struct DeepSeekConversionOptions {
    bool latentNorm = true;            // false: the ablation without kv_a_layernorm (never written; docs/results.md)
    std::int64_t allocationTokens = 4096; // calibration tokens used to measure the split
};

// What a conversion to the DeepSeek-V3 layout chose and measured (the model card, the CLI's report).
struct DeepSeekDetails {
    DeepSeekWidths widths;
    SharedRopeLayout rope;
    std::vector<DeepSeekLayerReport> layers;
    std::string calibrationDescription;
    std::int64_t calibrationTokens = 0;
    std::int64_t ropeContext = 0;      // query-key distance range the rope placement was optimised for
};

struct DeepSeekConversion : DeepSeekDetails {
    Model model;                       // deepseek_v3 config, converted attention float32, the rest shared
};

// Converts layer by layer on calibration data (method: docs/deepseek-export.md): RoPE pair statistics of the
// original, the shared rope head (rope_theta and per-layer components), then each layer built on the inputs the
// converted model really produces, with least-squares fits of kv_b_proj through the latent norm and, when the
// settings refit, of o_proj.
DeepSeekConversion convertToDeepSeek(const ComputeBackend& backend, const Model& original, const ConversionSettings& settings, const CalibrationSet& calibration,
                                     const JobControl& job = {}, const DeepSeekConversionOptions& options = {});

} // namespace mla

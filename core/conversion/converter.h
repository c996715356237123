#pragma once

#include "analysis/analysis_result.h"
#include "conversion/conversion_settings.h"
#include "conversion/layer_converter.h"
#include "model/model.h"
#include "model/tensor_plan.h"
#include "tensor/dtype.h"
#include "util/job_control.h"
#include "util/output_safety.h"

#include <filesystem>
#include <functional>
#include <optional>
#include <vector>

namespace mla {

class ComputeBackend;

// A conversion fully decided: the original config, the MLA layers it becomes, and the settings that chose them.
struct ConversionPlan {
    ModelConfig original;
    ModelConfig converted; // original + mla
    ConversionSettings settings;
};

// The kept pairs of every layer: from the analysis when given (it holds the scores), else from a score-free strategy.
std::vector<LayerPairSelection> selectPairs(const ModelConfig& config, const ConversionSettings& settings,
                                            const AnalysisResult* analysis);

ConversionPlan planConversion(const ModelConfig& original, const ConversionSettings& settings,
                              const std::vector<LayerPairSelection>& selections);

// Replaces the attention projections of `w` by the converted ones (keys and values by the latent factors), stored as
// `dtype` (the conversion's tensors in memory are float32).
void installConverted(LayerWeights& w, const ConvertedAttention& a, DType dtype = DType::F32);

// The attention input covariance of a layer, for activation-aware conversion (null when not available).
using CovarianceProvider = std::function<const MatrixXdRM*(std::int64_t layer)>;

struct LayerConversionReport {
    double jointRelativeError = 0.0;
    double keyRelativeError = 0.0;
    double valueRelativeError = 0.0;
};

// The converted model in memory: converted attention tensors owned (stored as `storage`), every other tensor shared
// with the original. The decompositions run on `backend`.
Model convertModel(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CovarianceProvider& covariance = {},
                   DType storage = DType::F32, const JobControl& job = {},
                   std::vector<LayerConversionReport>* reports = nullptr);

struct ExportOptions {
    std::filesystem::path folder;
    std::optional<DType> dtype;        // default: the original's weight dtype
    std::uint64_t shardBytes = 0;      // 0: one file
    std::vector<std::filesystem::path> extraFiles; // copied as they are (tokenizer files, generation config)
    std::vector<std::pair<std::string, std::string>> generatedFiles; // name, content (e.g. README.md)
    // Where the folder may go (util/output_safety.h): the source model's own files are always added to the inputs.
    OutputOptions output;
    // Streaming conversions overlap reading, converting and writing across layers (conversion/layer_pipeline.h);
    // false runs the same per-layer steps one after another (the reference: the bytes written are the same).
    bool pipelined = true;
};

struct ExportReport {
    std::vector<LayerConversionReport> layers;
    std::uint64_t bytesWritten = 0;
    std::size_t shards = 0;
    DType dtype = DType::F32;
};

// Converts and writes the model layer by layer as a Hugging Face folder in the MHA2MLA layout; the folder appears
// complete or not at all. With options.pipelined (the default), on every backend, the next layer is converted while
// the current one is written and the one after it is read (at most three layers in flight, LayerPipeline).
ExportReport exportConvertedModel(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const ExportOptions& options,
                                  const CovarianceProvider& covariance = {}, const JobControl& job = {});

// Writes a checkpoint of `targetConfig` whose tensors come from `tensorFor` (called in plan order), with the
// config.json of `source` adapted to the target.
ExportReport writeModelWith(const Model& source, const ModelConfig& targetConfig, const ExportOptions& options,
                            const std::function<Tensor(const PlannedTensor&)>& tensorFor, const JobControl& job = {});

// Writes an already converted (MLA) model in memory, e.g. after a refit.
ExportReport exportModel(const Model& model, const ExportOptions& options, const JobControl& job = {});

// The config.json of a converted model: the original's fields plus the "mha2mla" block.
nlohmann::ordered_json convertedConfigJson(const Model& original, const ModelConfig& converted);

// Tokenizer and generation files of a checkpoint that an export should carry along: regular files inside the model's
// folder only (a symbolic link is followed only when its target lies inside that folder too), so that nothing from
// elsewhere on the disk can end up in a folder the user then shares.
// `skipped` (optional) receives one line per file left out and why.
std::vector<std::filesystem::path> companionFiles(const Model& model, std::vector<std::string>* skipped = nullptr);

} // namespace mla

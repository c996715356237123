#pragma once

#include "analysis/calibration.h"
#include "analysis/original_trajectory.h"
#include "conversion/converter.h"
#include "util/progress_rate.h"

#include <vector>

namespace mla {

// What the sequential conversion measured in one layer, on the calibration tokens.
struct LayerFitReport {
    double outputErrorInitial = 0.0;  // ||O_converted - O_original||^2 / ||O_original||^2 before any refit
    double outputErrorFinal = 0.0;    // after the refits
    double upResidualBefore = 0.0;    // least-squares objective of the up projections, before / after refit
    double upResidualAfter = 0.0;
    double outputResidualBefore = 0.0; // the same for W_o
    double outputResidualAfter = 0.0;
    bool balanced = false;             // the key/value balance was used in this layer
    std::int64_t tokens = 0;           // calibration tokens this layer was fitted and measured on
};

// How many calibration sequences, from the first, the sequential conversion runs on (ConversionSettings::refitTokens):
// all of them for kRefitTokensAll; else the fewest whose tokens reach the goal, which for kRefitTokensAuto is half
// the calibration's tokens but at least kRefitTokensPerFeature per feature of the widest fit (the query width that W_o
// is refitted from, or the hidden width of the whitening covariance). The sequential conversion runs the converted
// model's forward pass, the refits' attention passes and their normal equations on every token it is given: half
// the tokens cost about half its time. On a model whose calibration is short for its widths (a 7B's 4096 features
// against the default 4096 tokens) the rule keeps every token (docs/benchmarks.md, the measured trade).
std::size_t sequentialCalibrationCount(const ModelConfig& config, const std::vector<std::vector<int>>& sequences, std::int64_t refitTokens);

// Converts layer after layer on calibration data, so that each layer is decomposed and refitted on the inputs it will
// really see: the hidden states produced by the already-converted layers before it (method document, section 7). The
// decompositions run on the backend given (held by reference: it must outlive the converter).
//
// For layer l, with x_c the converted model's normalised inputs and x_o the original model's:
//  1. factors: the whitened joint decomposition on the covariance of x_c (activation-aware), optionally with the
//     key/value balance (or both, keeping the one with the lower output error);
//  2. up projections: least squares from the latent c = W_dkv x_c to the original position-free keys and values
//     computed on x_o: min sum ||[k_nope; v]_o - W_up c||^2 + lambda ||W_up - W_up0||^2;
//  3. W_o: least squares from the converted layer's attention context on x_c to the original layer's attention
//     output on x_o, with the same ridge toward the original W_o.
// The ridge pulls toward the starting weights, so neither refit can increase its calibration objective.
class SequentialConverter {
public:
    // The original model's layer inputs come from `kept` where it holds them for these calibration sequences (it
    // must outlive the converter), else from the original's layers.
    SequentialConverter(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CalibrationSet& calibration,
                        const JobControl& job = {}, const OriginalTrajectory* kept = nullptr);

    // Layers must be converted in order. Returns the converted layer's weights (attention and o_proj). The second
    // form reports to `job` instead of the converter's own (a pipeline's worker).
    const LayerWeights& convertLayer(std::int64_t layer);
    const LayerWeights& convertLayer(std::int64_t layer, const JobControl& job);
    const std::vector<LayerFitReport>& reports() const { return m_reports; }
    const Model& converted() const { return m_converted; }

private:
    const ComputeBackend& m_backend;
    const Model& m_original;
    ConversionPlan m_plan;
    JobControl m_job;
    ProgressRate m_rate{"layer"}; // the refit's rate and time left in its progress stage
    Model m_converted; // attention of layers < next converted, the rest original
    OriginalLayerInputs m_originalInputs;
    std::vector<MatrixRM> m_hiddenConverted;
    std::vector<LayerFitReport> m_reports;
    std::int64_t m_next = 0;
};

// Converts every layer with the sequential refits and returns the model (converted tensors as float32).
Model convertSequentially(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CalibrationSet& calibration,
                          const JobControl& job = {}, std::vector<LayerFitReport>* reports = nullptr,
                          const OriginalTrajectory* kept = nullptr);

// Converts and writes layer by layer with the sequential refits; with options.pipelined, layer l is converted while
// layer l-1 is written and layer l+1 read (LayerPipeline), with the same bytes written.
ExportReport exportSequentially(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CalibrationSet& calibration,
                                const ExportOptions& options, const JobControl& job = {},
                                std::vector<LayerFitReport>* reports = nullptr, const OriginalTrajectory* kept = nullptr);

// A one-layer model holding `layer` (with `mla` describing it when converted), sharing everything else with `base`.
Model singleLayerModel(const Model& base, const LayerWeights& layer, const std::optional<MlaLayerConfig>& mla);

} // namespace mla

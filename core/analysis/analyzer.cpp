#include "analysis/analyzer.h"

#include "analysis/key_value_split.h"
#include "analysis/layer_statistics.h"
#include "backend/compute_backend.h"
#include "model/architecture.h"
#include "model/tensor_plan.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <Eigen/Cholesky>

#include <cstdio>
#include <optional>

namespace mla {
namespace {

void requireConvertible(const Model& model)
{
    if (model.config.isMla())
        throw Error(model.source, "the model already uses Multi-head Latent Attention");
    const ArchitectureInfo& arch = architectureInfo(model.config.architecture);
    if (!arch.conversionSupported)
        throw Error(model.source, std::string(arch.displayName) + " conversion is not supported yet: "
                                      + std::string(arch.conversionUnsupportedReason));
}

std::int64_t longestSequence(const TokenSequences& sequences)
{
    std::size_t n = 0;
    for (const auto& s : sequences)
        n = std::max(n, s.size());
    return static_cast<std::int64_t>(n);
}

} // namespace

MatrixXdRM whiteningFactor(const MatrixXdRM& covariance, double ridge)
{
    const Eigen::Index n = covariance.rows();
    const double scale = n > 0 ? covariance.diagonal().mean() : 0.0;
    MatrixXdRM c = covariance;
    c.diagonal().array() += std::max(ridge * scale, 1e-30);
    Eigen::LLT<MatrixXdRM> llt(c);
    if (llt.info() != Eigen::Success)
        throw Error("the calibration covariance is not positive definite even with a ridge; use more calibration tokens");
    return llt.matrixL();
}

KeyValueSpectra layerWeightSpectra(const ComputeBackend& backend, const ModelConfig& c, const LayerWeights& layer, const LayerPairSelection& selection,
                                   const JobControl& job)
{
    const KeyValueSplit split = splitKeyValue(c, layer, selection);
    const MatrixRM joint = jointKeyValue(split);
    auto s = backend.spectra({&joint, &split.kNope, &split.v}, nullptr, job);
    return makeSpectra(std::move(s[0]), std::move(s[1]), std::move(s[2]));
}

KeyValueSpectra layerActivationSpectra(const ComputeBackend& backend, const ModelConfig& c, const LayerWeights& layer, const LayerPairSelection& selection,
                                       const MatrixXdRM& covariance, double ridge, const JobControl& job)
{
    const KeyValueSplit split = splitKeyValue(c, layer, selection);
    const MatrixXdRM s = whiteningFactor(covariance, ridge);
    const MatrixRM joint = jointKeyValue(split);
    auto spectra = backend.spectra({&joint, &split.kNope, &split.v}, &s, job);
    return makeSpectra(std::move(spectra[0]), std::move(spectra[1]), std::move(spectra[2]));
}

namespace {

StatisticsOptions statisticsOptions(const AnalysisOptions& options)
{
    StatisticsOptions s;
    s.inputGram = options.activationSpectra || options.settings.activationAware;
    return s;
}

// The analysis of a calibration set, from statistics `measured` on it already (sampled calibration) or from a
// forward pass over it.
AnalysisResult analyzeCalibration(const ComputeBackend& backend, const Model& model, const CalibrationSet& calibration, const std::string& calibrationSource,
                                  const AnalysisOptions& options, const JobControl& job, OriginalTrajectory* keep,
                                  std::vector<LayerStatistics>* measured)
{
    requireConvertible(model);
    const ModelConfig& c = model.config;
    const Transformer transformer(model, MlaForm::Expanded);
    AnalysisResult result;
    result.config = c;
    result.modelPath = model.source.string();
    result.modelFingerprint = modelFingerprint(model);
    result.calibrationDescription = calibration.description;
    result.calibrationSource = calibrationSource;
    result.calibrationIds = calibration.sequences;
    result.calibrationTokens = calibration.tokens();
    result.scoreContext = longestSequence(calibration.sequences);
    result.settings = options.settings;
    result.layers.resize(static_cast<std::size_t>(c.layers));

    const bool keepCovariance = c.hidden <= options.keepCovarianceUpToHidden;
    const StatisticsOptions statsOptions = statisticsOptions(options);
    collectLayerStatistics(
        backend, transformer, calibration, statsOptions,
        [&](std::int64_t l, LayerStatistics&& stats) {
            LayerAnalysis& layer = result.layers[static_cast<std::size_t>(l)];
            layer.scores = computeRopeScores(c, stats, result.scoreContext);
            layer.selection = selectLayerPairs(c, options.settings.strategy, ropePairsForLayer(c, options.settings, l),
                                               options.settings.uniformStart, &layer.scores);
            const LayerWeights& w = model.layers[static_cast<std::size_t>(l)];
            if (options.spectra)
                layer.weightSpectra = layerWeightSpectra(backend, c, w, layer.selection, job);
            if (statsOptions.inputGram) {
                MatrixXdRM covariance = stats.inputGram / static_cast<double>(stats.tokens);
                if (options.spectra && options.activationSpectra)
                    layer.activationSpectra = layerActivationSpectra(backend, c, w, layer.selection, covariance, options.ridge, job);
                if (keepCovariance || options.settings.activationAware)
                    layer.inputCovariance = std::move(covariance);
            }
        },
        job, keep, measured);
    return result;
}

} // namespace

AnalysisResult analyzeModel(const ComputeBackend& backend, const Model& model, const Tokenizer* tokenizer, const AnalysisOptions& options,
                            const JobControl& job, OriginalTrajectory* keep)
{
    requireConvertible(model);
    const Transformer transformer(model, MlaForm::Expanded);
    // Sampled calibration measures the statistics while it samples (every layer's at once, so only when they fit a
    // quarter of the memory available): the forward pass over the samples is the sampling's own.
    const StatisticsOptions statsOptions = statisticsOptions(options);
    std::optional<StatisticsAccumulator> sampling;
    if (options.calibration.source == CalibrationOptions::Source::Samples && backend.batchDecodeObservable()
        && StatisticsAccumulator::bytes(model.config, statsOptions) <= availableMemory().bytes / 4)
        sampling.emplace(model.config, statsOptions);
    const double split = sampling ? 0.9 : 0.3;
    const CalibrationSet calibration =
        prepareCalibration(backend, transformer, tokenizer, options.calibration, job.slice(0.0, split), sampling ? &*sampling : nullptr);
    std::vector<LayerStatistics> measured;
    if (sampling && calibration.observed)
        measured = sampling->take();
    return analyzeCalibration(backend, model, calibration, calibrationSourceName(options.calibration.source), options, job.slice(split, 1.0),
                              keep, measured.empty() ? nullptr : &measured);
}

AnalysisResult analyzeModel(const ComputeBackend& backend, const Model& model, const CalibrationSet& calibration, const std::string& calibrationSource,
                            const AnalysisOptions& options, const JobControl& job, OriginalTrajectory* keep)
{
    return analyzeCalibration(backend, model, calibration, calibrationSource, options, job, keep, nullptr);
}

void reselect(const ComputeBackend& backend, AnalysisResult& analysis, const Model& model, const ConversionSettings& settings, double ridge, const JobControl& job)
{
    const ModelConfig& c = analysis.config;
    if (c.layers != model.config.layers || c.hidden != model.config.hidden)
        throw Error(model.source, "does not match the analysed model");
    for (std::int64_t l = 0; l < c.layers; ++l) {
        job.progress(static_cast<double>(l) / static_cast<double>(c.layers), "spectra of layer " + std::to_string(l));
        LayerAnalysis& layer = analysis.layers[static_cast<std::size_t>(l)];
        layer.selection = selectLayerPairs(c, settings.strategy, ropePairsForLayer(c, settings, l), settings.uniformStart, &layer.scores);
        const LayerWeights& w = model.layers[static_cast<std::size_t>(l)];
        layer.weightSpectra = layerWeightSpectra(backend, c, w, layer.selection, job);
        if (layer.inputCovariance.size() > 0)
            layer.activationSpectra = layerActivationSpectra(backend, c, w, layer.selection, layer.inputCovariance, ridge, job);
        else
            layer.activationSpectra = KeyValueSpectra();
    }
    analysis.settings = settings;
    job.progress(1.0, "spectra done");
}

std::string modelFingerprint(const Model& model)
{
    // FNV-1a over the config JSON and each planned tensor's role, layer, shape and dtype.
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&](const std::string& s) {
        for (unsigned char ch : s) {
            h ^= ch;
            h *= 1099511628211ull;
        }
    };
    mix(configToHuggingFace(model.config).dump());
    for (const auto& p : tensorPlan(model.config)) {
        const Tensor t = modelTensor(model, p.role, p.layer);
        mix(std::string(tensorRoleLabel(p.role)) + std::to_string(p.layer) + shapeString(t.shape())
            + std::string(dtypeName(t.dtype())));
    }
    char buffer[17];
    std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(h));
    return buffer;
}

} // namespace mla

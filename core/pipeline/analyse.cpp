#include "pipeline/analyse.h"

#include "analysis/analyzer.h"
#include "conversion/presets.h"

namespace mla::pipeline {

AnalysisPtr analyse(const OpenedModel& model, const Settings& settings, const ExecutionContext& context)
{
    AnalysisOptions options;
    options.calibration = settings.calibration;
    options.settings = settings.conversion;
    return std::make_shared<const AnalysisResult>(
        analyzeModel(context.backend(), *model.model, model.tokenizer.get(), options, context.job()));
}

AnalysisPtr reselect(const OpenedModel& model, const AnalysisPtr& analysis, const ConversionSettings& settings,
                     const ExecutionContext& context)
{
    auto copy = std::make_shared<AnalysisResult>(*analysis);
    mla::reselect(context.backend(), *copy, *model.model, settings, 1e-6, context.job());
    return copy;
}

bool conversionNeedsAnalysis(const ConversionSettings& settings)
{
    return ropeStrategyNeedsScores(settings.strategy) || settingsNeedCalibrationPass(settings);
}

AnalysisPtr calibrateForConversion(const OpenedModel& model, const Settings& settings, const ExecutionContext& context,
                                   OriginalTrajectory* keep)
{
    if (!conversionNeedsAnalysis(settings.conversion))
        return nullptr;
    AnalysisOptions options;
    options.calibration = settings.calibration;
    options.settings = settings.conversion;
    // Scores are made per layer for one pair count; an allocation chooses the counts later from those scores.
    options.settings.ropePairsPerLayer.clear();
    if (options.settings.ropePairs < 0 && settings.conversion.allocate)
        options.settings.ropePairs = defaultRopePairs(model.model->config);
    options.spectra = false;
    options.activationSpectra = false;
    return std::make_shared<const AnalysisResult>(
        analyzeModel(context.backend(), *model.model, model.tokenizer.get(), options, context.job(), keep));
}

bool analysisMatchesModel(const AnalysisResult& analysis, const Model& model)
{
    return modelFingerprint(model) == analysis.modelFingerprint;
}

} // namespace mla::pipeline

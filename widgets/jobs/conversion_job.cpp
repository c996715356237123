#include "jobs/conversion_job.h"

#include "conversion/presets.h"
#include "conversion/sequential_converter.h"
#include "util/error.h"

#include <QElapsedTimer>

namespace mla {

ConversionOutcome convertInMemory(const ExecutionContext& ctx, const Model& model, const AnalysisResult* analysis,
                                  ConversionSettings settings, const AllocationRequest& allocation)
{
    const JobControl& job = ctx.job();
    QElapsedTimer timer;
    timer.start();
    const bool calibrationPass = settingsNeedCalibrationPass(settings);
    if (!analysis && (ropeStrategyNeedsScores(settings.strategy) || calibrationPass || settings.allocate))
        throw Error("these settings use the calibration of an analysis (" + std::string(ropeStrategyName(settings.strategy))
                    + " pairs, activation-aware, refit or allocation): run Analyze first");
    ConversionOutcome out;
    double begin = 0.0;
    if (settings.allocate && settings.latentPerLayer.empty()) {
        const Allocation a = allocatePerLayer(ctx.slice(0.0, 0.4), model, *analysis, settings, allocation);
        settings.ropePairsPerLayer = a.pairs;
        settings.latentPerLayer = a.latent;
        begin = 0.4;
    }
    out.plan = planConversion(model.config, settings, selectPairs(model.config, settings, analysis));
    const JobControl convertJob = job.slice(begin, 1.0);
    if (calibrationPass) {
        CalibrationSet calibration;
        calibration.sequences = analysis->calibrationIds;
        calibration.description = analysis->calibrationDescription;
        out.converted = std::make_shared<const Model>(convertSequentially(ctx.backend(), model, out.plan, calibration, convertJob, &out.fits));
    } else {
        const DType storage = model.layers.empty() || model.layers[0].q.empty() ? DType::F32 : model.layers[0].q.dtype();
        out.converted = std::make_shared<const Model>(convertModel(ctx.backend(), model, out.plan, {}, storage, convertJob, &out.reports));
    }
    out.seconds = static_cast<double>(timer.elapsed()) / 1000.0;
    return out;
}

void ConversionJob::start(const std::shared_ptr<const Model>& model, const AnalysisPtr& analysis, const ConversionSettings& settings,
                          const AllocationRequest& allocation)
{
    run<ConversionOutcome>(
        tr("Converting"),
        [model, analysis, settings, allocation](const ExecutionContext& ctx) {
            return convertInMemory(ctx, *model, analysis.get(), settings, allocation);
        },
        [this](ConversionOutcome&& o) { Q_EMIT converted(o); });
}

} // namespace mla
